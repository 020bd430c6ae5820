"""`tether view`: the runs served over HTTP (a JSON API and a page of plain JavaScript modules).

`data`, `downsample` and `files` are the library calls behind the API (no web framework);
`security` the Host, token and Origin rules; `app` the Starlette application; `server` runs it
on uvicorn. Only `cli/view.py` imports `app` and `server`, when the command runs.
"""

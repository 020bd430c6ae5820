"""The project file (tether.toml, tether.yaml or tether.json): find it, parse it, validate it.

`parse.load_project()` returns the records of `model`; every problem becomes one line

    FILE:LINE:COL: KEY.PATH: expected X, found Y (did you mean Z?)

Modules, bottom up: `model` (the records ops/ runs), `messages` (ProjectError, key paths, the
wording of values), `formats` (reading TOML, YAML, JSON with comments), `positions` (where each
key is), `document` (one file and the checker reporting on it), `flags` and `depends` (an
operation's `config` and `depends`), `validate` (the rest of a file), `parse` (the entry points).
Importers name the module they need; nothing is re-exported here, so `import tether.project`
stays cheap.
"""

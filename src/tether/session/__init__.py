"""The life of one run in this process: Run, RunOptions, start_run, open_run, Terminated/Skipped.

Modules: options (what a run captures), run (the handle), exits (Terminated, Skipped, SIGTERM),
resolve (the config as plain data, dotted keys), naming (a run's default name), prepare (the
unsaved run.lock: stages, data, snapshot), lifecycle (state.json, output.log, how a run ends),
start (start_run, run_for_call), attach (a process started for a run works for it), open
(open_run of a finished run, or of the run this process was started for).
"""

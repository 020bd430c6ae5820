"""Batches: a parent run, a task pool and one child run per task.

- flags: the executor flags of a decorated main (`--task-to`, `--n-jobs`, ...), cheap to import;
- tasks: the task list (`--tasks FILE`, `--tasks-key`, the config's `tasks`) and `--task-to`;
- children: the child run of each task of a decorated main's batch;
- driver: the one loop: a parent run, its task pool, an executor's workers, the outcome;
- decorated: batches of a decorated main (`run_tasks`, `--retry-failed`);
- ops: batches of `tether run OP` (in this process, or on an executor);
- progress: the progress bar of a batch;
- reconcile: children of Slurm batches brought in step with their jobs.

Where the workers run (serial, joblib, Slurm, PBS, ...) is `tether.executors`' business, which
knows nothing about runs.
"""

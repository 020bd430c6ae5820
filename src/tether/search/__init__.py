"""Search: a batch whose trials an Optuna study proposes, one at a time, as workers get free.

`tether run OP lr=loguniform(1e-4,1e-1) --optimize tpe --trials 20 --minimize loss` makes a
batch (parent run `OP+batch`, one child run per trial) whose task pool holds one *slot* per
trial. A worker that claims a slot asks the study for a trial (ask/tell: no batch barrier, on
every executor, Slurm included, since the workers ask themselves), runs it as a child run and
tells the study its objective. The study is a journal file in the batch run folder
(`study.journal`, Optuna's JournalStorage, locked by exclusive creation so it is safe on shared
filesystems): a batch killed at any point continues with `--retry-failed BATCH` or the same
command with `--resume`, and no finished trial runs again.

- `space`: the search space from the flags (sweep functions as distributions) and the options;
- `study`: the study in the batch folder (storage, sampler, pruner, warm start);
- `runner`: the TaskRunner of a search (ask, run the child, tell) and the entry points;
- `summary`: what `tether show BATCH` prints of a study.

The report of intermediate values from a child (History.update, for pruning) lives in
tether.track.trial: History sits below this package.
"""

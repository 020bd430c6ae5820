"""tether inside other tools, left unchanged: `hydra` (a Hydra callback that records each job of
a `@hydra.main` app as a tether run, and a multirun as a batch)."""

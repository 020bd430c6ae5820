"""Metrics beyond `run.log_metrics`: roll-ups of what other tools wrote (TensorBoard, ...)."""

"""Reproducibility capture: environment, source snapshots, data digests, upstream stages."""

"""Sharing runs with other stores: MLflow backfill (and, later, push/pull through rclone)."""

"""The `wandb` sink: rows to a Weights & Biases run (online, or offline with WANDB_MODE=offline).

The W&B run has the tether run's id (so a run that logs again resumes it: `resume="allow"`),
its name (`<name>-<short id>`), its flattened config, label (as notes) and tags; its files go to
`<run folder>/wandb/`. W&B's own console capture is off (tether captures output.log). In offline
mode nothing touches the network; `wandb sync <run folder>/wandb/offline-run-*` uploads later.
Project: the sink's `project`, else `WANDB_PROJECT`, else the run's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from ...store.values import flatten
from .base import Row, Sink, SinkContext


class WandbSink(Sink):
    name = "wandb"

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        **init: Any,
    ) -> None:
        self.project = project
        self.entity = entity
        self.mode = mode
        self.init = init
        self.run: Any = None
        self.run_dir: str | None = None
        self.wandb_id: str | None = None

    def open(self, ctx: SinkContext) -> int | None:
        import wandb

        project = self.project or os.environ.get("WANDB_PROJECT") or ctx.run_name or "tether"
        wandb_id = re.sub(r"[^\w-]", "-", ctx.run_id) if ctx.run_id else None
        name = f"{ctx.run_name or 'run'}-{(ctx.run_id or '')[:13]}" if ctx.run_id else None
        folder = ctx.run_dir or ctx.runs_root
        settings = wandb.Settings(console="off", silent=True)
        kwargs: dict[str, Any] = {
            "project": project,
            "entity": self.entity,
            "id": wandb_id,
            "name": name,
            "config": flatten(ctx.config),
            "notes": ctx.label,
            "tags": list(ctx.tags) or None,
            "dir": str(folder) if folder is not None else None,
            "resume": "allow" if wandb_id else None,
            "settings": settings,
            "reinit": "create_new",
        }
        if self.mode:
            kwargs["mode"] = self.mode
        kwargs.update(self.init)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            self.run = wandb.init(**kwargs)
        except Exception as exc:  # a W&B too old for reinit="create_new"
            if "reinit" not in str(exc) or self.init.get("reinit"):
                raise
            kwargs.pop("reinit")
            self.run = wandb.init(**kwargs)
        self.run_dir = getattr(self.run, "dir", None)
        self.wandb_id = self.run.id
        same = ctx.state.get("id") == self.wandb_id and not ctx.new
        return int(ctx.state.get("rows") or 0) if same else 0

    def write(self, rows: Sequence[Row], first: int) -> None:
        log = self.run.log
        for row in rows:
            data = {k: v for k, v in row.items() if k != "step" and k != "t"}
            if "step" in row:
                log(data, step=int(row["step"]))
            else:
                log(data)

    def close(self, status: str | None, ctx: SinkContext) -> None:
        if self.run is None:
            return
        final = status or ctx.status or "completed"
        self.run.summary["tether/status"] = final
        self.run.finish(exit_code=0 if final == "completed" else 1)
        self.run = None

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.wandb_id:
            out["id"] = self.wandb_id
        if self.run_dir:
            out["dir"] = self.run_dir
        return out

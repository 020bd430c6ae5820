"""`ray` and `dask`: the workers through joblib's Ray or Dask backends, when installed.

    pip install 'ray[default]'          # then: --executor ray --n-jobs 8
    pip install 'dask[distributed]'     # then: --executor dask --n-jobs 8

Ray: `ray.init()` joins the cluster named by RAY_ADDRESS, or starts a local one. Dask: a
`distributed.Client` for DASK_SCHEDULER_ADDRESS when it is set, else a local cluster of
`--n-jobs` worker processes. Either way each of the N joblib tasks is a serial worker of the
batch's task pool, as with `--executor local`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from ..errors import TetherError
from .base import Handle
from .local import JoblibHandle, LocalExecutor
from .worker import Worker


class RayExecutor(LocalExecutor):
    name: ClassVar[str] = "ray"
    backend: ClassVar[str] = "ray"
    restarts: ClassVar[int] = 0

    def check(self) -> None:
        super().check()
        try:
            import ray  # noqa: F401
        except ImportError:
            raise TetherError(
                "--executor ray needs ray, which is not installed",
                "pip install 'ray[default]' (or use --executor local)",
            )

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        import ray
        from ray.util.joblib import register_ray

        register_ray()
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
        return JoblibHandle(worker, n_workers, "ray", {})


class DaskExecutor(LocalExecutor):
    name: ClassVar[str] = "dask"
    backend: ClassVar[str] = "dask"
    restarts: ClassVar[int] = 0

    def check(self) -> None:
        super().check()
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise TetherError(
                "--executor dask needs dask's distributed scheduler, which is not installed",
                "pip install 'dask[distributed]' (or use --executor local)",
            )

    def start(self, worker: Worker, n_workers: int, folder: Path) -> Handle:
        from distributed import Client

        address = os.environ.get("DASK_SCHEDULER_ADDRESS")
        if address:
            self.client: Any = Client(address)
        else:
            self.client = Client(n_workers=n_workers, threads_per_worker=1, processes=True)
        return JoblibHandle(worker, n_workers, "dask", {})

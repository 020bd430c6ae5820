"""`@tether.mlflow`: log a run to MLflow (naga's decorator), or diagnostics of a finished one.

    @tether.experiment(config="conf.yaml")    # or: @tether.experiment(..., mlflow=True)
    @tether.mlflow
    def main(cfg, run): ...

Inside a run (under `experiment`, `start_run`, or in a function they call) it adds the MLflow
sink to the run: the run.lock config as params, the metrics the run logs, and at the end
run.lock, config, output.log and report as artifacts; a run that logs again continues its MLflow
run. Used alone, the decorated function gets a run of its own, as the other decorators do.

    @tether.mlflow(run=True)                  # diag("1"): the run to add to comes first
    def diag(run):
        run.log_metrics({"diag/acc": evaluate(run.path("model.pt"))})

With `run=` (a RUN spec, or True to take it from the first argument) the function gets the
finished run re-opened by `tether.open_run` instead: its metrics and artifacts update that
run's MLflow entry in place, or, with `new=True`, go to a new MLflow run that supersedes it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..errors import TetherError


def mlflow(
    fn: Callable[..., Any] | None = None,
    *,
    run: Any = None,
    new: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> Any:
    """Log the run of the decorated function to MLflow; see the module docstring."""

    def sink() -> Any:
        from .sinks.mlflow import MlflowSink

        return MlflowSink(tracking_uri=tracking_uri, experiment=experiment)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if run is not None and run is not False:

            @functools.wraps(f)
            def diagnostics(*args: Any, **kwargs: Any) -> Any:
                from .diagnostics import open_run

                if run is True:
                    if not args:
                        raise TetherError(
                            f"{f.__name__}() needs the run to open as its first argument"
                        )
                    spec, rest = args[0], args[1:]
                else:
                    spec, rest = run, args
                with open_run(
                    spec, new=new, mlflow=True, tracking_uri=tracking_uri, experiment=experiment
                ) as opened:
                    return f(opened, *rest, **kwargs)

            return diagnostics

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ..api import current_run, run_for_call
            from ..options import options_of
            from ..run import sinks_for_next_run

            active = current_run()
            if active is not None:
                active.add_sink(sink())
                return f(*args, **kwargs)
            with sinks_for_next_run(sink):
                if getattr(f, "__tether_runner__", False):
                    return f(*args, **kwargs)  # it starts the run, which takes the sink
                return run_for_call(f, options_of(f), args, kwargs)

        wrapper.__tether_runner__ = False  # type: ignore[attr-defined]
        return wrapper

    return decorate(fn) if fn is not None else decorate

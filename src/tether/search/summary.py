"""What `tether show BATCH` prints of a search: its objective, the best trial, the importance
of each searched flag (Optuna's fANOVA) and a table of the trials.

`study_summary` is the data (`tether show --json` holds it as `study`), `study_lines` the text;
both are None/empty for a run that is no search, without importing Optuna.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

from ..executors.taskpool import TaskPool
from . import study as studies
from .space import SearchSpec

MAX_TRIAL_ROWS = 50  # the trials table shows the best ones past this many


def study_summary(folder: Path) -> dict[str, Any] | None:
    if not studies.has_study(folder):
        return None
    spec = None
    with contextlib.suppress(Exception):
        pool = TaskPool.open(folder)
        try:
            spec = SearchSpec.from_dict(pool.meta()["search"])
        finally:
            pool.close()
    study = studies.load_study(folder)
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    out: dict[str, Any] = {
        "algorithm": spec.algorithm if spec else None,
        "key": spec.key if spec else None,
        "direction": study.direction.name.lower(),
        "trials": spec.trials if spec else len(trials),
        "counts": counts,
        "best": None,
        "importance": None,
        "importance_error": None,
        "table": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": dict(t.params),
                "run": t.user_attrs.get(studies.RUN_ATTR) or t.user_attrs.get(studies.WARM_ATTR),
                "warm": studies.WARM_ATTR in t.user_attrs,
                "steps": len(t.intermediate_values),
            }
            for t in trials
        ],
    }
    with contextlib.suppress(ValueError):  # no completed trial yet
        best = study.best_trial
        out["best"] = {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "run": best.user_attrs.get(studies.RUN_ATTR) or best.user_attrs.get(studies.WARM_ATTR),
        }
    if counts.get("complete", 0) >= 2:
        try:
            opt = studies.optuna()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importance = opt.importance.get_param_importances(study)
            out["importance"] = {k: float(v) for k, v in importance.items()}
        except Exception as exc:  # a space with nothing varied, a missing evaluator
            out["importance_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        out["importance_error"] = "needs at least 2 completed trials"
    return out


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v)}" for k, v in params.items())


def study_lines(folder: Path) -> list[str]:
    """The study of the search in `folder` as lines of text (none when it is no search)."""
    data = study_summary(folder)
    if data is None:
        return []
    counts = data["counts"]
    done = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    objective = f"{data['direction']} {data['key']}" if data["key"] else data["direction"]
    lines = [f"search:   {data['algorithm'] or '?'}, {objective}, {data['trials']} trials ({done})"]
    best = data["best"]
    if best:
        run = f" (run {best['run'][:13]})" if best["run"] else ""
        lines.append(
            f"best:     trial {best['number']}{run}: {data['key'] or 'value'}="
            f"{_num(best['value'])}  {_params(best['params'])}"
        )
    else:
        lines.append("best:     - (no trial completed yet)")
    if data["importance"]:
        lines.append("importance:")
        width = max(len(k) for k in data["importance"])
        for name, value in data["importance"].items():
            bar = "#" * round(value * 20)
            lines.append(f"  {name:<{width}}  {value:5.3f}  {bar}")
    else:
        lines.append(f"importance: - ({data['importance_error']})")
    rows = data["table"]
    if len(rows) > MAX_TRIAL_ROWS:
        reverse = data["direction"] == "maximize"
        finished = [r for r in rows if r["value"] is not None]
        rows = sorted(finished, key=lambda r: r["value"], reverse=reverse)[:MAX_TRIAL_ROWS]
        lines.append(f"trials (the best {MAX_TRIAL_ROWS} of {len(data['table'])}):")
    else:
        lines.append("trials:")
    lines.append(f"  {'#':>4}  {'state':<8}  {'value':>10}  {'run':<13}  params")
    for r in rows:
        mark = " *" if best and r["number"] == best["number"] else ""
        run = (r["run"] or "-")[:13] + (" (warm)" if r["warm"] else "")
        value = _num(r["value"]) if r["value"] is not None else "-"
        lines.append(
            f"  {r['number']:>4}  {r['state']:<8}  {value:>10}  {run:<13}  "
            f"{_params(r['params'])}{mark}"
        )
    return lines

"""Generate docs/benchmarks.md's tables from bench/results/*.json, so no figure there is typed.

    python scripts/bench_docs.py             # rewrite the generated blocks of docs/benchmarks.md
    python scripts/bench_docs.py --check     # exit 1 when the page is not what the results give
    python scripts/bench_docs.py --summary [--since EPOCH]   # every ratio, OK/MISSED (make bench)

A generated block sits between two markers in the page; everything outside them is prose:

    <!-- bench:launch -->            the goals of bench/results/launch.json (its `rows`) and
    <!-- /bench:launch -->           where and how they were measured
    <!-- bench:launch:timings -->    the `timings` it holds (median, min, max of each command)
    <!-- /bench:launch:timings -->
    <!-- bench:launch:phases_ms -->  any other entry that maps names to numbers
    <!-- /bench:launch:phases_ms -->
    <!-- bench:summary -->           every goal of every results file, OK or MISSED
    <!-- /bench:summary -->

A block whose results file is missing or has no rows is left as it is (and named on stderr).
The results files are written by bench/benchlib.py (`record`); this script needs only the
standard library, so it runs in any Python.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(
    r"(?P<open><!-- bench:(?P<name>[a-z0-9_-]+)(?::(?P<part>[a-z_]+))? -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /bench:(?P=name)(?::(?P=part))? -->)",
    re.DOTALL,
)


# -- reading results ----------------------------------------------------------------------------
def load_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"bench_docs: {path}: not readable JSON ({exc}); skipped", file=sys.stderr)
            continue
        if isinstance(data, dict):
            data["_mtime"] = path.stat().st_mtime
            out[str(data.get("benchmark") or path.stem)] = data
    return out


_GOAL = re.compile(r"(<=|>=)\s*([0-9]+(?:\.[0-9]+)?)")


def rows_of(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The goals a results file records: its `rows` (benchlib.record), else, for a file of the
    older shape, one row from a top-level `ratio` and a `goal` text naming `<= X` or `>= X`."""
    rows = data.get("rows")
    if isinstance(rows, list):
        return [r for r in rows if isinstance(r, dict) and "ratio" in r and "goal" in r]
    ratio, goal = data.get("ratio"), data.get("goal")
    if isinstance(ratio, (int, float)) and isinstance(goal, str):
        m = _GOAL.search(goal)
        if m:
            op, target = m.group(1), float(m.group(2))
            ok = ratio <= target if op == "<=" else ratio >= target
            return [{"metric": goal, "ratio": ratio, "goal": target, "op": op, "ok": ok}]
    return []


# -- formatting ---------------------------------------------------------------------------------
def number(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if not isinstance(value, (int, float)):
        return str(value)
    if unit == "s" and abs(value) < 0.1:
        value, unit = value * 1000, "ms"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def goal_text(goal: Any) -> str:
    return f"{goal:g}" if isinstance(goal, (int, float)) else str(goal)


def verdict(row: Mapping[str, Any]) -> str:
    return "**OK**" if row.get("ok") else "**MISSED**"


def rows_table(rows: Iterable[Mapping[str, Any]], name: str | None = None) -> list[str]:
    lead = "| benchmark " if name is None else ""
    lines = [
        f"{lead}| goal | tether | baseline | ratio | target | |",
        f"{'| --- ' if name is None else ''}| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        unit = str(row.get("unit") or "")
        first = f"| {row.get('_benchmark', '')} " if name is None else ""
        lines.append(
            f"{first}| {row.get('metric', '')} | {number(row.get('value'), unit)} | "
            f"{number(row.get('baseline'), unit)} | {number(row.get('ratio'))} | "
            f"{row.get('op', '<=')} {goal_text(row.get('goal'))} | {verdict(row)} |"
        )
    return lines


def measured_line(data: Mapping[str, Any]) -> str:
    machine = data.get("machine") or {}
    before, after = data.get("load_before"), data.get("load_after")
    load = ""
    if isinstance(before, list) and isinstance(after, list) and before and after:
        load = f", load average {before[0]:.2f} before and {after[0]:.2f} after (1 min)"
    where = f"{machine.get('cores', '?')} cores, {machine.get('implementation', 'Python')} "
    where += str(machine.get("python", ""))
    command = data.get("command")
    how = f"; `{command}`" if command else ""
    return (
        f"Measured at commit `{data.get('commit', 'unknown')}`, {data.get('when', '?')}, "
        f"{where}{load}{how}."
    )


def timings_table(data: Mapping[str, Any]) -> list[str] | None:
    timings = data.get("timings")
    if not isinstance(timings, list) or not timings:
        return None
    lines = ["| command | median | min | max | runs |", "| --- | ---: | ---: | ---: | ---: |"]
    for t in timings:
        if not isinstance(t, dict) or "median_s" not in t:
            return None
        lines.append(
            f"| {t.get('label', '')} | {number(t['median_s'], 's')} | "
            f"{number(t.get('min_s'), 's')} | {number(t.get('max_s'), 's')} | "
            f"{len(t.get('samples_s') or [])} |"
        )
    return lines


def mapping_table(values: Any) -> list[str] | None:
    """A results entry that maps names to numbers (`phases_ms`: {"job started": 60.1, ...})."""
    if not isinstance(values, dict) or not values:
        return None
    if not all(isinstance(v, (int, float)) for v in values.values()):
        return None
    lines = ["| what | value |", "| --- | ---: |"]
    lines += [f"| {k} | {number(v)} |" for k, v in values.items()]
    return lines


def summary_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, data in sorted(results.items()):
        for row in rows_of(data):
            out.append({**row, "_benchmark": name})
    return out


# -- the page -----------------------------------------------------------------------------------
def render_block(
    name: str, part: str | None, results: Mapping[str, Mapping[str, Any]]
) -> str | None:
    if name == "summary":
        rows = summary_rows(results)
        if not rows:
            return None
        return "\n".join(rows_table(rows)) + "\n"
    data = results.get(name)
    if data is None:
        return None
    if part == "timings":
        table = timings_table(data)
        return None if table is None else "\n".join(table) + "\n"
    if part is not None:
        table = mapping_table(data.get(part))
        return None if table is None else "\n".join(table) + "\n"
    rows = rows_of(data)
    if not rows:
        return None
    return "\n".join([*rows_table(rows, name), "", measured_line(data)]) + "\n"


def regenerate(text: str, results: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[str]]:
    """The page with its blocks regenerated, and the blocks left as they were."""
    kept: list[str] = []

    def replace(m: re.Match[str]) -> str:
        label = m.group("name") + (f":{m.group('part')}" if m.group("part") else "")
        body = render_block(m.group("name"), m.group("part"), results)
        if body is None:
            kept.append(label)
            return m.group(0)
        return m.group("open") + body + m.group("close")

    return BLOCK.sub(replace, text), kept


def print_summary(results: Mapping[str, Mapping[str, Any]], since: float | None) -> int:
    fresh = {
        k: v for k, v in results.items() if since is None or float(v.get("_mtime", 0)) >= since
    }
    rows = summary_rows(fresh)
    silent = sorted(k for k, v in fresh.items() if not rows_of(v))
    if not rows:
        print("no goals recorded" + (" in this run" if since is not None else ""))
    else:
        width = max(len(f"{r['_benchmark']}: {r.get('metric', '')}") for r in rows)
        for r in rows:
            label = f"{r['_benchmark']}: {r.get('metric', '')}"
            goal = f"{r.get('op', '<=')} {goal_text(r.get('goal'))}"
            ok = "OK" if r.get("ok") else "MISSED"
            print(f"  {label:<{width}}  ratio {number(r.get('ratio')):>7}  goal {goal:<8}  {ok}")
        missed = sum(1 for r in rows if not r.get("ok"))
        print(f"  {len(rows)} goals: {len(rows) - missed} OK, {missed} MISSED")
    if silent:
        print(f"  (no goals recorded by: {', '.join(silent)}: see their output above)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("--summary", action="store_true", help="print every goal, OK/MISSED")
    parser.add_argument("--since", type=float, help="with --summary: results written since")
    parser.add_argument(
        "--has-rows", metavar="NAME", help="exit 0 if results/NAME.json (since --since) has goals"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--page", type=Path, default=PAGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    results = load_results(args.results)
    if args.has_rows:
        data = results.get(args.has_rows)
        fresh = data is not None and (
            args.since is None or float(data.get("_mtime", 0)) >= args.since
        )
        return 0 if fresh and data is not None and rows_of(data) else 1
    if args.summary:
        return print_summary(results, args.since)
    text = args.page.read_text(encoding="utf-8")
    new, kept = regenerate(text, results)
    if kept:
        print(f"bench_docs: left as they are (no results): {', '.join(kept)}", file=sys.stderr)
    if args.check:
        if new != text:
            print(f"{args.page}: stale; run `python scripts/bench_docs.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = args.page.with_suffix(".md.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(args.page)
        print(f"bench_docs: {args.page} regenerated ({time.strftime('%H:%M:%S')})")
    else:
        print(f"bench_docs: {args.page} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

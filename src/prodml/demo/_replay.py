"""The replayed year's monitoring, month by month: a monitoring pass with the clock a
week after the year's end (every label is in) and a summary of the live arm's monthly
windows — drift, late rate, estimated against realized performance. The replay itself
is :mod:`prodml.demo._loop`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prodml.project import Project

__all__ = ["ENDPOINT", "MONITOR_CLOCK_AT", "REPLAY_END", "monitor_year"]

REPLAY_END = datetime(2014, 1, 1, tzinfo=UTC)
#: The clock of the monitoring pass: a week after the replayed year, so every label is in.
MONITOR_CLOCK_AT = REPLAY_END + timedelta(days=8)
ENDPOINT = "flight_delay"

Echo = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def monitor_year(project: Project, say: Echo, progress: Progress | None = None) -> dict[str, Any]:
    """One monitoring pass (the project's clock stands a week after the replayed year)
    and a month-by-month summary of the live arm: drift, late rate, and the estimated
    against the realized ROC-AUC and accuracy, with the estimates' mean absolute error."""
    t0 = time.perf_counter()
    outcome = project.monitor.run(endpoint=ENDPOINT, progress=progress)
    seconds = time.perf_counter() - t0
    live = [
        r for r in project.monitor.stored(endpoint=ENDPOINT) if r.window.arm and not r.window.shadow
    ]
    months = []
    for report in live:
        window = report.window
        found = {(r.check, r.metric, r.column): r for r in report.results}

        def value(check: str, metric: str, column: str = "", found: dict[Any, Any] = found) -> Any:
            result = found.get((check, metric, column))
            return None if result is None else result.value

        drifted = sorted(
            (r for r in report.results if r.check == "drift" and r.status == "drift" and r.column),
            key=lambda r: -(r.value or 0.0),
        )
        months.append(
            {
                "month": f"{window.start:%Y-%m}",
                "rows": window.rows,
                "drift_share": value("drift", "share"),
                "drifted": [r.column for r in drifted],
                "late_rate": value("label", "label_rate"),
                "roc_auc": value("performance", "roc_auc"),
                "roc_auc_estimated": value("estimated", "roc_auc"),
                "accuracy": value("performance", "accuracy"),
                "accuracy_estimated": value("estimated", "accuracy"),
            }
        )
    errors = {
        metric: _mae([(m[f"{metric}_estimated"], m[metric]) for m in months])
        for metric in ("roc_auc", "accuracy")
    }
    say(f"Monitored {len(outcome.computed)} new windows in {seconds:.1f} s (monthly, live arm):")
    say("  month    rows  drift share  late rate  AUC est/real   acc est/real  most drifted")
    for m in months:
        say(
            f"  {m['month']}  {m['rows']:>6,}  {_f(m['drift_share'])}        {_f(m['late_rate'])}"
            f"      {_f(m['roc_auc_estimated'])}/{_f(m['roc_auc'])}    {_f(m['accuracy_estimated'])}/"
            f"{_f(m['accuracy'])}   {', '.join(m['drifted'][:4]) or '-'}"
        )
    say(
        f"Estimated vs realized, mean absolute error over {len(months)} months: "
        f"ROC-AUC {_f(errors['roc_auc'])}, accuracy {_f(errors['accuracy'])}"
    )
    return {"seconds": round(seconds, 2), "months": months, "estimate_mae": errors}


def _f(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def _mae(pairs: list[tuple[float | None, float | None]]) -> float | None:
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    return sum(diffs) / len(diffs) if diffs else None

"""The leakage check's view findings: feature views whose training rows mostly picked a
feature row stamped exactly at the entity row's own time.

Under the inclusive bound (``event_time <= t``) an entity row at ``t`` reads a feature
row stamped at ``t``. A view that stores one row per event, stamped at the event's own
time, gives every entity row its own event's row: if that row's values are computed
*including* the event — a running late rate over a user's flights up to and including
this one — the model reads the label, even when the leak is too mild for the
single-feature figures to flag it (a user with many flights dilutes the current label,
but in the training and the test split alike). The training set counts these exact ties
per view (``ViewCoverage.exact_time``, over ``picked``: the rows that picked a row); a
view is **suspect** when

- its share of exact ties reaches ``[gate] leakage_max_exact_time_share`` (default 0.5),
- and it has at least :data:`EXACT_TIME_MIN_ROWS` of them.

Why 0.5: a view whose rows are stamped independently of the entity rows (hourly weather,
daily snapshots, other events' times) ties only when an entity time falls on its grid by
chance — on the demo's flights of early 2013, 19 % of flights against hourly weather
(departures are often scheduled on the hour) and 8 % against the carriers' running
delay rate stamped at other flights' landings; none at all behind a created time that
comes after the event time. A view stamped on the entity rows' own clock ties on nearly
every row. Half lies far from both, so a view reaching it is stamped at the
entity rows' events for most rows. That is harmless for a measurement known at its
timestamp (then ignore the warning); only the view's author knows whether a row
includes its event, hence a warning that says both. :data:`EXACT_TIME_MIN_ROWS` keeps a
handful of rows from deciding anything. A strict view (``inclusive=False``) cannot tie.

>>> finding = ViewExactTime(picked=400, exact_time=380, reasons=("...",))
>>> round(finding.exact_time_share, 2), finding.suspect
(0.95, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prodml.core import GateConfig
from prodml.core.errors import SchemaError
from prodml.features import ViewCoverage

__all__ = ["EXACT_TIME_MIN_ROWS", "ViewExactTime", "check_exact_time"]

#: Exact ties a view needs, besides the share, to be suspect.
EXACT_TIME_MIN_ROWS = 20


@dataclass(frozen=True)
class ViewExactTime:
    """One view's picks and exact-time ties; ``reasons`` is empty unless it is suspect."""

    picked: int
    exact_time: int
    reasons: tuple[str, ...] = ()

    @property
    def exact_time_share(self) -> float:
        """``exact_time / picked`` (0.0 when no row picked a feature row)."""
        return self.exact_time / self.picked if self.picked else 0.0

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "picked": self.picked,
            "exact_time": self.exact_time,
            "exact_time_share": self.exact_time_share,
            "suspect": self.suspect,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewExactTime:
        try:
            return cls(
                picked=int(data["picked"]),
                exact_time=int(data["exact_time"]),
                reasons=tuple(str(r) for r in data["reasons"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"leakage report view: missing or malformed field {exc}") from None

    def warning(self, view: str) -> str:
        """What was seen, why it matters and what to do (for a suspect view)."""
        return (
            f"leakage: feature view {view!r}: {self.exact_time:,} of the {self.picked:,} "
            f"training-set rows that read a row from it ({self.exact_time_share:.1%}) read one "
            f"stamped exactly at their own time ({'; '.join(self.reasons)}). The view likely "
            "holds one row per event at the "
            "event's own time: if a row's values include that event (e.g. a running "
            "aggregate over the label), the model reads the label — declare the view with "
            "inclusive=False; if its values were known before the event, ignore this warning"
        )


def check_exact_time(
    coverage: Mapping[str, ViewCoverage], config: GateConfig
) -> dict[str, ViewExactTime]:
    """Every view's exact-time ties from a training set's ``coverage``, judged against
    ``config.leakage_max_exact_time_share`` and :data:`EXACT_TIME_MIN_ROWS`."""
    limit = config.leakage_max_exact_time_share
    out: dict[str, ViewExactTime] = {}
    for name, seen in coverage.items():
        finding = ViewExactTime(seen.picked, seen.exact_time)
        if seen.exact_time >= EXACT_TIME_MIN_ROWS and finding.exact_time_share >= limit:
            share = finding.exact_time_share
            reason = f"share {share:.3f} >= {limit:g}, [gate] leakage_max_exact_time_share"
            finding = ViewExactTime(seen.picked, seen.exact_time, (reason,))
        out[name] = finding
    return out

"""Retraining policies: the ``[[retraining.policies]]`` sections of ``prodml.toml``.

A policy says which model to retrain for which endpoint, *when* (its triggers) and
*how* (the data window, stateful or stateless training, approval, the hand-over to the
rollout controller). Triggers:

* ``schedule``: ``every`` (a duration such as ``30d``, or ``1mo`` for calendar months:
  the first pass in a month N months after that of the last job) since the last job of
  the policy started — or since the champion was registered, before any job;
* ``drift``: a per-window drift metric of the endpoint's live arm (``drift.share``, or
  the share recomputed without the ``ignore``\\ d features — seasonal inputs such as the
  month — and weighted by ``weights``), debounced like an alert (``m_of_n``, ``for``);
* ``performance``: a realized delayed-label metric (``performance.roc_auc`` …) or its
  label-free estimate (``estimated.roc_auc``) below ``threshold`` (``direction``), or
  below the champion's own test value minus ``margin`` when no threshold is given,
  debounced the same way;
* ``challenger``: another arm of the endpoint (a shadow, or a canary's challenger)
  beats the champion on live traffic — its realized ``metric`` in the same window leads
  the champion's by more than ``threshold`` (default ``margin``, default 0; the lead is
  signed so that better is positive for metrics where lower is better) — debounced the
  same way.

A fired trigger starts a job unless the policy's ``cooldown`` since the last job has
not passed or ``max_jobs`` jobs already started within ``per``. These models do no I/O.

>>> policy = RetrainPolicyConfig.model_validate({
...     "name": "monthly", "model": "flight_delay", "endpoint": "flight_delay",
...     "window": "expanding", "start": "2013-01-01", "cooldown": "20d",
...     "triggers": [{"kind": "schedule", "every": "4w"},
...                  {"kind": "drift", "threshold": 0.5, "m_of_n": [2, 3],
...                   "ignore": ["dep_month"]}, {"kind": "schedule", "every": "1mo"}]})
>>> [t.kind for t in policy.triggers], policy.cooldown.days, policy.window
(['schedule', 'drift', 'schedule'], 20, 'expanding')
>>> policy.triggers[2].every_months, policy.triggers[2].every
(1, None)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from prodml.core._alert_config import MAX_WINDOWS, parse_duration
from prodml.core._config_section import Section as _Section
from prodml.core._ids import NAME_PATTERN

__all__ = ["RetrainPolicyConfig", "RetrainingConfig", "TriggerConfig"]

_METRIC_CHECKS = ("performance", "estimated")
_MONTHS = re.compile(r"^\d+mo$")


def _duration(value: Any, field: str) -> Any:
    return parse_duration(value, field=field) if isinstance(value, str) else value


class TriggerConfig(_Section):
    """One trigger of a policy (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)

    kind: Literal["schedule", "drift", "performance", "challenger"]
    every: timedelta | None = Field(default=None, description="schedule: time between jobs")
    every_months: int | None = Field(default=None, ge=1, description="schedule: calendar months")
    metric: str | None = Field(
        default=None,
        description="drift: drift.share (default); performance: performance.<metric> or "
        "estimated.<metric> (default performance.roc_auc); challenger: the performance "
        "metric on which another arm's model must beat the champion's in the same window",
    )
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    direction: Literal["above", "below"] | None = None
    margin: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    m_of_n: tuple[int, int] | None = None
    for_: timedelta | None = Field(default=None, alias="for")
    ignore: tuple[str, ...] = Field(default=(), description="drift: features not counted")
    weights: dict[str, float] = Field(default_factory=dict, description="drift: importances")

    @model_validator(mode="before")
    @classmethod
    def _months(cls, data: Any) -> Any:
        every = data.get("every") if isinstance(data, dict) else None
        if isinstance(every, str) and _MONTHS.fullmatch(every.strip()):
            return {**data, "every": None, "every_months": int(every.strip()[:-2])}
        return data

    @field_validator("every", "for_", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: Any) -> Any:
        return _duration(value, info.field_name)

    @field_validator("m_of_n")
    @classmethod
    def _check_m_of_n(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1] <= MAX_WINDOWS:
            raise ValueError(f"m_of_n: expected [M, N] with 1 <= M <= N <= {MAX_WINDOWS}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        where = f"retraining trigger {self.kind!r}"
        if self.kind == "schedule":
            if self.every_months is None and (self.every is None or self.every <= timedelta(0)):
                raise ValueError(
                    f"{where}: every is required, a duration such as '30d' or months such as '1mo'"
                )
            return self
        metric = self.metric or ("drift.share" if self.kind == "drift" else "performance.roc_auc")
        if self.kind == "drift" and metric != "drift.share":
            raise ValueError(f"{where}: metric must be 'drift.share', got {metric!r}")
        if self.kind == "performance" and metric.partition(".")[0] not in _METRIC_CHECKS:
            raise ValueError(
                f"{where}: metric must be performance.<metric> or estimated.<metric>, got "
                f"{metric!r}"
            )
        if self.kind == "challenger":
            if metric.partition(".")[0] != "performance":
                raise ValueError(f"{where}: metric must be performance.<metric>, got {metric!r}")
            if self.direction not in (None, "above"):
                raise ValueError(
                    f"{where}: direction is 'above' (the challenger's lead over the champion)"
                )
            if self.threshold is None:  # any lead beyond the margin
                object.__setattr__(self, "threshold", self.margin)
        if self.kind == "drift" and self.threshold is None:
            raise ValueError(f"{where}: threshold is required (a drifted share such as 0.3)")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"{where}: weights must be >= 0")
        direction = self.direction or ("below" if self.kind == "performance" else "above")
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "direction", direction)
        return self


class RetrainPolicyConfig(_Section):
    """How and when one model is retrained (see the module docstring).

    The data window ends at the pass's time minus ``label_delay`` (rows whose labels may
    not have arrived are left out); ``expanding`` starts at ``start``, ``sliding`` covers
    ``window_days``; a window with fewer than ``min_rows`` labelled rows fails the job's
    validation. ``warm_start`` trains from the champion (the training function gets
    it as ``data.parent``) with a stateless retrain every ``full_retrain_every`` jobs.
    ``auto_approve`` approves a BLESSED candidate in the registry; ``rollout`` is the
    plan handed to the rollout controller with the candidate as challenger (None: the
    candidate is registered and left for a person)."""

    name: str
    model: str
    endpoint: str | None = None
    triggers: tuple[TriggerConfig, ...] = ()
    window: Literal["expanding", "sliding"] = "expanding"
    start: datetime | None = None
    window_days: int | None = Field(default=None, ge=1)
    label_delay: timedelta = timedelta(0)
    min_rows: int = Field(default=100, ge=1, description="labelled rows the window must hold")
    warm_start: bool = False
    full_retrain_every: int = Field(default=4, ge=1)
    cooldown: timedelta = timedelta(0)
    max_jobs: int | None = Field(default=None, ge=1)
    per: timedelta = timedelta(days=30)
    retries: int = Field(default=1, ge=0)
    auto_approve: bool = False
    rollout: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", "model")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(f"invalid name {value!r}: expected {NAME_PATTERN.pattern}")
        return value

    @field_validator("label_delay", "cooldown", "per", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: Any) -> Any:
        return _duration(value, info.field_name)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _window(self) -> Self:
        where = f"retraining policy {self.name!r}"
        if self.window == "expanding" and self.start is None:
            raise ValueError(f"{where}: an expanding window needs start (a date)")
        if self.window == "sliding" and self.window_days is None:
            raise ValueError(f"{where}: a sliding window needs window_days")
        return self


class RetrainingConfig(_Section):
    """``[retraining]``: the policies, and the controller's lease."""

    policies: tuple[RetrainPolicyConfig, ...] = ()
    #: Seconds the controller's lease lasts without a heartbeat: at least a second (the
    #: heartbeat renews it), at most a week (a dead controller's lease blocks the others).
    lease_s: float = Field(default=600.0, ge=1.0, le=7 * 86400.0)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [p.name for p in self.policies]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"retraining policies: names must be unique, repeated: {twice}")
        return self

"""Alert rules and alert sinks: the ``[[monitoring.alerts.rules]]`` and
``[[monitoring.alerts.sinks]]`` sections of ``prodml.toml``.

A rule says *what* to watch (a metric of a scope, compared with a threshold) and *how
patiently* (``m_of_n``, ``for``, ``keep_firing_for``, ``cooldown``); the monitoring layer
evaluates it over closed windows. ``metric`` must be a name of the monitoring metric
catalogue (:data:`~prodml.core._monitor_metrics.MONITOR_METRICS`), and ``column`` must fit
its scope (omitted for a per-window metric, a name or ``"*"`` for a per-column one), so a
rule that could never match is refused when the config loads. Durations are written
``30s``, ``30m``, ``6h``, ``2d``, ``1w`` or a sum such as ``1d12h``. These models do no I/O.

>>> rule = AlertRuleConfig.model_validate(
...     {"name": "input_drift", "metric": "drift.share", "threshold": 0.5,
...      "m_of_n": [2, 3], "for": "2d", "sinks": ["log"]}
... )
>>> rule.m_of_n, rule.for_, rule.direction
((2, 3), datetime.timedelta(days=2), 'above')
>>> parse_duration("1d12h")
datetime.timedelta(days=1, seconds=43200)
>>> format_duration(parse_duration("90m"))
'1h30m'
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from prodml.core._config_section import Section as _Section
from prodml.core._ids import NAME_PATTERN
from prodml.core._monitor_metrics import MONITOR_METRICS, closest_metric, describe_metrics

__all__ = [
    "AlertRuleConfig",
    "AlertSinkConfig",
    "AlertsConfig",
    "format_duration",
    "parse_duration",
]

#: Seconds per duration unit.
_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")
#: The sink every rule may name without configuring it.
DEFAULT_SINK = "log"
#: Upper bound on N in ``m_of_n``: the breach history kept per alert.
MAX_WINDOWS = 1000
#: The longest duration :func:`parse_duration` accepts: 100 years (of 365.25 days).
MAX_DURATION_S = 36_525 * 86_400


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """Parse ``30m``, ``6h``, ``2d``, ``1w`` (or a sum such as ``1d12h``) into a timedelta.

    >>> parse_duration("2d")
    datetime.timedelta(days=2)
    >>> parse_duration("2 days", field="for")
    Traceback (most recent call last):
    ...
    ValueError: for: invalid duration '2 days': expected an integer and a unit s, m, h, d or w, such as '30m', '6h', '2d', '1w' or '1d12h'
    """
    compact = text.strip().lower() if isinstance(text, str) else ""
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"{field}: invalid duration {text!r}: expected an integer and a unit s, m, h, d "
            "or w, such as '30m', '6h', '2d', '1w' or '1d12h'"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(compact))
    if seconds > MAX_DURATION_S:  # past this, a date plus the duration leaves the calendar
        raise ValueError(
            f"{field}: duration {text!r} is too long: expected at most 100 years "
            f"({MAX_DURATION_S // _UNITS['d']}d)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest ``parse_duration`` text for a whole number of seconds.

    >>> format_duration(timedelta(days=9))
    '1w2d'
    >>> format_duration(timedelta(0))
    '0s'
    """
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


class AlertSinkConfig(_Section):
    """Where notifications go. ``url`` is required for every type but ``log``: the
    webhook URL, the Slack incoming-webhook URL, or the Alertmanager base URL."""

    name: str
    type: Literal["log", "webhook", "slack", "alertmanager"]
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_identifier(value, "alert sink name")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "url")

    @model_validator(mode="after")
    def _url_matches_type(self) -> Self:
        if self.type == "log" and self.url is not None:
            raise ValueError(f"alert sink {self.name!r}: a 'log' sink takes no url")
        if self.type != "log" and self.url is None:
            raise ValueError(f"alert sink {self.name!r}: url is required for type {self.type!r}")
        return self


class AlertRuleConfig(_Section):
    """One alert rule: ``metric`` compared with ``threshold`` per closed window and scope.

    Debounce: with ``m_of_n = [M, N]`` the condition is "at least M of the last N evaluated
    windows breach", else "this window breaches"; ``for`` is how long the condition must
    hold (window end to window end) before firing; ``keep_firing_for`` how long it must
    stay false before resolving; ``cooldown`` holds back the firing notification of an
    episode that starts within that time of the last resolved notification. With none of
    them the rule fires on the first breaching window and resolves on the first clear one.
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    name: str
    metric: str = Field(description="e.g. drift.share, drift.value, performance.roc_auc")
    column: str | None = Field(
        default=None, description='per-column metrics: the column, or "*" for every column'
    )
    endpoint: str | None = Field(default=None, description="None: every endpoint")
    threshold: float = Field(allow_inf_nan=False)
    direction: Literal["above", "below"] = "above"
    m_of_n: tuple[int, int] | None = Field(
        default=None, description="breach when M of the last N evaluated windows breach"
    )
    for_: timedelta | None = Field(default=None, alias="for")
    keep_firing_for: timedelta | None = None
    cooldown: timedelta | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    runbook: str | None = Field(default=None, description="URL of the runbook")
    sinks: tuple[str, ...] = (DEFAULT_SINK,)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _check_identifier(value, "alert rule name")

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str, info: ValidationInfo) -> str:
        rule = f"alert rule {info.data.get('name', '?')!r}"
        if not _METRIC.fullmatch(value):
            raise ValueError(
                f"{rule}: metric {value!r} is invalid: expected <check>.<metric> such as "
                "'drift.share' or 'operational.latency_p99_ms'"
            )
        if value not in MONITOR_METRICS:
            closest = closest_metric(value)
            hint = f" (did you mean {closest!r}?)" if closest else ""
            raise ValueError(
                f"{rule}: unknown metric {value!r}{hint}; valid metrics "
                f"(`prodml monitor rule-metrics` describes them): {describe_metrics()}"
            )
        return value

    @field_validator("column", "endpoint")
    @classmethod
    def _check_not_empty(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{info.field_name} must not be empty (omit it to match every one)")
        return value

    @field_validator("m_of_n")
    @classmethod
    def _check_m_of_n(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None:
            m, n = value
            if not 1 <= m <= n <= MAX_WINDOWS:
                raise ValueError(
                    f"m_of_n: expected [M, N] with 1 <= M <= N <= {MAX_WINDOWS}, got [{m}, {n}]"
                )
        return value

    @field_validator("for_", "keep_firing_for", "cooldown", mode="before")
    @classmethod
    def _parse_durations(cls, value: Any, info: ValidationInfo) -> Any:
        name = "for" if info.field_name == "for_" else str(info.field_name)
        if isinstance(value, str):
            return parse_duration(value, field=name)
        if isinstance(value, timedelta):
            if value < timedelta(0):
                raise ValueError(f"{name}: duration must not be negative, got {value}")
            return value
        if value is None:
            return None
        raise ValueError(
            f"{name}: expected a duration string such as '30m', '6h', '2d' or '1w', got {value!r}"
        )

    @field_serializer("for_", "keep_firing_for", "cooldown", when_used="json")
    def _dump_duration(self, value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)

    @field_validator("runbook")
    @classmethod
    def _check_runbook(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "runbook")

    @field_validator("sinks")
    @classmethod
    def _check_sinks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("sinks must name at least one sink")
        if len(set(value)) != len(value):
            raise ValueError(f"sinks must not repeat a name, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _check_scope(self) -> Self:
        scope = MONITOR_METRICS[self.metric].scope
        if scope == "window" and self.column is not None:
            raise ValueError(
                f"alert rule {self.name!r}: metric {self.metric!r} is one value per window: "
                f"omit `column` (got {self.column!r})"
            )
        if scope == "column" and self.column is None:
            what = MONITOR_METRICS[self.metric].column
            raise ValueError(
                f"alert rule {self.name!r}: metric {self.metric!r} is one value per column "
                f'({what}): set `column` to a column name or "*" for every column'
            )
        return self

    def applies_to(self, endpoint: str, column: str | None = None) -> bool:
        """Whether the rule watches this endpoint and column (``None``: a dataset-level
        metric).

        >>> rule = AlertRuleConfig(name="r", metric="drift.value", column="*", threshold=0.1)
        >>> rule.applies_to("flights", "dep_delay"), rule.applies_to("flights", None)
        (True, False)
        """
        if self.endpoint is not None and endpoint != self.endpoint:
            return False
        if self.column is None or column is None:
            return self.column is None and column is None
        return self.column in ("*", column)


class AlertsConfig(_Section):
    """Sinks and rules together; checks that names are unique and that every sink a
    rule names exists (``log`` always does)."""

    sinks: tuple[AlertSinkConfig, ...] = ()
    rules: tuple[AlertRuleConfig, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        for kind, names in (
            ("sink", [s.name for s in self.sinks]),
            ("rule", [r.name for r in self.rules]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"alert {kind} names must be unique, repeated: {repeated}")
        known = {s.name for s in self.sinks} | {DEFAULT_SINK}
        for rule in self.rules:
            unknown = [s for s in rule.sinks if s not in known]
            if unknown:
                raise ValueError(
                    f"alert rule {rule.name!r}: unknown sinks {unknown}; "
                    f"configured: {sorted(known)}"
                )
        return self


def _check_identifier(value: str, kind: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{kind} {value!r} is invalid: expected a letter or underscore followed by up "
            "to 127 letters, digits, '_' or '-'"
        )
    return value


def _check_http_url(value: str, field: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{field}: expected an http:// or https:// URL, got {value!r}")
    return value

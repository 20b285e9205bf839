"""Alert sinks: where a :class:`Notification` goes when an alert fires or resolves.

One small interface, ``send(notification) -> None``, raising a :class:`ProdMLError` that
names the sink when delivery fails. The HTTP sinks POST JSON through a *transport*
(``(url, body, headers, timeout_s) -> status``); the default uses ``urllib.request`` from
the standard library, so alerting adds no runtime dependency (httpx is only a dev extra).

Sink kinds are plugins: :data:`ALERT_SINKS` maps a ``[[monitoring.alerts.sinks]]``
``type`` to its :class:`AlertSink` class, imported when :func:`make_sink` first builds
one (``memory`` keeps what it is sent, for tests).

>>> from datetime import datetime, timezone
>>> t = datetime(2013, 7, 2, tzinfo=timezone.utc)
>>> note = Notification(rule="input_drift", metric="drift.share", severity="warning",
...     scope="endpoint=flights/column=dep_delay", state="firing", value=0.62,
...     threshold=0.5, direction="above", window_start=t, window_end=t, first_time=t,
...     fired_at=t)
>>> note.summary
'[FIRING] input_drift (warning) endpoint=flights/column=dep_delay: drift.share = 0.62, alert when above 0.5'
>>> note.labels
{'endpoint': 'flights', 'column': 'dep_delay'}
>>> sink = MemorySink()
>>> sink.send(note)
>>> [n.state for n in sink.sent]
['firing']
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from prodml.core import Plugins
from prodml.core._alert_config import AlertSinkConfig
from prodml.core.errors import ConfigError, ProdMLError

__all__ = [
    "ALERT_SINKS",
    "LOGGER_NAME",
    "AlertSink",
    "AlertmanagerSink",
    "LogSink",
    "MemorySink",
    "Notification",
    "Sink",
    "SlackSink",
    "Transport",
    "WebhookSink",
    "format_scope",
    "make_sink",
    "parse_scope",
    "urllib_transport",
]

LOGGER_NAME = "prodml.monitoring.alerts"

#: ``(url, body, headers, timeout_s) -> HTTP status``; raises ``OSError`` when unreachable.
Transport = Callable[[str, bytes, Mapping[str, str], float], int]


def format_scope(parts: Mapping[str, str | None]) -> str:
    """The scope key of an alert: ``key=value`` parts joined by ``/`` in the given order;
    ``None`` values are left out and ``%``, ``/``, ``=`` in values are percent-encoded.

    >>> format_scope({"endpoint": "flights", "arm": "champion", "column": "a/b"})
    'endpoint=flights/arm=champion/column=a%2Fb'
    >>> parse_scope("endpoint=flights/arm=champion/column=a%2Fb")["column"]
    'a/b'
    """
    return "/".join(f"{_escape(k)}={_escape(v)}" for k, v in parts.items() if v is not None)


def parse_scope(scope: str) -> dict[str, str]:
    """The parts of a scope key written by :func:`format_scope` (``""`` has none)."""
    parts: dict[str, str] = {}
    for item in scope.split("/") if scope else ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"scope {scope!r}: expected key=value parts joined by '/'")
        parts[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    return parts


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("/", "%2F").replace("=", "%3D")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Notification:
    """An alert's transition to ``firing`` or ``resolved``, as sent to the sinks.

    ``value`` and the window are those of the window that caused the transition;
    ``evidence`` holds the episode's recent windows (``window_start``, ``window_end``,
    ``value``, ``breach``, ``condition``, ``details``). ``sent_at`` is stamped by the engine.
    """

    rule: str
    metric: str
    severity: str
    scope: str
    state: Literal["firing", "resolved"]
    value: float
    threshold: float
    direction: Literal["above", "below"]
    window_start: datetime
    window_end: datetime
    first_time: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    evidence: tuple[dict[str, Any], ...] = ()
    runbook: str | None = None
    sent_at: datetime | None = None

    @property
    def labels(self) -> dict[str, str]:
        """The scope's parts (``endpoint``, ``arm``, ``column`` …)."""
        return parse_scope(self.scope)

    @property
    def summary(self) -> str:
        """One line for humans."""
        return (
            f"[{self.state.upper()}] {self.rule} ({self.severity}) {self.scope}: "
            f"{self.metric} = {self.value:.4g}, alert when {self.direction} {self.threshold:g}"
        )

    @property
    def description(self) -> str:
        """The episode in a few sentences."""
        text = (
            f"{self.metric} was {self.value:.4g} in the window "
            f"{_iso(self.window_start)} to {_iso(self.window_end)} "
            f"(alert when {self.direction} {self.threshold:g}). "
            f"The condition began at {_iso(self.first_time)}; "
            f"the alert fired at {_iso(self.fired_at)}"
        )
        if self.resolved_at is not None:
            text += f" and resolved at {_iso(self.resolved_at)}"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: times as ISO 8601 strings in UTC (``Z``)."""
        return {
            "rule": self.rule,
            "metric": self.metric,
            "severity": self.severity,
            "scope": self.scope,
            "labels": self.labels,
            "state": self.state,
            "value": self.value,
            "threshold": self.threshold,
            "direction": self.direction,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "first_time": _iso(self.first_time),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
            "evidence": list(self.evidence),
            "runbook": self.runbook,
            "sent_at": _iso(self.sent_at),
            "summary": self.summary,
        }


@runtime_checkable
class Sink(Protocol):
    """Delivers notifications; raises a :class:`ProdMLError` naming itself on failure."""

    @property
    def name(self) -> str: ...

    def send(self, notification: Notification) -> None: ...


class AlertSink(ABC):
    """The base of the registered sink kinds: a :class:`Sink` that a
    ``[[monitoring.alerts.sinks]]`` section builds (:meth:`from_config`)."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        """The sink's name, as rules refer to it."""
        return self._name

    @classmethod
    def from_config(
        cls, config: AlertSinkConfig, *, transport: Transport | None = None
    ) -> AlertSink:
        """The sink ``config`` describes (``transport``: how HTTP kinds POST)."""
        return cls(config.name)

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver ``notification``; raise a :class:`ProdMLError` naming the sink if it fails."""


class LogSink(AlertSink):
    """A structured log line on ``prodml.monitoring.alerts``: WARNING when firing, INFO when
    resolved; the notification's dict is attached as the record's ``alert`` attribute."""

    def __init__(self, name: str = "log", logger: logging.Logger | None = None) -> None:
        super().__init__(name)
        self._logger = logger or logging.getLogger(LOGGER_NAME)

    def send(self, notification: Notification) -> None:
        n = notification
        level = logging.WARNING if n.state == "firing" else logging.INFO
        fields = {
            "state": n.state,
            "rule": n.rule,
            "severity": n.severity,
            "scope": n.scope,
            "metric": n.metric,
            "value": f"{n.value:.6g}",
            "threshold": f"{n.threshold:g}",
            "direction": n.direction,
            "window_end": _iso(n.window_end),
            "first_time": _iso(n.first_time),
            "runbook": n.runbook,
        }
        line = " ".join(f"{k}={_logfmt(v)}" for k, v in fields.items() if v is not None)
        self._logger.log(level, "alert %s", line, extra={"alert": n.to_dict()})


def _logfmt(value: str) -> str:
    return json.dumps(value) if re.search(r'[\s="]', value) else value


class MemorySink(AlertSink):
    """Keeps what it is sent, for tests."""

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def urllib_transport(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST ``body`` with the standard library and return the HTTP status."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


class _HttpSink(AlertSink):
    """A sink that POSTs one JSON body per notification; subclasses write ``_body``."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(name)
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout_s = timeout_s
        self._transport = transport or urllib_transport

    @classmethod
    def from_config(
        cls, config: AlertSinkConfig, *, transport: Transport | None = None
    ) -> AlertSink:
        if config.url is None:  # AlertSinkConfig rejects this; a model_construct() may not
            raise ConfigError(f"alert sink {config.name!r}: url is required for {config.type!r}")
        return cls(
            config.name,
            config.url,
            headers=config.headers,
            timeout_s=config.timeout_s,
            transport=transport,
        )

    def send(self, notification: Notification) -> None:
        body = json.dumps(self._body(notification)).encode()
        target = self._target()
        # The URL may hold a secret (Slack webhooks do): messages name only its host.
        where = f"{self.kind} sink {self._name!r} (host {urllib.parse.urlsplit(target).netloc})"
        try:
            status = self._transport(target, body, self.headers, self.timeout_s)
        except (OSError, ValueError) as exc:
            raise ProdMLError(f"alert {where}: POST failed: {exc}") from exc
        if not 200 <= status < 300:
            raise ProdMLError(f"alert {where}: POST returned HTTP {status}, expected 2xx")

    def _target(self) -> str:
        return self.url

    def _body(self, notification: Notification) -> Any:
        return notification.to_dict()


class WebhookSink(_HttpSink):
    """POSTs the notification's dict (:meth:`Notification.to_dict`) as JSON."""


class SlackSink(_HttpSink):
    """POSTs a Slack incoming-webhook message: ``text`` plus ``blocks`` with the summary,
    the numbers and a runbook link."""

    kind = "slack"

    def _body(self, notification: Notification) -> Any:
        n = notification
        icon = ":rotating_light:" if n.state == "firing" else ":white_check_mark:"
        blocks: list[dict[str, Any]] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{icon} *{_slack(n.summary)}*"},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Value*\n{n.value:.4g}"},
                    {"type": "mrkdwn", "text": f"*Threshold*\n{n.direction} {n.threshold:g}"},
                    {
                        "type": "mrkdwn",
                        "text": f"*Window*\n{_iso(n.window_start)} to {_iso(n.window_end)}",
                    },
                    {"type": "mrkdwn", "text": f"*Since*\n{_iso(n.first_time)}"},
                ],
            },
        ]
        if n.runbook:
            blocks.append(
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"<{n.runbook}|Runbook>"}],
                }
            )
        return {"text": n.summary, "blocks": blocks}


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class AlertmanagerSink(_HttpSink):
    """POSTs one alert to ``<url>/api/v2/alerts`` (Alertmanager API v2). ``startsAt`` is
    when the alert fired; ``endsAt`` is set when it resolved."""

    kind = "alertmanager"

    def _target(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    def _body(self, notification: Notification) -> Any:
        n = notification
        labels = {_label_name(k): v for k, v in n.labels.items()}
        labels.update(alertname=n.rule, severity=n.severity)
        annotations = {"summary": n.summary, "description": n.description}
        if n.runbook:
            annotations["runbook_url"] = n.runbook
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _iso(n.fired_at),
        }
        if n.state == "resolved" and n.resolved_at is not None:
            alert["endsAt"] = _iso(n.resolved_at)
        return [alert]


def _label_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


#: Sink kinds by ``[[monitoring.alerts.sinks]]`` ``type``: ``module:Class``, imported
#: when first built.
ALERT_SINKS: Plugins[AlertSink] = Plugins(
    "alert sink type",
    AlertSink,
    {
        "alertmanager": "prodml.monitoring._sinks:AlertmanagerSink",
        "log": "prodml.monitoring._sinks:LogSink",
        "memory": "prodml.monitoring._sinks:MemorySink",
        "slack": "prodml.monitoring._sinks:SlackSink",
        "webhook": "prodml.monitoring._sinks:WebhookSink",
    },
)


def make_sink(config: AlertSinkConfig, *, transport: Transport | None = None) -> Sink:
    """The sink a ``[[monitoring.alerts.sinks]]`` section describes, built by the class
    :data:`ALERT_SINKS` registers for its ``type``.

    >>> make_sink(AlertSinkConfig(name="ops", type="slack", url="https://hooks.example/x")).name
    'ops'
    """
    return ALERT_SINKS.load(config.type).from_config(config, transport=transport)

"""The alert sink contract, run over every registered sink type: built from its config
section by :func:`make_sink`, it delivers firing then resolved notifications in order;
the HTTP types POST to a local server and name themselves, never their URL, on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contractkit import Contract
from prodml.core._alert_config import AlertSinkConfig
from prodml.core.errors import ConfigError, ProdMLError
from prodml.monitoring._sinks import (
    ALERT_SINKS,
    LOGGER_NAME,
    MemorySink,
    Notification,
    Sink,
    make_sink,
)

T0 = datetime(2013, 1, 1, tzinfo=UTC)
#: The types a config file may name.
CONFIG_TYPES = ("alertmanager", "log", "slack", "webhook")


def note(state: str) -> Notification:
    return Notification(
        rule="input_drift",
        metric="drift.share",
        severity="warning",
        scope="endpoint=flights/column=dep_delay",
        state=state,  # type: ignore[arg-type]
        value=0.62 if state == "firing" else 0.1,
        threshold=0.5,
        direction="above",
        window_start=T0,
        window_end=T0 + timedelta(days=1),
        first_time=T0,
        fired_at=T0,
        resolved_at=T0 + timedelta(days=2) if state == "resolved" else None,
        runbook="https://wiki/drift",
    )


@dataclass
class Case:
    """A sink built from its config section, and the states it delivered, in order."""

    sink: Sink
    delivered: Callable[[], list[str]]


#: Receives a ``Receiver`` (see conftest.py) and pytest's log capture.
Opener = Callable[[Any, pytest.LogCaptureFixture], Case]


def _config(kind: str, url: str | None = None) -> AlertSinkConfig:
    """The section of a sink named ``ops``, validated unless the config file cannot name
    its type (``memory`` is for tests) or it lacks a required URL."""
    if kind not in CONFIG_TYPES or (kind != "log" and url is None):
        return AlertSinkConfig.model_construct(
            name="ops",
            type=kind,  # type: ignore[arg-type]
            url=url,
            headers={},
            timeout_s=2.0,
        )
    return AlertSinkConfig.model_validate(
        {"name": "ops", "type": kind, "url": url, "timeout_s": 2.0}
    )


def _log(receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)

    def delivered() -> list[str]:
        lines = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
        return [line.split()[1].removeprefix("state=") for line in lines]

    return Case(make_sink(_config("log")), delivered)


def _memory(receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    sink = make_sink(_config("memory"))
    assert isinstance(sink, MemorySink)
    return Case(sink, lambda: [n.state for n in sink.sent])


def _webhook(receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    sink = make_sink(_config("webhook", f"{receiver.url}/hook"))
    return Case(sink, lambda: [body["state"] for body in receiver.bodies("/hook")])


def _slack(receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    sink = make_sink(_config("slack", f"{receiver.url}/slack"))

    def delivered() -> list[str]:
        return [body["text"].split("]")[0][1:].lower() for body in receiver.bodies("/slack")]

    return Case(sink, delivered)


def _alertmanager(receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    sink = make_sink(_config("alertmanager", f"{receiver.url}/am"))

    def delivered() -> list[str]:
        alerts = [alert for body in receiver.bodies("/am/api/v2/alerts") for alert in body]
        return ["resolved" if "endsAt" in alert else "firing" for alert in alerts]

    return Case(sink, delivered)


CONTRACT: Contract[Opener] = Contract(
    ALERT_SINKS,
    {
        "alertmanager": _alertmanager,
        "log": _log,
        "memory": _memory,
        "slack": _slack,
        "webhook": _webhook,
    },
)
#: The types that POST to a URL, and so can fail to deliver.
HTTP_TYPES = ("alertmanager", "slack", "webhook")


def test_sink_contract_covers_every_registered_type() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def case(request: pytest.FixtureRequest, receiver: Any, caplog: pytest.LogCaptureFixture) -> Case:
    built = CONTRACT.factory(request.param)(receiver, caplog)
    assert type(built.sink) is ALERT_SINKS.load(request.param)
    return built


def test_sink_is_named_by_its_config_section(case: Case) -> None:
    assert case.sink.name == "ops"
    assert isinstance(case.sink, Sink)


def test_sink_delivers_firing_then_resolved_in_order(case: Case) -> None:
    assert case.delivered() == []
    case.sink.send(note("firing"))
    assert case.delivered() == ["firing"]
    case.sink.send(note("resolved"))
    assert case.delivered() == ["firing", "resolved"]


@pytest.mark.parametrize("kind", HTTP_TYPES)
def test_http_sink_failure_names_the_sink_and_host_not_the_url_path(
    kind: str, receiver: Any
) -> None:
    assert kind in ALERT_SINKS
    sink = make_sink(_config(kind, f"{receiver.url}/fail/secret-token"))
    with pytest.raises(ProdMLError, match=rf"alert {kind} sink 'ops'.*HTTP 500") as info:
        sink.send(note("firing"))
    assert "secret-token" not in str(info.value)
    assert len(receiver.posts) == 1


@pytest.mark.parametrize("kind", HTTP_TYPES)
def test_http_sink_without_a_url_is_a_config_error(kind: str) -> None:
    with pytest.raises(ConfigError, match=f"alert sink 'ops': url is required for '{kind}'"):
        make_sink(_config(kind))


def test_an_unknown_sink_type_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="alert sink type 'pager' is unknown: expected one of"):
        make_sink(_config("pager", "http://127.0.0.1:1/x"))

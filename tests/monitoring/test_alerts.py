"""Debounced alerts: rule and sink config validation; the state machine (M-of-N, ``for``,
``keep_firing_for``, cooldown, windows without a value, idempotent re-evaluation) with a
Hypothesis property that notifications alternate; the engine's delivery and failure
handling; and an end-to-end run against a real HTTP server receiving the webhook, Slack
and Alertmanager POSTs. The alert store and sink contracts are in
``test_alert_store_contract.py`` and ``test_alert_sink_contract.py``."""

from __future__ import annotations

import json
import logging
import math
import socket
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from prodml.core import SimulatedClock
from prodml.core._alert_config import AlertRuleConfig, AlertsConfig, AlertSinkConfig
from prodml.core.errors import (
    ConfigError,
    DataValidationError,
    NotFoundError,
    ProdMLError,
    StateError,
    TimestampError,
)
from prodml.monitoring._alerts import (
    AlertEngine,
    AlertState,
    MemoryAlertStore,
    Observation,
    evaluate,
)
from prodml.monitoring._sinks import (
    LOGGER_NAME,
    AlertmanagerSink,
    MemorySink,
    Notification,
    WebhookSink,
    format_scope,
    make_sink,
    parse_scope,
)

T0 = datetime(2013, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HIGH, LOW = 0.9, 0.1
SCOPE = "endpoint=flight_delay/arm=champion/column=dep_delay"
#: The end-to-end sequence: a spike, then a sustained breach.
SPIKE_THEN_BREACH = [HIGH, LOW, LOW, HIGH, HIGH, HIGH, LOW, LOW]


def make_rule(**kwargs: Any) -> AlertRuleConfig:
    data: dict[str, Any] = {"name": "drift", "metric": "drift.share", "threshold": 0.5}
    data.update(kwargs)
    return AlertRuleConfig.model_validate(data)


def daily(values: Sequence[float | None], start: datetime = T0) -> list[Observation]:
    return [
        Observation(start + i * DAY, start + (i + 1) * DAY, v, {"i": i})
        for i, v in enumerate(values)
    ]


def index(note: Notification) -> int:
    """The position in ``daily(...)`` of the window that caused the notification."""
    return (note.window_start - T0) // DAY


def run(
    rule: AlertRuleConfig, values: Sequence[float | None]
) -> tuple[list[AlertState], list[tuple[str, int]]]:
    """Evaluate one window at a time; return the states and ``(state, window index)``."""
    state: AlertState | None = None
    states, notes = [], []
    for obs in daily(values):
        state, new = evaluate(rule, SCOPE, [obs], state)
        states.append(state)
        notes += [(n.state, index(n)) for n in new]
    return states, notes


# -- config -----------------------------------------------------------------------------


def test_rule_from_toml_with_the_for_alias_and_durations() -> None:
    table = tomllib.loads(
        'name = "input_drift"\nmetric = "drift.share"\nthreshold = 0.5\nm_of_n = [2, 3]\n'
        'for = "2d"\nkeep_firing_for = "6h"\ncooldown = "1w"\nrunbook = "https://wiki/x"\n'
    )
    rule = AlertRuleConfig.model_validate(table)
    assert rule.m_of_n == (2, 3)
    assert (rule.for_, rule.keep_firing_for, rule.cooldown) == (
        timedelta(days=2),
        timedelta(hours=6),
        timedelta(weeks=1),
    )
    assert (rule.direction, rule.severity, rule.sinks, rule.column) == (
        "above",
        "warning",
        ("log",),
        None,
    )
    dumped = rule.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert (dumped["for"], dumped["keep_firing_for"], dumped["cooldown"]) == ("2d", "6h", "1w")
    assert AlertRuleConfig.model_validate(dumped) == rule
    assert make_rule(for_="30m").for_ == timedelta(minutes=30)  # by name, from Python
    assert make_rule(cooldown="1d12h").cooldown == timedelta(hours=36)


@pytest.mark.parametrize("field_name", ["for", "keep_firing_for", "cooldown"])
@pytest.mark.parametrize("bad", ["2y", "2 days", "", "d", "-1d", "1.5h", 3])
def test_bad_durations_name_the_field_and_the_format(field_name: str, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        make_rule(**{field_name: bad})
    message = str(info.value)
    assert f"{field_name}:" in message
    assert "'30m', '6h', '2d'" in message


@pytest.mark.parametrize("m_of_n", [(0, 3), (4, 3), (1, 0), (2, 1001)])
def test_m_of_n_bounds(m_of_n: tuple[int, int]) -> None:
    with pytest.raises(ValidationError, match="1 <= M <= N"):
        make_rule(m_of_n=list(m_of_n))
    assert make_rule(m_of_n=[3, 3]).m_of_n == (3, 3)


@pytest.mark.parametrize("kind", ["webhook", "slack", "alertmanager"])
def test_sink_url_is_required_except_for_log(kind: str) -> None:
    with pytest.raises(ValidationError, match="url is required"):
        AlertSinkConfig(name="ops", type=kind)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="http:// or https://"):
        AlertSinkConfig(name="ops", type=kind, url="ftp://x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="takes no url"):
        AlertSinkConfig(name="ops", type="log", url="https://x")
    cfg = AlertSinkConfig.model_validate(
        {"name": "ops", "type": kind, "url": "https://h/x", "headers": {"A": "b"}}
    )
    assert (cfg.timeout_s, cfg.headers) == (5.0, {"A": "b"})
    assert make_sink(cfg).name == "ops"
    assert make_sink(AlertSinkConfig(name="audit", type="log")).name == "audit"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"name": "9 bad"}, "alert rule name"),
        ({"metric": "drift share"}, "expected <check>.<metric>"),
        ({"metric": "drift.shares"}, "unknown metric 'drift.shares' \\(did you mean 'drift.share'"),
        ({"runbook": "wiki/x"}, "runbook"),
        ({"sinks": []}, "at least one sink"),
        ({"sinks": ["log", "log"]}, "repeat"),
        ({"threshold": math.nan}, "finite"),
        ({"direction": "sideways"}, "above"),
        ({"column": " "}, "column must not be empty"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_rule_validation(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        make_rule(**change)


def test_alerts_config_checks_names_and_sink_references() -> None:
    ops = {"name": "ops", "type": "slack", "url": "https://hooks/x"}
    rule = {"name": "r", "metric": "drift.share", "threshold": 0.5, "sinks": ["ops", "log"]}
    assert AlertsConfig.model_validate({"sinks": [ops], "rules": [rule]}).rules[0].sinks == (
        "ops",
        "log",
    )
    with pytest.raises(ValidationError, match="unknown sinks \\['ops'\\]"):
        AlertsConfig.model_validate({"rules": [rule]})
    with pytest.raises(ValidationError, match="rule names must be unique"):
        AlertsConfig.model_validate({"sinks": [ops], "rules": [rule, rule]})


def test_applies_to_endpoint_and_column() -> None:
    every = make_rule(metric="drift.value", column="*")
    one = make_rule(metric="drift.value", column="dep_delay", endpoint="flights")
    dataset = make_rule()
    assert every.applies_to("any", "x")
    assert not every.applies_to("any", None)
    assert one.applies_to("flights", "dep_delay")
    assert not one.applies_to("other", "dep_delay")
    assert not one.applies_to("flights", "x")
    assert dataset.applies_to("any")
    assert not dataset.applies_to("any", "x")


def test_scope_round_trip() -> None:
    parts = {"endpoint": "flights", "arm": "flight_delay:7", "column": "a/b=c%"}
    assert parse_scope(format_scope(parts)) == parts
    assert format_scope({"endpoint": "e", "column": None}) == "endpoint=e"
    assert parse_scope("") == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_scope("flights")


# -- observations -------------------------------------------------------------------------


def test_observation_checks_times_and_evidence() -> None:
    with pytest.raises(TimestampError, match="timezone-aware"):
        Observation(datetime(2013, 1, 1), datetime(2013, 1, 2), 1.0)
    with pytest.raises(TimestampError, match="must be after"):
        Observation(T0, T0, 1.0)
    with pytest.raises(DataValidationError, match="JSON"):
        Observation(T0, T0 + DAY, 1.0, {"x": object()})
    assert Observation(T0, T0 + DAY, math.nan).value is None


# -- the state machine ----------------------------------------------------------------------


def test_no_debounce_fires_on_the_first_breach_and_resolves_on_the_first_clear() -> None:
    states, notes = run(make_rule(), [LOW, HIGH, HIGH, HIGH, LOW, LOW])
    assert notes == [("firing", 1), ("resolved", 4)]
    assert [s.state for s in states] == [
        "inactive",
        "firing",
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    last = states[-1]
    assert (last.first_time, last.fired_at, last.resolved_at) == (
        T0 + 2 * DAY,
        T0 + 2 * DAY,
        T0 + 5 * DAY,
    )


def test_a_single_spike_under_two_of_three_never_leaves_inactive() -> None:
    states, notes = run(make_rule(m_of_n=[2, 3]), [HIGH, LOW, LOW, LOW, HIGH, LOW, LOW, HIGH])
    assert notes == []
    assert {s.state for s in states} == {"inactive"}


def test_two_of_three_fires_once_and_resolves_once() -> None:
    states, notes = run(make_rule(m_of_n=[2, 3]), SPIKE_THEN_BREACH)
    assert notes == [("firing", 4), ("resolved", 7)]
    assert [s.state for s in states][4:] == ["firing", "firing", "firing", "resolved"]
    assert len(states[-1].history) == 3


def test_for_two_days_with_daily_windows() -> None:
    rule = make_rule(**{"for": "2d"})
    states, notes = run(rule, [HIGH, HIGH, HIGH, LOW])
    # Held at the ends of days 1, 2, 3: 2 days after the first end it fires.
    assert [s.state for s in states] == ["pending", "pending", "firing", "resolved"]
    assert notes == [("firing", 2), ("resolved", 3)]
    assert states[2].first_time == T0 + DAY
    assert states[2].fired_at == T0 + 3 * DAY
    # A clear window while pending abandons the episode; the next one starts afresh.
    states, notes = run(rule, [HIGH, HIGH, LOW, HIGH, HIGH, HIGH])
    assert [s.state for s in states][:3] == ["pending", "pending", "inactive"]
    assert notes == [("firing", 5)]


def test_keep_firing_for_holds_the_alert_through_one_clear_window() -> None:
    states, notes = run(make_rule(keep_firing_for="1d"), [HIGH, LOW, HIGH, LOW, LOW, LOW])
    assert [s.state for s in states] == [
        "firing",
        "firing",
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    assert notes == [("firing", 0), ("resolved", 4)]


def test_cooldown_suppresses_a_new_episode_and_sends_the_next_one() -> None:
    rule = make_rule(cooldown="3d")
    states, notes = run(rule, [HIGH, LOW, HIGH, LOW, LOW, LOW, HIGH, LOW])
    # Resolved notification at the end of day 2; the episode of day 3 ends at day 3 + 1:
    # inside the cooldown, so it fires and resolves silently.
    assert [s.state for s in states][2:4] == ["firing", "resolved"]
    assert notes == [("firing", 0), ("resolved", 1), ("firing", 6), ("resolved", 7)]
    assert states[-1].suppressed == 1


def test_cooldown_delays_the_firing_of_an_episode_that_persists() -> None:
    rule = make_rule(cooldown="3d")
    rule_state: AlertState | None = None
    rule_state, first = evaluate(rule, SCOPE, daily([HIGH, LOW, HIGH, HIGH]), None)
    assert [n.state for n in first] == ["firing", "resolved"]
    assert (rule_state.state, rule_state.suppressed) == ("firing", 1)
    rule_state, late = evaluate(rule, SCOPE, daily([HIGH, LOW, HIGH, HIGH, HIGH, HIGH]), rule_state)
    assert [(n.state, index(n)) for n in late] == [("firing", 4)]
    assert late[0].fired_at == T0 + 3 * DAY  # when it fired, not when it was told
    assert late[0].window_end == T0 + 5 * DAY


def test_windows_without_a_value_neither_breach_nor_clear() -> None:
    # Skipped for M-of-N: two breaches among the last three *valued* windows.
    assert run(make_rule(m_of_n=[2, 3]), [HIGH, None, None, HIGH])[1] == [("firing", 3)]
    # They do not reset `for`, and their time counts.
    states, notes = run(make_rule(**{"for": "2d"}), [HIGH, None, HIGH])
    assert [s.state for s in states] == ["pending", "pending", "firing"]
    assert notes == [("firing", 2)]
    # They do not resolve a firing alert; last_time still moves on.
    states, notes = run(make_rule(), [HIGH, None, math.nan, LOW])
    assert [s.state for s in states] == ["firing", "firing", "firing", "resolved"]
    assert states[2].last_time == T0 + 3 * DAY
    assert states[2].last_value == HIGH


def test_direction_below() -> None:
    rule = make_rule(metric="performance.roc_auc", threshold=0.7, direction="below")
    assert run(rule, [0.8, 0.7, 0.65, 0.75])[1] == [("firing", 2), ("resolved", 3)]


def test_reevaluating_the_same_windows_is_idempotent() -> None:
    rule = make_rule(m_of_n=[2, 3], keep_firing_for="1d")
    obs = daily(SPIKE_THEN_BREACH)
    state, notes = evaluate(rule, SCOPE, obs, None)
    assert [n.state for n in notes] == ["firing"]  # keep_firing_for holds it at the end
    assert evaluate(rule, SCOPE, obs, state) == (state, [])
    assert evaluate(rule, SCOPE, list(reversed(obs)), state) == (state, [])
    # Growing batches that overlap (each call sees every window so far) agree with one call.
    grown: AlertState | None = None
    sent: list[Notification] = []
    for end in range(1, len(obs) + 1):
        grown, new = evaluate(rule, SCOPE, obs[:end], grown)
        sent += new
    assert grown == state
    assert sent == notes


def test_state_round_trips_through_json() -> None:
    rule = make_rule(m_of_n=[2, 3], cooldown="1d", keep_firing_for="1d")
    for state in run(rule, [*SPIKE_THEN_BREACH, None, HIGH, HIGH])[0]:
        assert AlertState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_previous_state_of_another_rule_or_scope_is_refused() -> None:
    state, _ = evaluate(make_rule(), SCOPE, daily([HIGH]), None)
    with pytest.raises(StateError, match="previous state belongs"):
        evaluate(make_rule(), "endpoint=other", daily([HIGH]), state)


@st.composite
def rules(draw: st.DrawFn) -> AlertRuleConfig:
    n = draw(st.integers(1, 4))
    return make_rule(
        m_of_n=draw(st.none() | st.integers(1, n).map(lambda m: [m, n])),
        **{"for": draw(st.sampled_from([None, "1d", "2d"]))},
        keep_firing_for=draw(st.sampled_from([None, "1d", "3d"])),
        cooldown=draw(st.sampled_from([None, "2d", "5d"])),
    )


@settings(max_examples=300, deadline=None)
@given(
    rules(),
    st.lists(st.sampled_from([HIGH, LOW, None]), max_size=40),
    st.integers(0, 40),
)
def test_notifications_alternate_firing_resolved_and_respect_the_cooldown(
    rule: AlertRuleConfig, values: list[float | None], split: int
) -> None:
    obs = daily(values)
    state, notes = evaluate(rule, SCOPE, obs, None)
    kinds = [n.state for n in notes]
    assert kinds == ["firing", "resolved"] * (len(kinds) // 2) + ["firing"] * (len(kinds) % 2)
    for resolved, firing in zip(notes[1::2], notes[2::2], strict=False):
        assert rule.cooldown is None or firing.window_end - resolved.window_end >= rule.cooldown
    assert (state.last_notified == "firing") == (kinds[-1:] == ["firing"])
    # Any split into two calls gives the same state and notifications.
    first, early = evaluate(rule, SCOPE, obs[:split], None)
    second, later = evaluate(rule, SCOPE, obs, first)
    assert (second, early + later) == (state, notes)


# -- the engine -------------------------------------------------------------------------------


class BrokenSink:
    name = "broken"

    def send(self, notification: Notification) -> None:
        raise ProdMLError("alert sink 'broken': down")


def test_engine_saves_state_sends_to_the_rule_sinks_and_survives_a_broken_sink(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    memory = MemorySink()
    store = MemoryAlertStore()
    clock = SimulatedClock(T0 + 30 * DAY)
    rule = make_rule(sinks=["broken", "memory", "log"])
    engine = AlertEngine([rule], store, [BrokenSink(), memory], clock)
    sent = engine.process("drift", SCOPE, daily([HIGH, LOW]))
    assert [n.state for n in sent] == [n.state for n in memory.sent] == ["firing", "resolved"]
    assert all(n.sent_at == T0 + 30 * DAY for n in memory.sent)
    assert engine.delivery_failures == {"broken": 2}
    saved = store.get("drift", SCOPE)
    assert saved is not None
    assert saved.state == "resolved"
    levels = [(r.levelname, r.getMessage().split(" ")[1]) for r in caplog.records]
    assert ("ERROR", "firing") in levels  # the broken sink, logged
    alert_lines = [r for r in caplog.records if r.getMessage().startswith("alert state=")]
    assert [r.levelname for r in alert_lines] == ["WARNING", "INFO"]  # the log sink
    assert (
        'scope="endpoint=flight_delay/arm=champion/column=dep_delay"' in alert_lines[0].getMessage()
    )
    assert engine.process("drift", SCOPE, daily([HIGH, LOW])) == []


def test_engine_refuses_unknown_rules_and_sinks() -> None:
    store, clock = MemoryAlertStore(), SimulatedClock(T0)
    with pytest.raises(ConfigError, match="unknown sinks \\['pager'\\]"):
        AlertEngine([make_rule(sinks=["pager"])], store, [], clock)
    with pytest.raises(ConfigError, match="defined twice"):
        AlertEngine([make_rule(), make_rule()], store, [], clock)
    with pytest.raises(NotFoundError, match="'latency'"):
        AlertEngine([make_rule()], store, [], clock).process("latency", SCOPE, [])


def test_http_sink_reports_an_unreachable_host_without_its_url_path() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = WebhookSink("hook", f"http://127.0.0.1:{port}/secret-token", timeout_s=2)
    note = evaluate(make_rule(), SCOPE, daily([HIGH]), None)[1][0]
    with pytest.raises(ProdMLError, match=r"webhook sink 'hook'.*POST failed") as info:
        sink.send(note)
    assert "secret-token" not in str(info.value)


# -- end to end over HTTP ---------------------------------------------------------------------


def test_end_to_end_webhook_slack_and_alertmanager(receiver: Any) -> None:
    sinks = AlertsConfig.model_validate(
        {
            "sinks": [
                {"name": "hook", "type": "webhook", "url": f"{receiver.url}/hook",
                 "headers": {"X-Token": "s3cret"}, "timeout_s": 2},
                {"name": "chat", "type": "slack", "url": f"{receiver.url}/slack"},
                {"name": "am", "type": "alertmanager", "url": f"{receiver.url}/am/"},
            ],
            "rules": [
                {"name": "input_drift", "metric": "drift.share", "threshold": 0.5,
                 "m_of_n": [2, 3], "severity": "critical", "runbook": "https://wiki/drift",
                 "sinks": ["hook", "chat", "am"]},
            ],
        }
    )  # fmt: skip
    store = MemoryAlertStore()
    engine = AlertEngine(
        sinks.rules, store, [make_sink(s) for s in sinks.sinks], SimulatedClock(T0 + 30 * DAY)
    )
    windows = daily(SPIKE_THEN_BREACH)
    sent = []
    for closed in range(1, len(windows) + 1):  # a monitoring job, once per closed window
        sent += engine.process("input_drift", SCOPE, windows[:closed])
    assert engine.process("input_drift", SCOPE, windows) == []  # a re-run sends nothing
    assert engine.delivery_failures == {}
    assert [(n.state, index(n)) for n in sent] == [("firing", 4), ("resolved", 7)]

    by_path: dict[str, list[tuple[dict[str, str], Any]]] = {}
    for path, headers, body in receiver.posts:
        by_path.setdefault(path, []).append((headers, body))
    assert sorted(by_path) == ["/am/api/v2/alerts", "/hook", "/slack"]
    assert all(len(posts) == 2 for posts in by_path.values())

    hook = by_path["/hook"]
    assert all(
        h["X-Token"] == "s3cret" and h["Content-Type"] == "application/json" for h, _ in hook
    )
    firing, resolved = (body for _, body in hook)
    assert (firing["state"], resolved["state"]) == ("firing", "resolved")
    assert firing["rule"] == "input_drift"
    assert firing["severity"] == "critical"
    assert firing["labels"] == {
        "endpoint": "flight_delay",
        "arm": "champion",
        "column": "dep_delay",
    }
    assert (firing["value"], firing["threshold"], firing["direction"]) == (HIGH, 0.5, "above")
    assert firing["window_end"] == "2013-01-06T00:00:00Z"
    assert firing["first_time"] == firing["fired_at"] == "2013-01-06T00:00:00Z"
    assert firing["resolved_at"] is None
    assert resolved["resolved_at"] == "2013-01-09T00:00:00Z"
    assert firing["runbook"] == "https://wiki/drift"
    assert [e["details"] for e in firing["evidence"]] == [{"i": 4}]
    assert [e["value"] for e in resolved["evidence"]] == [HIGH, HIGH, LOW, LOW]
    assert firing["sent_at"] == "2013-01-31T00:00:00Z"

    for (_, body), state in zip(by_path["/slack"], ["FIRING", "RESOLVED"], strict=True):
        assert set(body) == {"text", "blocks"}
        assert body["text"].startswith(f"[{state}] input_drift (critical) endpoint=flight_delay")
        assert body["blocks"][0]["type"] == "section"
        assert body["blocks"][-1] == {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "<https://wiki/drift|Runbook>"}],
        }

    (_, am_firing), (_, am_resolved) = by_path["/am/api/v2/alerts"]
    assert isinstance(am_firing, list)
    assert len(am_firing) == 1
    alert = am_firing[0]
    assert alert["labels"] == {
        "alertname": "input_drift",
        "severity": "critical",
        "endpoint": "flight_delay",
        "arm": "champion",
        "column": "dep_delay",
    }
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
    assert alert["annotations"]["runbook_url"] == "https://wiki/drift"
    assert alert["startsAt"] == "2013-01-06T00:00:00Z"
    assert "endsAt" not in alert
    assert "generatorURL" not in alert
    assert am_resolved[0]["startsAt"] == alert["startsAt"]
    assert am_resolved[0]["endsAt"] == "2013-01-09T00:00:00Z"
    assert am_resolved[0]["labels"] == alert["labels"]


def test_end_to_end_a_sink_answering_500_is_logged_and_the_state_saved(
    receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER_NAME)
    store = MemoryAlertStore()
    broken = AlertmanagerSink("am", f"{receiver.url}/fail", timeout_s=2)
    engine = AlertEngine([make_rule(sinks=["am"])], store, [broken], SimulatedClock(T0))
    sent = engine.process("drift", SCOPE, daily([LOW, HIGH]))
    assert [n.state for n in sent] == ["firing"]
    assert [path for path, _, _ in receiver.posts] == ["/fail/api/v2/alerts"]
    assert engine.delivery_failures == {"am": 1}
    saved = store.get("drift", SCOPE)
    assert saved is not None
    assert (saved.state, saved.last_notified, saved.last_time) == ("firing", "firing", T0 + 2 * DAY)
    (record,) = caplog.records
    assert "sink 'am' failed" in record.getMessage()
    assert record.exc_info is not None
    assert "alertmanager sink 'am'" in str(record.exc_info[1])
    assert "HTTP 500" in str(record.exc_info[1])

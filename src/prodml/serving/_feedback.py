"""``POST /v1/feedback``: labels and rewards arriving after the prediction.

One item, or ``{"items": [...]}``, each naming its ``endpoint`` and either the
``request_id`` it answers or the ``entities`` and ``event_time`` it is about, with a
``label`` and/or a ``reward``. Every item goes to the label log; a reward (or, for a
bandit endpoint, a label) whose request was routed by a bandit updates that arm's
posterior, wherever the request was served.

What one request may cost is bounded before anything is written: at most ``[serving]
feedback_max_items`` items (413), only endpoints the server knows (404), and times
(``time``, ``event_time``) no older than ``feedback_max_age_days`` and at most
:data:`CLOCK_SKEW` ahead of the server's clock (422). The label log writes one file per
endpoint and hour, so a request makes at most endpoints × hours-in-the-window files.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from prodml.core import ensure_utc
from prodml.serving._auth import ROLE_RANK
from prodml.serving._responses import json_response
from prodml.serving._wire import FieldProblem, RequestInvalid
from prodml.stats import finite_float

if TYPE_CHECKING:
    from prodml.serving._http import RouteContext

__all__ = ["CLOCK_SKEW", "FeedbackHandler", "parse_feedback"]

#: How far ahead of the server's clock a feedback time may be (clients' clocks drift).
CLOCK_SKEW = timedelta(minutes=5)
_FIELDS = frozenset({"endpoint", "request_id", "entities", "event_time", "label", "reward", "time"})
_SHOWN_UNMATCHED = 100
_LABELS = {
    "classification": "0, 1, true or false (the endpoint's model is a binary classifier)",
    "regression": "a finite number (the endpoint's model is a regressor)",
    "": "a finite number or a boolean",
}


def _label_fits(label: Any, task: str | None) -> bool:
    """Whether a label suits an endpoint whose model does ``task`` (None: unknown)."""
    if isinstance(label, bool):
        return task != "regression"
    if not isinstance(label, int | float) or (
        isinstance(label, float) and not math.isfinite(label)
    ):
        return False
    return task != "classification" or label in (0, 1)


_READABLE = "a finite number, a boolean, or text holding one (true, false, 1, 0.5)"


def _readable(label: str | int | float | bool) -> bool:
    """Whether the monitor and the analysis can read ``label`` as a number (see
    ``label_values``): a label they would read as "no label" is refused where it
    arrives, not dropped without a word later.

    >>> [_readable(v) for v in (True, 2, 0.5, " TRUE", "1", "yes", float("inf"), "nan")]
    [True, True, True, True, True, False, False, False]
    """
    if isinstance(label, bool):
        return True
    if isinstance(label, str):
        if label.strip().lower() in ("true", "false"):
            return True
        try:
            label = float(label)
        except ValueError:
            return False
    try:
        return math.isfinite(label)
    except OverflowError:  # an int past float's range
        return False


def _problem(index: int, name: str, problem: str, expected: str) -> FieldProblem:
    return FieldProblem(f"items[{index}].{name}", problem, expected)


class _Window:
    """The times feedback may carry: from ``max_age`` before ``now`` to
    :data:`CLOCK_SKEW` after it."""

    def __init__(self, now: datetime, max_age: timedelta) -> None:
        self.oldest, self.latest = now - max_age, now + CLOCK_SKEW
        self.expected = (
            f"a time from {self.oldest:%Y-%m-%dT%H:%M:%SZ} to {self.latest:%Y-%m-%dT%H:%M:%SZ}: "
            f"at most [serving] feedback_max_age_days = {max_age / timedelta(days=1):g} days "
            f"old and at most {CLOCK_SKEW / timedelta(minutes=1):g} minutes ahead of the "
            "server's clock"
        )


def _time(
    value: Any, index: int, name: str, problems: list[FieldProblem], window: _Window | None
) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            when = ensure_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
        else:
            if window is not None and not window.oldest <= when <= window.latest:
                problems.append(
                    _problem(index, name, "outside the accepted window", window.expected)
                )
            return when
    problems.append(_problem(index, name, "wrong_type", "an ISO 8601 time"))
    return None


def parse_feedback(
    body: Any,
    *,
    now: datetime,
    max_items: int | None = None,
    max_age: timedelta | None = None,
) -> list[dict[str, Any]]:
    """Label records from a feedback body; every problem of every item in one error.

    ``max_items`` caps the items (413, naming ``[serving] feedback_max_items``);
    ``max_age`` refuses a ``time`` or ``event_time`` older than ``now - max_age`` or
    later than ``now`` + :data:`CLOCK_SKEW` (422 naming the item, the field and the
    window). None: no cap, any time."""
    if isinstance(body, Mapping) and "items" in body:
        items = body["items"]
        if not isinstance(items, list) or not items or len(body) != 1:
            raise RequestInvalid(
                "'items' must be a non-empty list of feedback objects and the only field",
                status=422,
                details=[FieldProblem("items", "wrong_type", "non-empty list of objects")],
            )
    elif isinstance(body, Mapping):
        items = [body]
    else:
        raise RequestInvalid("feedback body must be a JSON object", status=400)
    if max_items is not None and len(items) > max_items:
        raise RequestInvalid(
            f"feedback has {len(items)} items: the limit is {max_items} per request "
            "([serving] feedback_max_items)",
            status=413,
        )
    window = None if max_age is None else _Window(now, max_age)
    records: list[dict[str, Any]] = []
    problems: list[FieldProblem] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            problems.append(_problem(index, "", "wrong_type", "object"))
            continue
        problems.extend(
            _problem(index, str(k), "extra_field", "a feedback field")
            for k in item
            if k not in _FIELDS
        )
        endpoint = item.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            problems.append(_problem(index, "endpoint", "missing_field", "the endpoint's name"))
        request_id = item.get("request_id")
        entities = item.get("entities")
        if request_id is not None and not isinstance(request_id, str):
            problems.append(_problem(index, "request_id", "wrong_type", "string"))
        if entities is not None and (
            not isinstance(entities, Mapping)
            or not all(isinstance(v, str | int | float) for v in entities.values())
        ):
            problems.append(_problem(index, "entities", "wrong_type", "object of scalar keys"))
        if request_id is None and entities is None:
            problems.append(
                _problem(
                    index, "request_id", "missing_field", "request_id, or entities + event_time"
                )
            )
        event_time = _time(item.get("event_time"), index, "event_time", problems, window)
        if request_id is None and entities is not None and event_time is None:
            problems.append(_problem(index, "event_time", "missing_field", "an ISO 8601 time"))
        label_time = _time(item.get("time"), index, "time", problems, window) or now
        label, reward = item.get("label"), item.get("reward")
        if label is None and reward is None:
            problems.append(_problem(index, "label", "missing_field", "a label or a reward"))
        if label is not None and not isinstance(label, str | int | float | bool):
            problems.append(_problem(index, "label", "wrong_type", "number, string or bool"))
        elif label is not None and not _readable(label):
            problems.append(_problem(index, "label", "unreadable", _READABLE))
        reward_value = None if reward is None else finite_float(reward)
        if reward is not None and reward_value is None:
            problems.append(_problem(index, "reward", "wrong_type", "finite number"))
        records.append(
            {
                "time": label_time,
                "endpoint": endpoint,
                "request_id": request_id,
                "event_time": event_time,
                "entities": dict(entities) if isinstance(entities, Mapping) else None,
                "label": label,
                "reward": reward_value,
                "source": "feedback",
            }
        )
    if problems:
        raise RequestInvalid(
            f"feedback has {len(problems)} problem(s); see details", status=422, details=problems
        )
    return records


class FeedbackHandler:
    """Writes feedback to the label log and credits bandit arms.

    Feedback for an endpoint this server does not know (not loaded, no deployment) is
    refused with a 404 naming the items; a label of the wrong type for the endpoint's
    task (binary classification: 0, 1, true or false; regression and unknown tasks:
    finite numbers or booleans) with a 422. Request ids are matched against this
    server's recent predictions, then the prediction log of the last
    ``[serving] feedback_lookback_days``; the answer counts matched and unmatched ids
    (unmatched ones are stored too, since another replica may not have flushed them
    yet) and names up to 100 unmatched ones.

    With ``[serving] feedback_requires_token`` a bearer token whose role may post
    feedback (labeler, operator, admin) is required; else, with
    ``predict_requires_token``, a token of any role.
    """

    def __init__(self, context: RouteContext) -> None:
        self.context = context
        self.runtime = context.runtime
        self.max_age = timedelta(days=self.runtime.config.feedback_max_age_days)

    async def handle(self, request: Request) -> Response:
        """Answer one ``POST /v1/feedback``."""
        config = self.runtime.config
        header = request.headers.get("authorization")
        if config.feedback_requires_token:
            self.context.tokens.require_feedback(header)
        elif config.predict_requires_token:
            self.context.tokens.require_feedback(header, roles=tuple(ROLE_RANK))
        records = parse_feedback(
            await self.context.json(request),
            now=self.runtime.clock.now(),
            max_items=config.feedback_max_items,
            max_age=self.max_age,
        )
        await self.check(records)
        matched, unmatched = await self.match(records)
        written = self.runtime.log.record_labels(records)
        rewarded = await self.credit(records)
        body: dict[str, Any] = {
            "accepted": written,
            "dropped": len(records) - written,
            "matched": len(matched),
            "unmatched": len(unmatched),
            "by_entity": sum(r["request_id"] is None for r in records),
            "rewarded": rewarded,
        }
        if unmatched:
            body["unmatched_request_ids"] = unmatched[:_SHOWN_UNMATCHED]
        return json_response(body)

    async def check(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Refuse items of unknown endpoints (404) and labels of the wrong type (422)."""
        tables = self.runtime.tables
        named = {r["endpoint"] for r in records}
        if not named <= tables.keys():
            loop = asyncio.get_running_loop()
            deployed = await loop.run_in_executor(None, self.runtime.deployments.revisions)
            known = sorted(tables.keys() | deployed.keys())
            unknown = [
                _problem(i, "endpoint", "unknown endpoint", f"one of {known}")
                for i, r in enumerate(records)
                if r["endpoint"] not in known
            ]
            if unknown:
                raise RequestInvalid.of(unknown, status=404, subject="feedback")
        problems: list[FieldProblem] = []
        for index, record in enumerate(records):
            label = record["label"]
            if label is None:
                continue
            table = tables.get(record["endpoint"])
            task = None if table is None else table.task
            if not _label_fits(label, task):
                expected = _LABELS.get(task or "", _LABELS[""])
                problems.append(_problem(index, "label", f"is a {type(label).__name__}", expected))
        if problems:
            raise RequestInvalid.of(problems, status=422, subject="feedback")

    async def match(self, records: Sequence[Mapping[str, Any]]) -> tuple[set[str], list[str]]:
        """The request ids of ``records`` that this server answered (recently, or in the
        log of the lookback window), and the others in order."""
        wanted: dict[str, set[str]] = {}
        for record in records:
            if record["request_id"] is not None:
                wanted.setdefault(record["endpoint"], set()).add(record["request_id"])
        log = self.runtime.log
        found: set[tuple[str, str]] = set()
        since = self.runtime.clock.now() - timedelta(
            days=self.runtime.config.feedback_lookback_days
        )
        loop = asyncio.get_running_loop()
        for endpoint, ids in wanted.items():
            recent = log.recent.known(endpoint, ids)
            rest = ids - recent
            if rest:
                lookup = partial(log.logged_request_ids, endpoint, rest, since=since)
                recent |= await loop.run_in_executor(None, lookup)
            found.update((endpoint, i) for i in recent)
        matched: set[str] = set()
        unmatched: list[str] = []
        for record in records:
            request_id = record["request_id"]
            if request_id is None:
                continue
            if (record["endpoint"], request_id) in found:
                matched.add(request_id)
            elif request_id not in unmatched:
                unmatched.append(request_id)
        return matched, unmatched

    async def credit(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Rewards for bandit endpoints, matched to the arm that served each request."""
        wanted = [
            r for r in records
            if r["request_id"] is not None
            and (table := self.runtime.tables.get(r["endpoint"])) is not None
            and table.bandit is not None
        ]  # fmt: skip
        if not wanted:
            return 0
        loop = asyncio.get_running_loop()
        ids = [r["request_id"] for r in wanted]
        found: dict[str, tuple[str, str]] = {}
        for table in {self.runtime.tables[r["endpoint"]] for r in wanted}:
            if table.bandit is not None:
                found.update(table.bandit.pending(ids))
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(
                await loop.run_in_executor(None, self.runtime.deployments.find_decisions, missing)
            )
        credited = 0
        for record in wanted:
            hit = found.get(record["request_id"])
            table = self.runtime.tables.get(record["endpoint"])
            value = record["reward"] if record["reward"] is not None else record["label"]
            if hit is None or table is None or table.bandit is None or hit[0] != record["endpoint"]:
                self.runtime.metrics.feedback.labels(record["endpoint"], "no").inc()
                continue
            self.runtime.metrics.feedback.labels(record["endpoint"], "yes").inc()
            try:
                table.bandit.reward(hit[1], float(value))
            except Exception:  # a reward the bandit cannot take (e.g. 0.5 for bernoulli)
                self.runtime.metrics.feedback.labels(record["endpoint"], "invalid").inc()
                continue
            credited += 1
        return credited

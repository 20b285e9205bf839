"""``prodml rollout …``: start a plan, run controller passes (once or in a watch loop)
and the human commands (advance, pause, resume, approve, rollback, promote).

Flags that cannot be read (a step that is not a number, a guardrail without ``=``) are
usage errors (exit 2) naming the flag; a plan that reads but does not hold together
(weights that do not sum to 1, an unknown metric) is the plan's
:class:`~prodml.core.DefinitionError` with its exit code.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from prodml.cli._options import ActorOption, JsonOption, ProjectOption, ReasonOption
from prodml.cli._output import emit, guarded, stdout
from prodml.cli._rollout_views import show_decision, show_status
from prodml.cli._watch import (
    PassesOption,
    Standby,
    check_interval,
    repeat,
    stop_signals,
    write_json_line,
)
from prodml.core import ConflictError, NotFoundError, parse_duration
from prodml.project import Project
from prodml.registry import default_actor
from prodml.rollout import DEFAULT_GUARDRAILS

if TYPE_CHECKING:
    from prodml.rollout import Decision

__all__ = ["GuardrailOption", "bad", "guardrails_of", "plan_table", "rollout_app"]

rollout_app = typer.Typer(
    help="Rollout plans: canary steps, promotion and rollback decided on valid statistics.",
    no_args_is_help=True,
)

EndpointArgument = Annotated[str, typer.Argument(help="Endpoint name.")]
AnyEndpointArgument = Annotated[
    str | None, typer.Argument(help="Only this endpoint's plan (default: every active plan).")
]
GuardrailOption = Annotated[
    list[str] | None,
    typer.Option(
        "--guardrail",
        help="METRIC=MARGIN, or METRIC=MARGIN% for a share of the champion's value "
        "(repeatable); replaces that metric's guardrail of the plan.",
    ),
]

# -- reading flags --------------------------------------------------------------------


def bad(flag: str, message: str) -> typer.BadParameter:
    """A usage error (exit 2) naming ``flag``."""
    return typer.BadParameter(message, param_hint=f"'{flag}'")


def _number(text: str, flag: str, what: str) -> float:
    """A finite number, or ``N%`` as N/100."""
    body = text.strip()
    scale = 0.01 if body.endswith("%") else 1.0
    try:
        value = float(body.removesuffix("%")) * scale
    except ValueError:
        raise bad(flag, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise bad(flag, f"{what} {text!r} is not a finite number")
    return value


def _pair(text: str, flag: str, expected: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise bad(flag, f"{text!r}: expected {expected}")
    return name.strip(), value.strip()


def _steps(text: str) -> list[float]:
    """``0.01,0.05,0.25`` (or ``1%,5%,25%``) as the challenger's shares."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise bad("--steps", f"{text!r}: expected comma-separated shares such as 0.05,0.25,0.5")
    return [_number(p, "--steps", "step") for p in parts]


def _seconds(text: str, flag: str) -> float:
    """A duration as seconds: a number of seconds or text such as ``30m``, ``1h``, ``7d``."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration(text, field=flag).total_seconds()
        except ValueError as exc:
            raise bad(flag, str(exc)) from None
        except OverflowError:  # more days than a timedelta holds
            raise bad(
                flag, f"{text!r} is too long: expected a duration such as '1h' or '7d'"
            ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise bad(flag, f"{text!r}: expected a duration >= 0 such as 3600, '30m' or '1h'")
    return seconds


def guardrails_of(values: Sequence[str]) -> list[dict[str, Any]]:
    """``METRIC=MARGIN`` (absolute) and ``METRIC=MARGIN%`` (relative) flags as guardrail
    tables.

    >>> guardrails_of(["error_rate=0.01", "p99_latency_ms=25%"])
    [{'metric': 'error_rate', 'margin': 0.01, 'relative': False}, \
{'metric': 'p99_latency_ms', 'margin': 0.25, 'relative': True}]
    """
    out = []
    for value in values:
        metric, margin = _pair(value, "--guardrail", "METRIC=MARGIN or METRIC=MARGIN%")
        relative = margin.endswith("%")
        number = _number(margin, "--guardrail", f"margin of {metric}")
        out.append({"metric": metric, "margin": number, "relative": relative})
    return out


def _weights(values: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values:
        arm, weight = _pair(value, "--weight", "ARM=WEIGHT")
        out[arm] = _number(weight, "--weight", f"weight of arm {arm}")
    return out


def _read_plan_file(path: Path) -> dict[str, Any]:
    """A plan table from a ``.toml`` or ``.json`` file."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise bad("--file", f"{path}: expected a .toml or .json plan file")
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if suffix == ".toml" else orjson.loads(text)
    except OSError as exc:
        raise bad("--file", f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, orjson.JSONDecodeError) as exc:
        raise bad("--file", f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise bad("--file", f"{path}: expected a table of plan settings, got {type(data).__name__}")
    return data


def plan_table(base: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """The plan ``base`` (a plan file's table, or empty) with the given command-line
    ``flags`` (None: not given) laid over it: scalars replace, ``--guardrail`` replaces
    that metric's guardrail, ``--bake``/``--min-samples`` apply to every step.

    >>> plan_table({"steps": [{"weight": 0.1, "bake": "2h"}], "bake_s": 60},
    ...            {"bake_s": 30.0, "guardrails": [{"metric": "error_rate", "margin": 0.02,
    ...             "relative": False}]})["steps"]
    [{'weight': 0.1}]
    """
    values = dict(base)
    given = {k: v for k, v in flags.items() if v is not None}
    for key in ("bake", "decommission_delay", "max_duration"):
        if f"{key}_s" in given:  # the file's short spelling must not win over the flag
            values.pop(key, None)
    steps = values.get("steps")
    if isinstance(steps, list):
        drop = {"bake", "bake_s"} if "bake_s" in given else set()
        drop |= {"min_samples"} if "min_samples" in given else set()
        values["steps"] = [
            {k: v for k, v in s.items() if k not in drop} if isinstance(s, dict) else s
            for s in steps
        ]
    if "guardrails" in given:
        new = {g["metric"]: g for g in given.pop("guardrails")}
        current = values.get("guardrails", [g.to_dict() for g in DEFAULT_GUARDRAILS])
        if isinstance(current, list):  # anything else: the plan's own check names it
            merged = []
            for g in current:
                metric = g.get("metric") if isinstance(g, dict) else None
                merged.append(new.pop(metric) if metric in new else g)
            values["guardrails"] = merged + list(new.values())
    values.update(given)
    return values


# -- rollout commands -----------------------------------------------------------------


@rollout_app.command("plan")
def plan(
    endpoint: EndpointArgument,
    challenger: Annotated[
        str | None, typer.Option(help="The model version to roll out (name:version or name@alias).")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="The challenger's shares, comma-separated (default 0.01,0.05,0.25,0.5)."),
    ] = None,
    bake: Annotated[
        str | None, typer.Option(help="Least time at each step, e.g. 30m or 1h (default 1h).")
    ] = None,
    min_samples: Annotated[
        int | None, typer.Option(help="Least challenger requests at each step (default 1000).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Primary metric (default log_loss).")] = None,
    min_effect: Annotated[
        float | None, typer.Option(help="Least improvement worth promoting (default 0).")
    ] = None,
    guardrail: GuardrailOption = None,
    alpha: Annotated[
        float | None, typer.Option(help="False-positive rate of the sequential test (0.05).")
    ] = None,
    planned_n: Annotated[
        int | None, typer.Option(help="Labelled rows per arm the sequential test is tuned to.")
    ] = None,
    require_approval: Annotated[
        bool | None,
        typer.Option(
            "--require-approval/--no-require-approval",
            help="Wait for `prodml rollout approve` before promoting (default no).",
        ),
    ] = None,
    require_blessed: Annotated[
        bool | None,
        typer.Option(
            "--require-blessed/--no-require-blessed",
            help="Promote only a version its gate blessed (default yes).",
        ),
    ] = None,
    require_approved: Annotated[
        bool | None,
        typer.Option(
            "--require-approved/--no-require-approved",
            help="Promote only a version approved in the registry (default yes).",
        ),
    ] = None,
    decommission_delay: Annotated[
        str | None,
        typer.Option(help="Keep the old champion's arm this long after promotion (1h)."),
    ] = None,
    max_duration: Annotated[
        str | None, typer.Option(help="Stop the experiment undecided after this long, e.g. 7d.")
    ] = None,
    segment_by: Annotated[
        str | None, typer.Option(help="Entity or feature column to report effects by.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="canary (steps) or ab (fixed weights) (default canary).")
    ] = None,
    weight: Annotated[
        list[str] | None,
        typer.Option(help="ARM=WEIGHT of an ab plan (repeatable; they must sum to 1)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A plan in TOML or JSON; the flags given override it."),
    ] = None,
    reason: ReasonOption = None,
    actor: ActorOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Start a rollout plan on an endpoint: deploy its first canary step (or take over an
    A/B deployment) for the controller's passes to advance, promote or roll back."""
    if kind is not None and kind not in ("canary", "ab"):
        raise bad("--kind", f"{kind!r}: expected canary or ab")
    flags = {
        "kind": kind,
        "challenger": challenger,
        "steps": None if steps is None else _steps(steps),
        "bake_s": None if bake is None else _seconds(bake, "--bake"),
        "min_samples": min_samples,
        "metric": metric,
        "min_effect": min_effect,
        "guardrails": None if guardrail is None else guardrails_of(guardrail),
        "alpha": alpha,
        "planned_n": planned_n,
        "require_approval": require_approval,
        "require_blessed": require_blessed,
        "require_approved": require_approved,
        "decommission_delay_s": (
            None
            if decommission_delay is None
            else _seconds(decommission_delay, "--decommission-delay")
        ),
        "max_duration_s": None
        if max_duration is None
        else _seconds(max_duration, "--max-duration"),
        "segment_by": segment_by,
        "weights": None if weight is None else _weights(weight),
    }
    base = {} if file is None else _read_plan_file(file)
    with guarded(as_json), Project.open(project) as proj:
        decision = proj.rollout.start(
            endpoint, plan_table(base, flags), actor=actor or default_actor(), reason=reason
        )
    data = decision.to_dict()
    emit(data, as_json=as_json, human=lambda: show_decision(data))


@rollout_app.command("status")
def status(
    endpoint: EndpointArgument,
    analysis: Annotated[
        bool, typer.Option("--analysis", help="Also analyse the experiment from the logs now.")
    ] = False,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """An endpoint's rollout: plan, step, deployment arms and the latest decisions."""
    with guarded(as_json), Project.open(project) as proj:
        data = proj.rollout.status(endpoint)
        if analysis:
            try:
                data["analysis"] = proj.rollout.analyze(endpoint).to_dict()
            except NotFoundError as exc:  # no records yet: the status still stands
                data["analysis"] = None
                data["analysis_error"] = f"no analysis: {exc}"
    emit(data, as_json=as_json, human=lambda: show_status(data))


@rollout_app.command("report")
def report(
    endpoint: EndpointArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "rollout-report.html"
    ),
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Write one self-contained HTML page of the endpoint's rollout: arms, traffic and
    effect over time, guardrails, SRM, paired shadow comparisons and every decision."""
    from prodml.rollout import rollout_report

    if output.is_dir():
        raise bad("--output", f"{output} is a directory: expected the path of an HTML file")
    with guarded(as_json), Project.open(project) as proj:
        html = rollout_report(
            proj.rollout, proj.deployments, endpoint, generated_at=proj.clock.now()
        )
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise bad("--output", f"{output}: cannot write it: {exc.strerror or exc}") from None
    emit(
        {"path": str(output), "bytes": len(html.encode())},
        as_json=as_json,
        human=lambda: stdout.print(f"Wrote {output}"),
    )


def _show_decisions(decisions: Sequence[Mapping[str, Any]], endpoint: str | None) -> None:
    if not decisions:
        where = f" on endpoint {endpoint}" if endpoint else ""
        stdout.print(f"No active rollout plan{where}: nothing to decide.")
    for decision in decisions:
        show_decision(decision)


@rollout_app.command("run")
def run(
    endpoint: AnyEndpointArgument = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """One controller pass over the active plans (refused while another controller holds
    the project's lease)."""
    with guarded(as_json), Project.open(project) as proj:
        rollouts = proj.rollout
        try:
            decisions = [d.to_dict() for d in rollouts.run_once(endpoint)]
        finally:
            rollouts.release()
    emit(
        {"decisions": decisions},
        as_json=as_json,
        human=lambda: _show_decisions(decisions, endpoint),
    )


def _line(event: Mapping[str, Any], as_json: bool) -> None:
    """One watch event: a JSON line, or a line of text."""
    if as_json:
        write_json_line(event)
    elif event["event"] == "decision":
        show_decision(event)
    else:
        stdout.print(event["message"], soft_wrap=True)


class _Watch:
    """What a watch loop has said: holds print only when their rule changes, and a lease
    held elsewhere is said once until this controller gets it."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.standby = Standby(lambda event: _line(event, as_json))
        self.rules: dict[str, Any] = {}

    def decisions(self, decisions: Sequence[Decision]) -> None:
        self.standby.acting()
        for decision in decisions:
            rule = decision.evidence.get("rule")
            same = self.rules.get(decision.endpoint) == (decision.action, rule)
            if same and decision.action in ("hold", "continue"):
                continue
            self.rules[decision.endpoint] = (decision.action, rule)
            _line({"event": "decision", **decision.to_dict()}, self.as_json)

    def conflict(self, error: ConflictError) -> None:
        self.standby.conflict(f"standing by: {error}; retrying every pass")


@rollout_app.command("watch")
def watch(
    endpoint: AnyEndpointArgument = None,
    interval: Annotated[float, typer.Option(help="Seconds between passes.")] = 30.0,
    passes: PassesOption = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Run controller passes until interrupted (SIGINT/SIGTERM end it cleanly and release
    the lease); while another controller holds the lease, stand by and retry."""
    check_interval(interval)
    with stop_signals() as stop, guarded(as_json), Project.open(project) as proj:
        proj.db.ensure_intact()  # a controller starts only on a consistent metadata DB
        rollouts = proj.rollout
        said = _Watch(as_json)
        if not as_json:
            where = f"endpoint {endpoint}" if endpoint else "every active plan"
            stdout.print(f"Watching {where}: a pass every {interval:g} s (Ctrl-C stops)")

        def one_pass() -> None:
            try:
                said.decisions(rollouts.run_once(endpoint))
            except ConflictError as exc:  # another controller acts: stand by
                said.conflict(exc)

        try:
            repeat(stop, interval, passes, one_pass)
        finally:
            rollouts.release()


def _action(name: str, doc: str) -> None:
    def command(
        endpoint: EndpointArgument,
        reason: ReasonOption = None,
        actor: ActorOption = None,
        project: ProjectOption = Path("."),
        as_json: JsonOption = False,
    ) -> None:
        with guarded(as_json), Project.open(project) as proj:
            method: Callable[..., Decision] = getattr(proj.rollout, name)
            data = method(endpoint, actor=actor or default_actor(), reason=reason).to_dict()
        emit(data, as_json=as_json, human=lambda: show_decision(data))

    command.__doc__ = doc
    rollout_app.command(name)(command)


_action("advance", "Move a canary to its next step now, skipping the bake.")
_action("pause", "Freeze the plan: passes decide nothing until resumed (traffic stays).")
_action("resume", "Let the controller's passes decide again.")
_action("approve", "Approve the promotion of a plan that requires a human's approval.")
_action(
    "rollback",
    "Back to the champion now: end the canary, or undo the promotion (the registry's "
    "champion alias too).",
)
_action(
    "promote",
    "Promote the challenger now (the plan's blessed and approved requirements still apply).",
)

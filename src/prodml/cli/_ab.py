"""``prodml ab …``: the sample size an experiment needs, and the analysis of an
endpoint's experiment over its prediction and label logs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from prodml.cli._options import JsonOption, ProjectOption, check_window
from prodml.cli._output import emit, guarded, stdout, table
from prodml.cli._rollout import GuardrailOption, bad, guardrails_of
from prodml.cli._rollout_views import show_analysis
from prodml.core import ConfigError, ensure_utc
from prodml.project import Project
from prodml.rollout import Guardrail

__all__ = ["ab_app"]

ab_app = typer.Typer(
    help="A/B experiments: sample size and analysis over the logs.", no_args_is_help=True
)

EndpointArgument = Annotated[str, typer.Argument(help="Endpoint name.")]


#: Which flag each argument of the sample-size functions comes from, to name it in errors.
_SIZE_FLAGS = {
    "p_control": "--baseline",
    "p_treatment": "--target",
    "delta": "--mde",
    "sd_control": "--sd",
    "sd_treatment": "--sd-treatment",
    "alpha": "--alpha",
    "power": "--power",
    "ratio": "--ratio",
    "method": "--method",
}
_METHODS = {"unpooled": "unpooled", "pooled": "pooled", "cohen": "cohen_h", "cohen_h": "cohen_h"}


def _size_inputs(
    baseline: float | None,
    target: float | None,
    mde: float | None,
    relative: bool,
    sd: float | None,
    sd_treatment: float | None,
    method: str | None,
) -> dict[str, Any]:
    """The inputs of ``ab size`` checked for a proportion or a mean experiment."""
    if (baseline is None) == (sd is None):
        raise typer.BadParameter(
            "give --baseline P for rates, or --sd S (with --mde D) for means",
            param_hint="'--baseline' / '--sd'",
        )
    if baseline is not None:
        if sd_treatment is not None:
            raise bad("--sd-treatment", "goes with --sd (means), not --baseline (rates)")
        if (target is None) == (mde is None):
            raise typer.BadParameter(
                "give one of --target P2 or --mde D", param_hint="'--target' / '--mde'"
            )
        if relative and mde is None:
            raise bad("--relative", "applies to --mde, not --target")
        if target is None:
            assert mde is not None
            target = baseline * (1 + mde) if relative else baseline + mde
        chosen = _METHODS.get(method or "unpooled")
        if chosen is None:
            raise bad("--method", f"{method!r}: expected unpooled, pooled or cohen")
        return {
            "metric": "proportion",
            "baseline": baseline,
            "target": target,
            "effect": target - baseline,
            "method": chosen,
        }
    if target is not None or relative or method is not None:
        flag = "--target" if target is not None else "--relative" if relative else "--method"
        raise bad(flag, "applies to rates (--baseline); means take --sd and --mde")
    if mde is None:
        raise bad("--mde", "means need --mde D, the difference of means to detect")
    return {"metric": "mean", "effect": mde, "sd": sd, "sd_treatment": sd_treatment}


def _show_size(data: Mapping[str, Any]) -> None:
    if data["metric"] == "proportion":
        what = f"rates {data['baseline']:.4g} → {data['target']:.4g} ({data['method']})"
    else:
        sds = f"sd {data['sd']:g}" + (
            "" if data["sd_treatment"] is None else f" / {data['sd_treatment']:g}"
        )
        what = f"a difference of means of {data['effect']:g} ({sds})"
    stdout.print(
        f"Sample size to detect {what}, {data['alternative']} α {data['alpha']:g}, power "
        f"{data['power']:g}, treatment/control ratio {data['ratio']:g}",
        soft_wrap=True,
    )
    table(
        "Units per arm",
        ["arm", "n", "exact"],
        [
            ("control", f"{data['n_control']:,}", f"{data['n_control_exact']:,.2f}"),
            ("treatment", f"{data['n_treatment']:,}", f"{data['n_treatment_exact']:,.2f}"),
            ("total", f"{data['total']:,}", ""),
        ],
    )


@ab_app.command("size")
def size(
    baseline: Annotated[
        float | None, typer.Option(help="Control rate of a proportion metric, e.g. 0.10.")
    ] = None,
    target: Annotated[float | None, typer.Option(help="Treatment rate to detect.")] = None,
    mde: Annotated[
        float | None,
        typer.Option(help="Least effect to detect: a rate difference, or a difference of means."),
    ] = None,
    relative: Annotated[
        bool, typer.Option("--relative", help="--mde is a share of --baseline (0.1: +10%).")
    ] = False,
    sd: Annotated[
        float | None, typer.Option(help="Standard deviation of a mean metric (control).")
    ] = None,
    sd_treatment: Annotated[
        float | None, typer.Option(help="Its standard deviation in treatment (default --sd).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate.")] = 0.05,
    power: Annotated[float, typer.Option(help="Chance to detect the effect.")] = 0.8,
    ratio: Annotated[float, typer.Option(help="Treatment units per control unit.")] = 1.0,
    method: Annotated[
        str | None,
        typer.Option(help="Rates: unpooled (Wald), pooled or cohen (arcsine) (default unpooled)."),
    ] = None,
    one_sided: Annotated[
        bool, typer.Option("--one-sided", help="Test in the effect's direction only.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Units per arm an experiment needs to detect an effect (rates or means)."""
    from prodml.stats import mean_sample_size, proportion_sample_size  # SciPy: load to use

    inputs = _size_inputs(baseline, target, mde, relative, sd, sd_treatment, method)
    alternative = "one-sided" if one_sided else "two-sided"
    common: dict[str, Any] = {
        "alpha": alpha,
        "power": power,
        "ratio": ratio,
        "alternative": alternative,
    }
    try:
        if inputs["metric"] == "proportion":
            result = proportion_sample_size(
                inputs["baseline"], inputs["target"], method=inputs["method"], **common
            )
        else:
            result = mean_sample_size(
                inputs["effect"], inputs["sd"], inputs["sd_treatment"], **common
            )
    except ConfigError as exc:  # a value out of range: name the flag it came from
        argument, _, rest = str(exc).partition(": ")
        flag = _SIZE_FLAGS.get(argument)
        if flag is None:
            raise typer.BadParameter(str(exc)) from None
        if flag == "--target" and target is None:
            flag = "--mde"
        raise bad(flag, rest) from None
    data = {**inputs, **common, **result.to_dict()}
    emit(data, as_json=as_json, human=lambda: _show_size(data))


@ab_app.command("analyze")
def analyze(
    endpoint: EndpointArgument,
    start: Annotated[
        datetime | None,
        typer.Option(help="First record (UTC); default: the rollout plan's start, else all."),
    ] = None,
    end: Annotated[
        datetime | None, typer.Option(help="End (UTC), exclusive; default: now.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Primary metric, e.g. log_loss, roc_auc or reward.")
    ] = None,
    champion: Annotated[
        str | None, typer.Option(help="The arm the others are compared with.")
    ] = None,
    guardrail: GuardrailOption = None,
    segment_by: Annotated[
        str | None, typer.Option(help="Entity or feature column to report effects by.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="Effect over time by day or hour.")] = None,
    project: ProjectOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Analyse an endpoint's experiment from its prediction and label logs: per-arm
    metrics, comparisons with always-valid CIs, guardrails, SRM, shadow arms paired."""
    check_window(start, end)
    if bucket is not None and bucket not in ("day", "hour"):
        raise bad("--bucket", f"{bucket!r}: expected day or hour")
    options: dict[str, Any] = {
        "start": None if start is None else ensure_utc(start),
        "end": None if end is None else ensure_utc(end),
        "metric": metric,
        "champion": champion,
        "segment_by": segment_by,
        "bucket": bucket,
    }
    options = {k: v for k, v in options.items() if v is not None}
    with guarded(as_json), Project.open(project) as proj:
        if guardrail is not None:
            options["guardrails"] = tuple(Guardrail.from_dict(g) for g in guardrails_of(guardrail))
        data = proj.experiments.analyze(endpoint, **options).to_dict()
    data.setdefault("endpoint", endpoint)
    emit(data, as_json=as_json, human=lambda: show_analysis(data))

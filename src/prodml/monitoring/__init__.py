"""Layer 5, monitoring: windows over the prediction log checked against each model
version's reference — input and prediction drift with effect-size defaults and
false-discovery control, data quality, delayed-label and estimated performance,
operational health — stored as time series in the metadata DB."""

from __future__ import annotations

from prodml.core._monitor_metrics import MONITOR_METRICS, MonitorMetric
from prodml.monitoring._alerts import AlertState, Observation, evaluate
from prodml.monitoring._checks import Result
from prodml.monitoring._columns import ParquetColumns
from prodml.monitoring._drift import (
    DEFAULT_METHODS,
    ColumnDrift,
    DatasetDrift,
    DriftMethod,
    DriftReference,
    score_drift,
)
from prodml.monitoring._due import Backlog
from prodml.monitoring._job import Monitor, MonitorRun, WindowReport
from prodml.monitoring._performance import (
    Calibrator,
    Estimate,
    calibration,
    classification_metrics,
    estimate_classification,
    regression_metrics,
)
from prodml.monitoring._prometheus import MonitorCollector, exposition
from prodml.monitoring._reference import MonitorReference
from prodml.monitoring._report import (
    REPORT_CSS,
    ReportSection,
    render_endpoint_section,
    render_report,
)
from prodml.monitoring._report_retraining import render_retraining
from prodml.monitoring._store import MonitorStore, StoredWindow
from prodml.monitoring._svg import Series, line_chart
from prodml.monitoring._windows import Span, Window, windows

__all__ = [
    "DEFAULT_METHODS",
    "MONITOR_METRICS",
    "REPORT_CSS",
    "AlertState",
    "Backlog",
    "Calibrator",
    "ColumnDrift",
    "DatasetDrift",
    "DriftMethod",
    "DriftReference",
    "Estimate",
    "Monitor",
    "MonitorCollector",
    "MonitorMetric",
    "MonitorReference",
    "MonitorRun",
    "MonitorStore",
    "Observation",
    "ParquetColumns",
    "ReportSection",
    "Result",
    "Series",
    "Span",
    "StoredWindow",
    "Window",
    "WindowReport",
    "calibration",
    "classification_metrics",
    "estimate_classification",
    "evaluate",
    "exposition",
    "line_chart",
    "regression_metrics",
    "render_endpoint_section",
    "render_report",
    "render_retraining",
    "score_drift",
    "windows",
]

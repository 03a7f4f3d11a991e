"""The rows, JSON report and tables of ``edge-ad benchmark-models`` (torch-free).

One row per model family: detection quality (image/pixel AUROC, AUPRO, per-type image AUROC,
FRR and recall at the validation threshold), size (parameters, trained parameters, multiply-adds)
and ONNX Runtime speed, or the error that stopped the family. The runner
(:mod:`trainer.benchmark_models`) fills the rows; this module assembles them into the JSON report
(schema ``edge-ad/benchmark-models/1``), a rich table and GitHub markdown, and decides whether an
earlier run can be reused. Nothing here imports torch, so it is tested on hand-made rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from edge_ad.detection_metrics import format_interval
from edge_ad.errors import ConfigError

SCHEMA = "edge-ad/benchmark-models/1"
SIZES = ("edge", "tiny", "paper")
MODES = ("rgb", "depth", "rgbd")
FIRST_FAMILY = "ast"  # the flagship leads the table; the others follow alphabetically


@dataclass
class BenchmarkRow:
    """One family's line of the table; metrics stay None where the stage that measures them failed."""

    family: str
    preset: str
    mode: str
    score: str | None = None
    image_auroc: float | None = None
    image_auroc_ci95: list[float] | None = None  # DeLong, edge_ad.detection_metrics.auroc_interval
    pixel_auroc: float | None = None
    aupro: float | None = None
    frr: float | None = None  # on good test parts, at the threshold set on good validation parts
    recall: float | None = None
    by_type: dict[str, float | None] = field(default_factory=dict)
    params: int | None = None
    trained_params: int | None = None
    macs: int | None = None
    ort_fps: float | None = None
    ort_latency_ms_median: float | None = None
    train_seconds: float | None = None
    reused: bool = False
    error: str | None = None
    error_stage: str | None = None
    error_code: int | None = None

    def record_error(self, stage: str, exc: BaseException, exit_code: int) -> str:
        """Add a stage's failure and return its text; the first one sets ``error_stage`` and ``error_code``."""
        text = f"{stage}: {type(exc).__name__}: {exc}"
        self.error = text if self.error is None else f"{self.error}; {text}"
        if self.error_stage is None:
            self.error_stage, self.error_code = stage, exit_code
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


def choose_families(requested: str | None, registered: Sequence[str]) -> list[str]:
    """The families to benchmark: ``requested`` (comma-separated, in that order) or all registered, AST first.

    ConfigError naming the registered families when one is unknown or the list is empty.
    """
    known = sorted(registered, key=lambda name: (name != FIRST_FAMILY, name))
    if requested is None:
        if not known:
            raise ConfigError("no model family is registered (trainer.registry)")
        return known
    names: list[str] = []
    for name in (part.strip() for part in requested.split(",")):
        if name and name not in names:
            names.append(name)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        what = f"unknown model family {', '.join(map(repr, unknown))}" if unknown else "--models lists no family"
        raise ConfigError(f"{what}; known: {', '.join(known)}")
    return names


def check_choices(size: str, mode: str | None, has_xyz: bool) -> str:
    """The mode to train (``mode``, else rgbd with xyz and rgb without); ConfigError for bad values."""
    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    if mode is None:
        return "rgbd" if has_xyz else "rgb"
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "rgb" and not has_xyz:
        raise ConfigError(f"--mode {mode} needs depth, but the dataset has no point clouds (no xyz folders); use --mode rgb")
    return mode


@dataclass(frozen=True)
class ReuseDecision:
    """Whether an earlier run folder can stand in for training, and why (printed in the progress line)."""

    reuse: bool
    reason: str


# Files a finished run has: config.yaml is written before the checkpoint, so it alone does not prove
# the run got to the end.
_RUN_FILES = ("config.yaml", "checkpoint.pt", "validation_scores.json", "train_log.json")


def reuse_decision(run_dir: Path, preset: str, mode: str, epochs: int | None = None) -> ReuseDecision:
    """Reuse ``run_dir`` when it is a finished run of ``preset`` in ``mode`` (and ``epochs``, when given)."""
    missing = [name for name in _RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        return ReuseDecision(False, f"no finished run in {run_dir} ({', '.join(missing)} missing)")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return ReuseDecision(False, f"{run_dir / 'config.yaml'} unreadable ({exc})")
    if not isinstance(config, Mapping):
        return ReuseDecision(False, f"{run_dir / 'config.yaml'} is not a mapping")
    found = {"preset": config.get("preset"), "mode": config.get("mode")}
    wanted: dict[str, Any] = {"preset": preset, "mode": mode}
    if epochs is not None:
        train = config.get("train")
        found["epochs"] = train.get("epochs") if isinstance(train, Mapping) else None
        wanted["epochs"] = epochs
    differ = [f"{key} {found[key]!r} (wanted {value!r})" for key, value in wanted.items() if found[key] != value]
    if differ:
        return ReuseDecision(False, f"earlier run differs: {', '.join(differ)}")
    return ReuseDecision(True, f"reusing {run_dir} ({preset}, {mode})")


def exit_code(rows: Sequence[Mapping[str, Any]]) -> int:
    """0 while any family made it through; the first family's error code when every one failed (report rows)."""
    if rows and all(row.get("error") for row in rows):
        return int(rows[0].get("error_code") or 1)
    return 0


def build_report(
    rows: Sequence[BenchmarkRow], setup: Mapping[str, Any], machine: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON report: schema, ``setup`` (data, mode, size, ...), the machine and the rows."""
    return {"schema": SCHEMA, **setup, "machine": dict(machine), "rows": [row.to_dict() for row in rows]}


# ---- formatting -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _metric(value: float | None) -> str:
    return "-" if _missing(value) else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "-" if _missing(value) else f"{100 * value:.1f}%"


def _count(value: int | None) -> str:
    """Parameters / MACs with an SI suffix: 48.2k, 3.41M, 1.25G."""
    if _missing(value):
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return str(value)


def _speed(value: float | None) -> str:
    if _missing(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


# (header, row -> cell) in table order; the error column is added only when a row has one.
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("family", lambda r: r["family"]),
    ("preset", lambda r: r["preset"]),
    ("mode", lambda r: r["mode"]),
    ("image AUROC", lambda r: _metric(r["image_auroc"])),
    ("95% interval", lambda r: format_interval(r.get("image_auroc_ci95"))),
    ("pixel AUROC", lambda r: _metric(r["pixel_auroc"])),
    ("AUPRO", lambda r: _metric(r["aupro"])),
    ("FRR", lambda r: _pct(r["frr"])),
    ("recall", lambda r: _pct(r["recall"])),
    ("params", lambda r: _count(r["params"])),
    ("trained", lambda r: _count(r["trained_params"])),
    ("MACs", lambda r: _count(r["macs"])),
    ("ORT fps", lambda r: _speed(r["ort_fps"])),
    ("ORT ms", lambda r: _speed(r["ort_latency_ms_median"])),
    ("train s", lambda r: _speed(r["train_seconds"])),
)


def table_cells(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of cells) of the main table, shared by the console and the markdown."""
    rows = report["rows"]
    with_error = any(row.get("error") for row in rows)
    headers = [header for header, _ in COLUMNS] + (["error"] if with_error else [])
    cells = []
    for row in rows:
        line = [cell(row) for _, cell in COLUMNS]
        if with_error:
            line.append(row.get("error") or "")
        cells.append(line)
    return headers, cells


def type_cells(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of image AUROC per defect type; no columns when no row has per-type results."""
    types = sorted({name for row in report["rows"] for name in row.get("by_type") or {}})
    if not types:
        return [], []
    cells = [[row["family"]] + [_metric((row.get("by_type") or {}).get(name)) for name in types] for row in report["rows"]]
    return ["family", *types], cells


def caption(report: Mapping[str, Any]) -> str:
    """One line saying what the numbers are: data, mode, size, thresholds, ORT setup, CPU."""
    ort = report.get("ort", {})
    machine = report.get("machine", {})
    cpu = machine.get("cpu_model") or machine.get("machine") or "this CPU"
    return (
        f"{report.get('category', report.get('data'))}, mode {report.get('mode')}, size {report.get('size')}; "
        f"FRR / recall at the validation threshold for target FRR {_pct(report.get('target_frr'))}; "
        f"ONNX Runtime FP32, batch 1, {ort.get('threads')} thread(s), median of {ort.get('runs')} runs "
        f"on {cpu} ({machine.get('cpu_count')} CPUs)"
    )


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(headers: Sequence[str], cells: Sequence[Sequence[str]], numeric_from: int) -> list[str]:
    align = ["---" if i < numeric_from or header == "error" else "---:" for i, header in enumerate(headers)]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_escape(str(cell)) for cell in row) + " |" for row in cells]
    return lines


def markdown_table(report: Mapping[str, Any]) -> str:
    """The main table and the per-type image AUROC table as GitHub markdown, with the caption."""
    headers, cells = table_cells(report)
    lines = [f"_{_escape(caption(report))}_", "", *_markdown(headers, cells, numeric_from=3)]
    type_headers, type_rows = type_cells(report)
    if type_headers:
        lines += ["", "Image AUROC per defect type (good vs that type):", "", *_markdown(type_headers, type_rows, 1)]
    return "\n".join(lines) + "\n"


# The console gets the wide markdown table split in two, each within 80 columns (logs and CI are
# 80 wide); the preset is FAMILY-SIZE and the size is in the caption.
CONSOLE_GROUPS = (
    ("detection", ("family", "mode", "image AUROC", "pixel AUROC", "AUPRO", "FRR", "recall")),
    ("size and speed", ("family", "params", "trained", "MACs", "ORT ms", "ORT fps", "train s")),
)


def _rich_table(title: str, headers: Sequence[str], cells: Sequence[Sequence[str]], text_columns: int) -> Table:
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < text_columns else "right", no_wrap=i >= text_columns)
    for row in cells:
        table.add_row(*(escape(cell) for cell in row))  # names may hold [brackets]
    return table


def console_renderables(report: Mapping[str, Any]) -> list[RenderableType]:
    """What the console shows: the caption, the detection and the size/speed tables, per-type AUROC, errors."""
    headers, cells = table_cells(report)
    items: list[RenderableType] = [Text(caption(report))]
    for title, wanted in CONSOLE_GROUPS:
        index = [headers.index(name) for name in wanted]
        text_columns = sum(1 for name in wanted if name in ("family", "mode"))
        items.append(_rich_table(title, wanted, [[row[i] for i in index] for row in cells], text_columns))
    type_headers, type_rows = type_cells(report)
    if type_headers:
        items.append(_rich_table("image AUROC by defect type", type_headers, type_rows, 1))
    for row in report["rows"]:
        if row.get("error"):
            items.append(Text(f"{row['family']} failed at {row.get('error_stage')}: {row['error']}", style="red"))
    return items

"""Reading training's validation scores and writing evaluation JSON (torch-free helpers of evaluate)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ad.errors import DataError

VALIDATION_SCORES = "validation_scores.json"
RUN_METRICS = "metrics.json"


@dataclass(frozen=True)
class ValidationScores:
    """Scores of the good validation parts, as written by training (``RUN/validation_scores.json``).

    ``scores`` are those of the family's default score (what the exported model computes);
    ``by_kind`` holds every score kind the family offers (``--score`` of evaluate), default included.
    """

    names: tuple[str, ...]
    scores: np.ndarray
    by_kind: dict[str, np.ndarray]
    has_mask: bool

    def for_score(self, score: str | None) -> np.ndarray:
        """The validation scores of one score kind (None: the default one)."""
        if score is None:
            return self.scores
        if score in self.by_kind:
            return self.by_kind[score]
        known = ", ".join(self.by_kind) or "none recorded"
        raise DataError(f"{VALIDATION_SCORES}: no validation scores for score {score!r} (recorded: {known})")


def _float_array(
    data: Mapping[str, Any], key: str, path: Path, n: int, field: str | None = None
) -> np.ndarray:
    field = field or key
    try:
        values = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: field {field!r} must be a list of numbers") from exc
    if values.shape != (n,):
        raise DataError(f"{path}: field {field!r} has {values.size} values, 'names' has {n}")
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}: field {field!r} holds {int(np.sum(~np.isfinite(values)))} non-finite scores")
    return values


def load_validation_scores(run_dir: Path) -> ValidationScores:
    """Read ``RUN/validation_scores.json`` ({"names", "scores", "scores_by_kind", "has_mask"}).

    Runs written before ``scores_by_kind`` existed carry AST's ``teacher_nll_scores``; they still load.
    """
    path = Path(run_dir) / VALIDATION_SCORES
    if not path.is_file():
        raise DataError(f"{path} not found: the run has no validation scores (was it trained with a validation split?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("names"), list) or "scores" not in data:
        raise DataError(f"{path}: expected an object with 'names' (list) and 'scores'")
    n = len(data["names"])
    if n == 0:
        raise DataError(f"{path}: no validation scores (0 good validation parts)")
    scores = _float_array(data, "scores", path, n)
    by_kind_raw = data.get("scores_by_kind")
    if by_kind_raw is None:
        by_kind_raw = {"ast": data["scores"]}
        if data.get("teacher_nll_scores") is not None:
            by_kind_raw["teacher-nll"] = data["teacher_nll_scores"]
    if not isinstance(by_kind_raw, dict):
        raise DataError(f"{path}: field 'scores_by_kind' must map score names to lists of numbers")
    by_kind = {
        str(kind): _float_array(by_kind_raw, kind, path, n, field=f"scores_by_kind.{kind}") for kind in by_kind_raw
    }
    return ValidationScores(
        names=tuple(str(name) for name in data["names"]),
        scores=scores,
        by_kind=by_kind,
        has_mask=bool(data.get("has_mask", False)),
    )


def validation_scores_record(
    names: Sequence[str], scores_by_kind: Mapping[str, Sequence[float]], default: str, has_mask: bool
) -> dict[str, Any]:
    """The JSON object of ``RUN/validation_scores.json`` that :func:`load_validation_scores` reads."""
    return {
        "names": list(names),
        "scores": list(scores_by_kind.get(default, [])),
        "default_score": default,
        "scores_by_kind": {kind: list(values) for kind, values in scores_by_kind.items()},
        "has_mask": has_mask,
    }


def json_safe(obj: object) -> Any:
    """Numpy scalars/arrays to Python values and NaN/inf to None, recursively (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(key): json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(item) for item in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: object) -> Path:
    """Write ``data`` as indented strict JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def merge_run_metrics(run_dir: Path, key: str, section: Mapping[str, Any]) -> Path:
    """Store ``section`` under ``key`` in ``RUN/metrics.json``, keeping what training wrote there."""
    path = Path(run_dir) / RUN_METRICS
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: existing metrics are not readable JSON ({exc})") from exc
        if isinstance(loaded, dict):
            existing = loaded
    existing[key] = section
    return write_json(path, existing)

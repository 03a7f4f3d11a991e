"""Load and verify a model bundle before it is used on the line.

A bundle is refused, with a message that says what is wrong, when: the directory or manifest is
missing; the manifest is malformed, has unknown keys, misses a field or comes from a newer schema;
a listed file is missing, truncated, altered or still a git-lfs pointer; a file is present but not
listed; a model does not parse; or a model's inputs/outputs differ from the manifest's.
:func:`load_bundle` stops at the first problem (BundleError); :func:`verify_bundle` runs every check
and reports each one (for ``edge-ad check bundle``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_ad.backends import create_backend
from edge_ad.backends.base import TensorSpec
from edge_ad.errors import BundleError, EdgeAdError, InferenceError
from edge_ad.hashing import read_lfs_pointer, sha256_file
from edge_ad.manifest import ENGINE_DIR, MANIFEST_NAME, MODEL_ROLES, FileEntry, Manifest, load_manifest
from edge_ad.preprocess import PreprocessConfig

Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One verification step: its name, outcome and what it found."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class VerificationReport:
    """Every check run on a bundle, in order."""

    path: Path
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (and at least one ran)."""
        return bool(self.checks) and not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [check for check in self.checks if check.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``--json``."""
        return {
            "bundle": str(self.path),
            "ok": self.ok,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
        }


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: where it is, its manifest and its preprocessing."""

    root: Path
    manifest: Manifest
    preprocess_config: PreprocessConfig

    def model_path(self, precision: str | None = None) -> Path:
        """The model file for ``precision`` (default: the manifest's precision)."""
        return self.root / self.manifest.model_file(precision)


def format_specs(specs: Sequence[TensorSpec]) -> str:
    """``image float32 [1, 3, 64, 64], mask float32 [1, 1, ?, ?]``."""
    return ", ".join(
        f"{spec.name} {spec.dtype} [{', '.join('?' if d is None else str(d) for d in spec.shape)}]"
        for spec in specs
    )


def compare_specs(expected: Sequence[TensorSpec], actual: Sequence[TensorSpec]) -> list[str]:
    """Differences between manifest specs and a model's; a dynamic dim on either side matches any size."""
    problems: list[str] = []
    actual_by_name = {spec.name: spec for spec in actual}
    expected_names = [spec.name for spec in expected]
    missing = [name for name in expected_names if name not in actual_by_name]
    extra = [spec.name for spec in actual if spec.name not in expected_names]
    if missing:
        problems.append(f"model has no tensor named {missing}")
    if extra:
        problems.append(f"model has tensors the manifest does not list: {extra}")
    for spec in expected:
        other = actual_by_name.get(spec.name)
        if other is None:
            continue
        if other.dtype != spec.dtype:
            problems.append(f"{spec.name}: dtype {spec.dtype} in the manifest, {other.dtype} in the model")
        dims_differ = len(other.shape) != len(spec.shape) or any(
            a is not None and b is not None and a != b for a, b in zip(spec.shape, other.shape, strict=False)
        )
        if dims_differ:
            problems.append(
                f"{spec.name}: shape {list(spec.shape)} in the manifest, {list(other.shape)} in the model"
            )
    return problems


def check_backend_matches(
    manifest: Manifest, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], where: str
) -> None:
    """Raise BundleError listing both sides when a model's I/O differs from the manifest's."""
    for kind, expected, actual in (
        ("inputs", manifest.inputs, inputs),
        ("outputs", manifest.outputs, outputs),
    ):
        problems = compare_specs(expected, actual)
        if problems:
            raise BundleError(
                f"{where}: {kind} do not match the manifest ({'; '.join(problems)}). "
                f"manifest: {format_specs(expected)}; model: {format_specs(actual)}"
            )


def _check_file(root: Path, name: str, entry: FileEntry, check_hashes: bool) -> str:
    file = root / name
    if not file.is_file():
        raise BundleError(f"{file}: listed in the manifest but missing")
    pointer = read_lfs_pointer(file)
    if pointer is not None and entry.bytes != pointer.pointer_bytes:
        raise BundleError(
            f"{file}: looks like a git-lfs pointer ({pointer.pointer_bytes} bytes, expected {entry.bytes}); "
            "run `git lfs pull`"
        )
    size = file.stat().st_size
    if size != entry.bytes:
        kind = "truncated" if size < entry.bytes else "larger than listed"
        raise BundleError(f"{file}: {kind}: expected {entry.bytes} bytes, found {size} bytes")
    if not check_hashes:
        return f"{size} bytes (hash not checked)"
    actual = sha256_file(file)
    if actual != entry.sha256:
        raise BundleError(f"{file}: sha256 mismatch: expected {entry.sha256}, actual {actual}")
    return f"{size} bytes, sha256 {actual[:12]}… ok"


def _check_unlisted(root: Path, manifest: Manifest) -> str:
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != ENGINE_DIR
    }
    unlisted = sorted(present - set(manifest.files) - {MANIFEST_NAME})
    if unlisted:
        raise BundleError(f"{root}: files not covered by the manifest's hashes: {', '.join(unlisted)}")
    return f"{len(manifest.files)} files listed, none unlisted"


def _check_model(root: Path, name: str, manifest: Manifest) -> str:
    file = root / name
    try:
        # Verification only parses and reads I/O: no optimisation passes, one thread.
        backend = create_backend("onnxruntime", file, intra_op_num_threads=1, graph_optimization="disabled")
    except InferenceError as exc:
        raise BundleError(f"{file}: not a loadable ONNX model: {exc}") from exc
    try:
        check_backend_matches(manifest, backend.input_spec(), backend.output_spec(), str(file))
    finally:
        backend.close()
    return f"inputs {format_specs(manifest.inputs)}; outputs {format_specs(manifest.outputs)}"


def _load_preprocess(root: Path, manifest: Manifest) -> PreprocessConfig:
    where = root / MANIFEST_NAME
    try:
        config = PreprocessConfig.from_dict(manifest.preprocess)
    except (EdgeAdError, ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"{where}: preprocess: {exc}") from exc
    if config.mode != manifest.model.mode:
        raise BundleError(
            f"{where}: preprocess.mode {config.mode!r} differs from model.mode {manifest.model.mode!r}"
        )
    return config


def _checks(
    path: Path, check_hashes: bool, check_model: bool, state: dict[str, Any]
) -> Iterator[tuple[str, Callable[[], str] | None]]:
    """Yield (name, check) in order; a None check is skipped because an earlier one failed.

    Lazy on purpose: later checks depend on what earlier ones stored in ``state`` (the manifest).
    """
    root = Path(path)

    def directory() -> str:
        if not root.is_dir():
            raise BundleError(
                f"{root}: bundle directory not found" if not root.exists() else f"{root}: not a directory"
            )
        state["directory_ok"] = True
        return str(root)

    def manifest() -> str:
        state["manifest"] = load_manifest(root / MANIFEST_NAME)
        m = state["manifest"]
        return f"schema {m.schema_version}, {m.model.name} ({m.model.family}/{m.model.preset}, {m.model.mode}), {m.precision}"

    def preprocess() -> str:
        state["preprocess"] = _load_preprocess(root, state["manifest"])
        return f"mode {state['preprocess'].mode}"

    yield "bundle directory", directory
    if "directory_ok" not in state:
        return
    yield "manifest", manifest
    if "manifest" not in state:
        return
    m: Manifest = state["manifest"]
    yield "preprocess", preprocess
    files_ok: set[str] = state.setdefault("files_ok", set())
    for name, entry in m.files.items():
        yield f"file {name}", (lambda n=name, e=entry: _file_and_mark(root, n, e, check_hashes, files_ok))
    yield "unlisted files", (lambda: _check_unlisted(root, m))
    if not check_model:
        return
    for name, entry in m.files.items():
        if entry.role in MODEL_ROLES.values():
            runnable = name in files_ok
            yield f"model {name}", ((lambda n=name: _check_model(root, n, m)) if runnable else None)


def _file_and_mark(root: Path, name: str, entry: FileEntry, check_hashes: bool, ok: set[str]) -> str:
    detail = _check_file(root, name, entry, check_hashes)
    ok.add(name)
    return detail


def _run(
    path: Path, *, check_hashes: bool, check_model: bool, stop_on_failure: bool
) -> tuple[list[CheckResult], dict[str, Any]]:
    state: dict[str, Any] = {}
    results: list[CheckResult] = []
    for name, check in _checks(path, check_hashes, check_model, state):
        if check is None:
            results.append(CheckResult(name, "skipped", "skipped: the file check failed"))
            continue
        try:
            detail = check()
        except BundleError as exc:
            if stop_on_failure:
                raise
            results.append(CheckResult(name, "failed", str(exc)))
            continue
        results.append(CheckResult(name, "ok", detail))
    return results, state


def load_bundle(path: Path, *, check_hashes: bool = True, check_model: bool = True) -> Bundle:
    """Verify the bundle at ``path`` and return it; BundleError names the first problem found.

    ``check_hashes=False`` still checks sizes and git-lfs pointers (cheap) but skips SHA-256;
    ``check_model=False`` skips opening the ONNX files (the backend that runs them checks I/O again).
    """
    _results, state = _run(path, check_hashes=check_hashes, check_model=check_model, stop_on_failure=True)
    return Bundle(root=Path(path), manifest=state["manifest"], preprocess_config=state["preprocess"])


def verify_bundle(path: Path, *, check_hashes: bool = True) -> VerificationReport:
    """Run every check on the bundle at ``path`` and report each one (never raises for a bad bundle)."""
    results, _state = _run(path, check_hashes=check_hashes, check_model=True, stop_on_failure=False)
    return VerificationReport(path=Path(path), checks=tuple(results))

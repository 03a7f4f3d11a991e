"""Inference backends by name: ``create_backend("onnxruntime", model_path, **options)``.

Backends register themselves with ``@register_backend(name)``. The built-in ones live in modules
imported only when first asked for, so ``import edge_ad.backends`` never pulls in onnxruntime or
TensorRT (the Jetson image may lack one of them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge_ad.backends.base import InferenceBackend, TensorSpec
from edge_ad.errors import ConfigError
from edge_ad.registry import Registry

__all__ = ["InferenceBackend", "TensorSpec", "available_backends", "create_backend", "register_backend"]

BackendFactory = Callable[..., InferenceBackend]
F = TypeVar("F", bound=BackendFactory)

# name -> module that registers it on import.
_BUILTIN_MODULES = {
    "onnxruntime": "edge_ad.backends.onnxruntime",
    "tensorrt": "edge_ad.backends.tensorrt",
}
_REGISTRY: Registry[BackendFactory] = Registry("backend")


def register_backend(name: str) -> Callable[[F], F]:
    """Class/function decorator adding a backend factory ``factory(model_path, **options)`` under ``name``."""
    return _REGISTRY.register(name)  # type: ignore[return-value]


def available_backends() -> list[str]:
    """Names that ``create_backend`` accepts (built-in ones whether or not their library is installed)."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def create_backend(name: str, model_path: Path, **options: Any) -> InferenceBackend:
    """Open ``model_path`` with backend ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[name])
        except ModuleNotFoundError as exc:
            raise ConfigError(f"backend {name!r} is not available here: {exc}") from exc
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r} (known: {', '.join(available_backends())})")
    return _REGISTRY[name](Path(model_path), **options)

"""Frame sources addressed by URI: ``folder:DIR``, ``synthetic[:SEED]``, ``realsense[:SERIAL]``, ``bag:FILE``.

Importing this package registers every source module that exists; the camera libraries
themselves (pyrealsense2) are imported only when such a source is opened.
"""

from __future__ import annotations

import importlib

from edge_ad.sources.base import (
    FrameSource,
    SourceBase,
    SourceExhausted,
    SourceInfo,
    known_schemes,
    open_source,
    parse_uri,
    register_source,
)

# Modules that register a scheme when imported. A module not written yet is skipped, so
# source kinds can land one at a time (same rule as edge_ad.cli.COMMAND_MODULES).
SOURCE_MODULES = (
    "edge_ad.sources.folder",
    "edge_ad.sources.synthetic",
    "edge_ad.sources.realsense",
    "edge_ad.sources.bag",
)


def _register_all() -> None:
    for name in SOURCE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise


_register_all()

__all__ = [
    "FrameSource",
    "SourceBase",
    "SourceExhausted",
    "SourceInfo",
    "known_schemes",
    "open_source",
    "parse_uri",
    "register_source",
]

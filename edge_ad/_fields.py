"""Type-check and normalise the fields of a frozen config dataclass at construction time.

``typed_data.load_dataclass`` checks plain data on the way in from YAML/JSON; this applies the
same rules to a dataclass built directly in code, so that ``ForegroundConfig(roi=[0, 0, 1, 1])``
and ``ForegroundConfig.from_dict({...})`` end up as the same, hashable value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, get_type_hints

from edge_ad.errors import ConfigError, EdgeAdError
from edge_ad.typed_data import load_value


def coerce_fields(obj: Any, error: type[EdgeAdError] = ConfigError) -> None:
    """Check every field of dataclass ``obj`` against its annotation; lists become tuples.

    Nested dataclass fields may hold an instance (kept) or a mapping (loaded). Raises ``error``
    naming ``ClassName.field``.
    """
    cls = type(obj)
    hints = get_type_hints(cls)
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            continue
        path = f"{cls.__name__}.{field.name}"
        object.__setattr__(obj, field.name, load_value(hints[field.name], value, error=error, path=path))


def check_range(
    owner: str,
    name: str,
    value: float,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
) -> None:
    """Raise ConfigError ``owner.name: must be ...`` unless ``low <= value <= high`` (``low < value`` if open)."""
    below = value <= low if low_open else value < low
    if below or value > high:
        bounds = []
        if not math.isinf(low):
            bounds.append(f"> {low:g}" if low_open else f">= {low:g}")
        if not math.isinf(high):
            bounds.append(f"<= {high:g}")
        raise ConfigError(f"{owner}.{name}: must be {' and '.join(bounds)}, got {value!r}")

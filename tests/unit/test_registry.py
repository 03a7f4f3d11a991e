from __future__ import annotations

import warnings

import pytest

from edge_ad.errors import ConfigError
from edge_ad.registry import Registry


def test_register_lookup_and_names() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def make_b() -> str:
        return "b"

    reg.register("a")(len)
    assert reg.names() == ["a", "b"]
    assert reg.lookup("b") is make_b
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; known: a, b"):
        reg.lookup("c")
    with pytest.raises(ConfigError, match=r"no such thing 'c'"):
        reg.lookup("c", "no such thing")


def test_second_registration_warns_and_wins_but_same_factory_is_silent() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("a")(len)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.register("a")(len)  # the same factory again (a module re-import) is not a collision
    with pytest.warns(RuntimeWarning, match="widget 'a' registered twice"):
        reg.register("a")(abs)
    assert reg["a"] is abs


def test_copy_is_independent_and_keeps_kind() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("a")(len)
    clone = reg.copy()
    clone.register("b")(abs)
    assert "b" not in reg and clone.kind == "widget" and isinstance(clone, Registry)

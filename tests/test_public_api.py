"""The public API does not shrink: every name in `snapshots/public_names.txt` (taken
before the package was reorganised) is still reachable from `tt`.

Run this module as a script to print the names reachable today.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import tfx_transfer as tt

SNAPSHOT = Path(__file__).parent / "snapshots" / "public_names.txt"
PUBLIC_MODULES = (
    "data",
    "data.shapes",
    "demo",
    "detection",
    "plots",
    "surgery",
    "training",
    "tuning",
)


def public_names(module: types.ModuleType) -> list[str]:
    """The module's `__all__`, or the public functions and classes it defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def reachable_names() -> list[str]:
    names = [f"tt.{name}" for name in public_names(tt)]
    for dotted in PUBLIC_MODULES:
        module = tt
        for part in dotted.split("."):
            module = getattr(module, part)
        names += [f"tt.{dotted}.{name}" for name in public_names(module)]
    return sorted(set(names))


def resolve(dotted: str) -> object:
    target: object = tt
    for part in dotted.split(".")[1:]:
        target = getattr(target, part)
    return target


def test_every_snapshot_name_is_still_reachable():
    missing = []
    for dotted in SNAPSHOT.read_text().split():
        try:
            resolve(dotted)
        except AttributeError:
            missing.append(dotted)
    assert not missing, f"public names that disappeared: {missing}"


if __name__ == "__main__":
    print("\n".join(reachable_names()))

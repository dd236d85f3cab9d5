"""Lazy public names for package namespaces (PEP 562), from one source of truth.

A package lists its public names as ordinary imports inside `if TYPE_CHECKING:`
(so type checkers and documentation tools see them) and calls
`lazy_attributes(__name__)`; each name is then imported from the module that
import names, on first use.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`, from its `TYPE_CHECKING` imports.

    Example:

    >>> __getattr__, __dir__, __all__ = lazy_attributes(__name__)
    >>> if TYPE_CHECKING:
    ...     from tfx_transfer.training.fine_tune import fine_tune
    """
    module = sys.modules[package]
    table = static_imports(module.__file__)
    namespace = module.__dict__
    module.__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:  # a submodule not listed (`tt.data.detection`), else no such name
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            source = package
        value = _resolve(source, name, package)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__, sorted(table)


class _LazyPackage(types.ModuleType):
    """A package whose public names stay what its imports say.

    Importing a submodule binds it as an attribute of its package; where a public
    name is a function of the same name as its submodule (`tt.training.fine_tune`
    in `tfx_transfer/training/fine_tune.py`), that binding is skipped so that the
    name keeps meaning the function (`importlib.import_module` still finds the module).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            source = static_imports(self.__file__).get(name)
            if source == value.__name__:  # the public name is the module's own attribute
                return
        super().__setattr__(name, value)


@functools.cache
def static_imports(path: str) -> dict[str, str]:
    """{name: module it is imported from} for the imports under `if TYPE_CHECKING:`."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    table = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    for alias in statement.names:
                        table[alias.asname or alias.name] = str(statement.module)
    return table


def _resolve(source: str, name: str, package: str) -> Any:
    """`source.name`: an attribute of module `source`, or its submodule `name`."""
    if source != package:
        module = importlib.import_module(source)
        if hasattr(module, name):
            return getattr(module, name)
    return importlib.import_module(f"{source}.{name}")

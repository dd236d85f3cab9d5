"""The package's shape: imports flow one way, and Keras internals have one door.

Layers, bottom to top (a module may import its own layer and the ones below):
core <- backbones <- heads <- classification / detection / segmentation <- surgery
<- training <- evaluation / export <- app. The three task packages do not import
each other; `data` imports only `core` (and itself). Imports inside functions count.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tfx_transfer"
LAYERS = {
    "core": 0,
    "backbones": 1,
    "heads": 2,
    "classification": 3,
    "detection": 3,
    "segmentation": 3,
    "surgery": 4,
    "training": 5,
    "evaluation": 6,
    "export": 6,
    "app": 7,
}
INTERNAL_MODULES = ("keras.src", "tensorflow.python")
GRAPH_INTERNALS = ("_inbound_nodes", "_keras_history", "_flatten_layers")


@functools.cache
def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `tree`, relative ones resolved."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names += [(node.lineno, base)]
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def part(module: str) -> str | None:
    """The top-level part of the package a module belongs to ("data" for tfx_transfer.data...)."""
    pieces = module.split(".")
    if pieces[0] != "tfx_transfer" or len(pieces) < 2:
        return None
    return pieces[1]


def type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def test_imports_flow_one_way():
    known = set(modules())
    problems = []
    for module, tree in modules().items():
        source = part(module)
        if source is None:  # the package root re-exports everything, lazily
            continue
        static_only = type_checking_lines(tree)
        for line, target in imported(tree, module):
            if line in static_only or target not in known and target.rsplit(".", 1)[0] not in known:
                continue
            destination = part(target)
            if destination == source or (destination not in LAYERS and destination != "data"):
                continue  # its own part, or the package root's __version__
            if source == "data" or destination == "data":
                if source == "data" and destination != "core":
                    problems.append(f"{module}:{line} imports {target} (data imports only core)")
                continue
            if LAYERS.get(destination, 99) > LAYERS.get(source, -1) or (
                LAYERS[destination] == LAYERS[source]
            ):
                problems.append(f"{module}:{line} imports {target} (a layer above or beside it)")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules():
    graph = {
        module: {
            target
            for line, target in imported(tree, module)
            if target in modules() and line not in type_checking_lines(tree)
        }
        for module, tree in modules().items()
    }
    # Package __init__ modules re-export their submodules; a cycle through them is not one.
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target] if target in path else [target])
            elif state.get(target) is None:
                visit(target, [*path, target])
        state[node] = 2

    for module in graph:
        if state.get(module) is None:
            visit(module, [module])
    assert not cycles, cycles


def test_keras_and_tensorflow_internals_only_in_compat():
    offenders = []
    for module, tree in modules().items():
        if module == "tfx_transfer.core.compat":
            continue
        for line, target in imported(tree, module):
            if target.startswith(INTERNAL_MODULES):
                offenders.append(f"{module}:{line} imports {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith(
                    INTERNAL_MODULES
                ):  # importlib.import_module("keras.src...")
                    offenders.append(f"{module}:{node.lineno} names {node.value}")
    assert not offenders, offenders


def test_graph_internals_only_in_graph_and_compat():
    offenders = [
        f"{module}:{node.lineno} uses .{node.attr}"
        for module, tree in modules().items()
        if module not in ("tfx_transfer.core.graph", "tfx_transfer.core.compat")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in GRAPH_INTERNALS
    ]
    assert not offenders, offenders


def test_top_level_holds_only_the_dispatchers():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "evaluation.py", "export.py"]
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir()} >= set(LAYERS) - {
        "evaluation",
        "export",
    }

"""The README's Python code blocks, so that the documentation cannot rot.

The rule, for every ```python block of README.md:

1. it compiles, and every `tt.` name it uses (and every name it imports from
   `tfx_transfer`) exists, and each call to one of them binds to its signature:
   the positional argument count and the keyword names (fast, no execution);
2. it is executed, in README order, in one namespace shared by all blocks (as a
   reader following along would), in a temporary working directory, after `PRELUDE`
   below, which stands in for the reader's own objects: a tiny `model` (classes
   daisy, rose, tulip), its `data`, `names`, `x`, `y`, `image_array` and a file
   `rose.jpg`. A ```yaml block whose first line is `# <file name>` is written to
   that file when reached, so that later blocks can read it (`fine_tune.yaml`).

A block that cannot run offline in CI (ImageNet weights, TFDS downloads, the
reader's own files) says so on the line before its opening fence, and is then
only checked as in 1:

    <!-- readme-test: skip, needs ImageNet weights -->
    ```python

Until README.md carries those markers, `PENDING_SKIPS` below names the blocks to
skip by their first line; delete each entry when its marker is in the README
(a test fails if an entry is left over).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")
SKIP_MARKER = re.compile(r"^<!--\s*readme-test:\s*skip\b[,:\s]*(?P<reason>.*?)\s*-->$")
FILE_COMMENT = re.compile(r"^#\s*(?P<name>[\w.-]+\.ya?ml)\s*$")

# First line of a block -> why it cannot run here (to become a README marker).
PENDING_SKIPS: dict[str, str] = {}

PRELUDE = """
import keras
import numpy as np
import tensorflow as tf

import tfx_transfer as tt

names = ["daisy", "rose", "tulip"]
x = np.random.default_rng(0).uniform(0, 255, (24, 32, 32, 3)).astype("float32")
y = np.arange(24) % 3
data = tt.data.arrays(x, y, class_names=names, batch_size=8, validation_split=0.25, seed=0)
model = tt.build_classifier(
    "mobilenet_v3_small", 3, class_names=names, weights=None, input_shape=(32, 32, 3),
    hidden_units=(16,),
)
image_array = x[0]
tf.io.write_file("rose.jpg", tf.io.encode_jpeg(x[1].astype("uint8")))
"""


@dataclasses.dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    marker: str | None  # the skip reason given in the README, if any

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code else ""

    @property
    def skip(self) -> str | None:
        return self.marker if self.marker is not None else PENDING_SKIPS.get(self.first_line)

    @property
    def file_name(self) -> str | None:
        """The file a ```yaml block is written to (its `# name.yaml` first line)."""
        match = FILE_COMMENT.match(self.first_line)
        return match["name"] if self.language == "yaml" and match else None


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        previous = next(
            (lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), ""
        )
        marker = SKIP_MARKER.match(previous)
        blocks.append(
            Block(
                language=opening["language"],
                code="\n".join(lines[index + 1 : end]),
                line=index + 1,
                marker=(marker["reason"] or "marked skip") if marker else None,
            )
        )
        index = end + 1
    return blocks


BLOCKS = readme_blocks()
PYTHON = [block for block in BLOCKS if block.language == "python"]


def block_id(block: Block) -> str:
    return f"README.md:{block.line}"


def test_the_readme_has_python_blocks_to_check():
    assert len(PYTHON) >= 10
    assert any(block.file_name for block in BLOCKS), "the fine_tune.yaml block"


def test_pending_skips_name_unmarked_blocks():
    """An entry whose block is gone, or now marked in the README, must be deleted."""
    unmarked = {block.first_line for block in PYTHON if block.marker is None}
    leftover = [line for line in PENDING_SKIPS if line not in unmarked]
    assert not leftover, f"delete from PENDING_SKIPS (marked in README.md or gone): {leftover}"


@pytest.mark.parametrize("block", PYTHON, ids=block_id)
def test_block_compiles_and_uses_existing_api(block):
    tree = ast.parse(block.code, filename=block_id(block))
    compile(tree, block_id(block), "exec")
    for name, call, target in api_uses(tree):
        if call is None or any(isinstance(a, ast.Starred) for a in call.args):
            continue
        if any(keyword.arg is None for keyword in call.keywords):  # **kwargs
            continue
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):  # no signature to check
            continue
        try:
            signature.bind(*call.args, **{keyword.arg: None for keyword in call.keywords})
        except TypeError as error:
            pytest.fail(f"{block_id(block)} line {call.lineno}: {name}(...) does not bind: {error}")


def api_uses(tree: ast.Module):
    """(dotted name, the Call node or None, the object) for each use of the toolkit's names.

    Fails the test for a name that does not exist."""
    import tfx_transfer

    known = {"tt": tfx_transfer}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfx_transfer"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                known[alias.asname or alias.name] = getattr(module, alias.name)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        parts = dotted(node)
        if not parts or parts[0] not in known:
            continue
        target = known[parts[0]]
        for depth, part in enumerate(parts[1:], start=1):
            assert hasattr(target, part), f"{'.'.join(parts[:depth])} has no attribute {part!r}"
            target = getattr(target, part)
        yield ".".join(parts), calls.get(id(node)), target


def dotted(node: ast.AST) -> list[str] | None:
    """["tt", "data", "arrays"] for `tt.data.arrays`; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


class ReadmeSession:
    """Runs the README's blocks in order, each once, in one namespace and directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.namespace: dict = {"__name__": "readme"}
        self.done = 0
        with contextlib.chdir(directory):
            exec(compile(PRELUDE, "PRELUDE", "exec"), self.namespace)

    def run_through(self, block: Block) -> None:
        """Runs every block up to and including `block` that has not run yet."""
        stop = BLOCKS.index(block) + 1
        while self.done < stop:
            current = BLOCKS[self.done]
            self.done += 1  # a failing block is not run again by later tests
            with contextlib.chdir(self.directory):
                if current.file_name:
                    Path(current.file_name).write_text(current.code + "\n", encoding="utf-8")
                elif current.language == "python" and current.skip is None:
                    exec(compile(current.code, block_id(current), "exec"), self.namespace)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> ReadmeSession:
    return ReadmeSession(tmp_path_factory.mktemp("readme"))


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON, ids=block_id)
def test_block_runs(block, session):
    if block.skip is not None:
        pytest.skip(f"{block_id(block)}: {block.skip}")
    session.run_through(block)

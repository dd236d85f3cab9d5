"""The notebooks in examples/: ready for Colab (badge, install cell, settings from
TFX_TRANSFER_TINY, no stored outputs, no local paths), and each runs end to end with
tiny settings through nbclient, in a fresh kernel on this interpreter.

    pytest tests/test_notebooks.py -m "not slow"   # the static checks, in a second
    pytest tests/test_notebooks.py                 # also executes every notebook
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
COLAB_URL = "https://colab.research.google.com/github/tfx-transfer/tfx_transfer/blob/main/examples/"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
INSTALL = re.compile(
    r"try:\n\s+import tfx_transfer.*\nexcept ImportError:\n\s+%pip install -q tfx_transfer\b"
)
TINY_SETTING = 'os.environ.get("TFX_TRANSFER_TINY") == "1"'
# A string literal holding an absolute or home-relative path, in a code cell.
ABSOLUTE_PATH_LITERAL = re.compile(r"""(?<![\w.])[rbf]?["'](?:/|~|[A-Za-z]:[\\/])""")
# Paths of a particular machine, anywhere in the file (cells and metadata).
MACHINE_PATH = re.compile(r"/home/|/Users/|/root/|/tmp/|/content/|[A-Za-z]:\\\\")
CELL_TIMEOUT_S = 600

# What each notebook must print with tiny settings: (regular expression over its
# stdout, what every captured group must be: a fraction 0..1, or a difference < 1e-4).
FRACTION, SMALL = "fraction", "small"
EXPECTED = {
    "classification_transfer.ipynb": [
        (r"^3 classes: \['blue_triangle', 'green_square', 'red_circle'\]$", None),
        (r"^top1\s+(\d\.\d+)$", FRACTION),
        (
            r"^reloaded, with its class names: \('blue_triangle', 'green_square', 'red_circle'\)$",
            None,
        ),
    ],
    "detection.ipynb": [
        (
            r"^classes: \('red_circle', 'green_square', 'blue_triangle', 'blue_crescent', "
            r"'red_arrow'\)$",
            None,
        ),
        (r"^map50\s+(\d\.\d+)$", FRACTION),
        (r"^old_map50\s+(\d\.\d+)$", FRACTION),
        (r"^new_map50\s+(\d\.\d+)$", FRACTION),
        (r"^old_map_change\s+-?\d\.\d+$", None),
    ],
    "expand_90_to_92.ipynb": [
        (r"^90 -> 92 classes: kernel \(1024, 92\), ColumnBlockDense with blocks \[90, 2\]$", None),
        (r"^old columns unchanged after training: True$", None),
        (r"^\| expanded \(92 classes\) \| (\d\.\d+) \| (\d\.\d+) \|$", FRACTION),
        (r"^merged: Dense \(1024, 92\) max difference (\S+)$", SMALL),
    ],
    "export_and_query.ipynb": [
        (r"^labels\.txt: 90 class names", None),
        (r"^signatures: \['serving_bytes', 'serving_default'\]$", None),
        (r"^\s+red_circle -> \[", None),
        (r"^max difference between the signatures: (\S+)$", SMALL),
        (r"^No SERVING_URL set: the REST query is skipped\.$", None),
    ],
}


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def code_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_every_notebook_is_checked():
    assert {path.name for path in NOTEBOOKS} == set(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_ready_for_colab(path):
    notebook = read(path)
    nbformat.validate(notebook)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title first"
    assert f"]({COLAB_URL}{path.name})" in first.source, "Open in Colab badge with this name"
    assert BADGE_IMAGE in first.source
    sources = code_cells(notebook)
    assert any(INSTALL.search(source) for source in sources), "guarded %pip install cell"
    assert any(TINY_SETTING in source for source in sources), "settings from TFX_TRANSFER_TINY"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_has_no_local_paths_and_compiles(path):
    found = MACHINE_PATH.findall(path.read_text(encoding="utf-8"))
    assert not found, f"machine-specific paths in {path.name}: {found}"
    transform = TransformerManager().transform_cell
    for index, source in enumerate(code_cells(read(path))):
        literal = ABSOLUTE_PATH_LITERAL.search(source)
        assert literal is None, f"absolute path in code cell {index}: {source[literal.start() :]}"
        compile(transform(source), f"{path.name}:cell{index}", "exec")


@pytest.fixture(scope="module")
def kernel_spec_dir(tmp_path_factory) -> Path:
    """A kernel spec that runs ipykernel on this very interpreter (the venv's), whatever
    other "python3" kernels the machine has registered."""
    root = tmp_path_factory.mktemp("kernels")
    (root / "tfx-transfer-tests").mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tfx_transfer tests",
        "language": "python",
    }
    (root / "tfx-transfer-tests" / "kernel.json").write_text(json.dumps(spec))
    return root


def stdout_of(notebook) -> str:
    return "".join(
        output.text
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_with_tiny_settings(path, kernel_spec_dir, tmp_path):
    notebook = read(path)
    manager = KernelManager(
        kernel_name="tfx-transfer-tests",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_spec_dir)]),
    )
    env = {**os.environ, "TFX_TRANSFER_TINY": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("TF_SERVING_URL", "MPLBACKEND"):  # no real server; the kernel's own backend
        env.pop(name, None)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute(env=env)  # raises CellExecutionError, with the cell and traceback

    text = stdout_of(notebook)
    for pattern, kind in EXPECTED[path.name]:
        match = re.search(pattern, text, re.MULTILINE)
        assert match, f"{path.name} printed nothing matching {pattern!r}:\n{text[-3000:]}"
        for value in match.groups():
            if kind == FRACTION:
                assert 0.0 <= float(value) <= 1.0, match.group(0)
            elif kind == SMALL:
                assert float(value) < 1e-4, match.group(0)
    assert not list(tmp_path.glob("**/.tmp-*")), "an export left a temporary directory"

"""examples/separate_branch.py (plain expansion vs a separate class branch) runs end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "separate_branch.py"
HEADER = (
    "| model | route | parameters | +% vs plain | FLOPs (1 image) | +% vs plain "
    "| trainable parameters | new-class quality | old-class quality | training (s) |"
)


@pytest.mark.slow
def test_separate_branch_example_runs_with_tiny_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert HEADER in lines
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 10 and cells[1].startswith(("(a)", "(b)")):
            rows[(cells[0].split(",")[0], cells[1])] = cells
    assert set(rows) == {
        (kind, route)
        for kind in ("classifier", "RetinaNet")
        for route in ("(a) plain expansion", "(b) separate branch")
    }
    for (_, route), cells in rows.items():
        parameters_change, flops_change = cells[3], cells[5]
        if route.startswith("(a)"):
            assert parameters_change == flops_change == "(reference)"
        else:
            assert parameters_change.startswith("+") and flops_change.startswith("+")
        new_quality, old_quality = (float(cell.split()[0]) for cell in cells[7:9])
        assert 0.0 <= new_quality <= 1.0 and 0.0 <= old_quality <= 1.0
        assert float(cells[9]) > 0
    assert "Machine: " in result.stdout

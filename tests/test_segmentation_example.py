"""examples/segmentation_expand.py (a segmenter learns 2 new classes) runs end to end."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "segmentation_expand.py"


@pytest.mark.slow
def test_segmentation_example_runs_with_tiny_settings():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if "|" in line}
    assert {"(a) freeze_old", "(b) train, restore_old_classes"} <= set(rows)
    for name in ("(a) freeze_old", "(b) train, restore_old_classes"):
        old, new = (float(cell) for cell in rows[name].split("|")[2:4])
        assert 0.0 <= old <= 1.0 and 0.0 <= new <= 1.0
    assert "SavedModel (class_ids and probabilities per pixel)" in result.stdout

"""examples/faster_rcnn_90_to_92.py (a Faster R-CNN learns 2 new classes) runs end to end."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "faster_rcnn_90_to_92.py"


@pytest.mark.slow
def test_faster_rcnn_example_runs_with_tiny_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "90 classes: box_classifier 1024x91, box_regressor 1024x360" in lines
    assert "92 classes: box_classifier 1024x93, box_regressor 1024x368" in lines
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in lines if line[:2] == "| "}
    assert {"90 classes", "92 classes (old frozen)"} <= set(rows)
    old_map50, new_map50, old_map = (float(cell) for cell in rows["92 classes (old frozen)"])
    reference_map50, reference_map = float(rows["90 classes"][0]), float(rows["90 classes"][2])
    values = (old_map50, new_map50, old_map, reference_map50, reference_map)
    assert all(0.0 <= value <= 1.0 for value in values)
    exported = result.stdout.split("SavedModel with decoding and NMS: ")[1].split()[0]
    labels = (Path(exported) / "assets" / "labels.txt").read_text().split()
    assert len(labels) == 92 and labels[-2:] == ["blue_crescent", "red_arrow"]

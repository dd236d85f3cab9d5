import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.data import shapes


@pytest.fixture(scope="module")
def base():
    return tt.demo.base_model()


def test_base_model_is_the_seed_scenario(base):
    assert base.get_layer("predictions").kernel.shape == (1024, 90)
    assert base.input_shape == (None, 64, 64, 3)
    info = tt.class_info(base)
    assert info.class_names == shapes.BASE_CLASSES
    assert info.activation is None  # logits
    assert os.path.realpath("saved_models/shapes90_mobilenet_v3_small.keras") == str(
        tt.demo.base_model_path().resolve()
    )


@pytest.mark.slow
def test_base_model_accuracy_is_good_but_imperfect(base):
    """The README states 60-90% test accuracy; a sample of 20 images per class."""
    images, labels = shapes.arrays(shapes.BASE_CLASSES, 20, split="test")
    predicted = base.predict(images.astype("float32"), batch_size=256, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    assert 0.6 <= accuracy <= 0.9, accuracy


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tfx_transfer.app.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=900,
    )


@pytest.mark.slow
def test_demo_runs_end_to_end_with_tiny_settings(tmp_path):
    result = _cli(
        "demo", "--tiny", "--workdir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "sm")
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "run" / "report.json").read_text())
    for key in ("old_accuracy", "new_accuracy", "reference_old_accuracy"):
        assert 0.0 <= written["old_new"][key] <= 1.0
    for plot in ("history", "confusion", "per_class"):
        assert (tmp_path / "run" / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    report = written["extra"]
    assert report["classes"] == {"old": 90, "new": sorted(shapes.NOVEL_CLASSES)}
    assert report["kernel"] == [1024, 92]
    for key in ("old_accuracy", "new_accuracy", "reference_old_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    model = tt.load_model(report["model"])
    assert tt.class_info(model).class_names == shapes.BASE_CLASSES + tuple(
        sorted(shapes.NOVEL_CLASSES)
    )
    assert type(model.get_layer("predictions")).__name__ == "Dense"
    base = tt.demo.base_model()  # the old columns came through training bit for bit
    kernel, old_kernel = model.get_layer("predictions").kernel, base.get_layer("predictions").kernel
    assert np.array_equal(np.asarray(kernel)[:, :90], np.asarray(old_kernel))
    assert "| expanded (92 classes) |" in result.stdout
    assert report["export"] == str(tmp_path / "sm" / "1")
    labels = (tmp_path / "sm" / "1" / "assets" / "labels.txt").read_text().splitlines()
    assert labels[-2:] == sorted(shapes.NOVEL_CLASSES) and len(labels) == 92

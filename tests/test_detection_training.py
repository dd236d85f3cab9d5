"""tt.fine_tune and set_trainable on detectors: stages, the classifier part,
old/new mAP after each stage of an expanded detector, refused options."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.surgery import locate_classifier
from tfx_transfer.training import Stage

CLASSES = ["red_circle", "green_square", "blue_triangle"]


def detector(arch, classes=CLASSES):
    return tt.build_detector(
        arch, "mobilenet_v3_small", len(classes), weights=None, input_shape=(64, 64, 3),
        class_names=classes,
    )  # fmt: skip


def data(classes=CLASSES, images=4):
    return tt.data.synthetic_detection(
        images, image_size=64, classes=classes, max_objects=1, validation_images=2, batch_size=2
    )


@pytest.mark.parametrize("arch", ["retinanet", "yolov8"])
def test_classifier_part_trains_exactly_the_class_convolutions(arch):
    model = detector(arch)
    tt.training.set_trainable(model, "classifier")
    expected = {id(w) for layer in locate_classifier(model).layers for w in layer.weights}
    assert {id(w) for w in model.trainable_weights} == expected
    assert len(expected) == {"retinanet": 2, "yolov8": 6}[arch]  # kernel + bias per conv
    tt.training.set_trainable(model, "head")
    backbone = tt.training.find_backbone(model)
    assert not backbone.trainable_weights and len(model.trainable_weights) > len(expected)


@pytest.mark.slow
def test_fine_tune_an_expanded_retinanet_reports_old_and_new_map_per_stage():
    keras.utils.set_random_seed(0)
    base = detector("retinanet")
    expanded = tt.expand_classes(base, new_class_names=["red_arrow"], freeze_old=True)
    split = data([*CLASSES, "red_arrow"])
    backbone_before = [w.numpy().copy() for w in tt.training.find_backbone(expanded).weights]
    stages = [Stage(train="head", epochs=1, learning_rate=1e-3)]
    model, history = tt.fine_tune(expanded, split, stages=stages, teacher=base, verbose=0)
    assert len(history["stage1_loss"]) == 1 and np.isfinite(history["stage1_loss"][0])
    for key in ("old_map", "new_map", "old_map_change"):
        assert len(history[f"stage1_{key}"]) == 1
    report = tt.evaluate(model, split.validation, reference=base)
    assert history["stage1_old_map"] == [report.old_map]
    assert history["stage1_old_map_change"] == [report.old_map_change]
    backbone_after = tt.training.find_backbone(model).weights
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(backbone_before, backbone_after))


@pytest.mark.parametrize(
    "stage, message",
    [
        (Stage(label_smoothing=0.1), "Stage 1: label_smoothing=0.1 is for classifiers"),
        (Stage(class_weight="balanced"), "class_weight='balanced' is for classifiers"),
        (Stage(cache_features=True), "cache_features=True is for classifiers"),
    ],
)
def test_classifier_only_options_are_refused_for_detectors(stage, message):
    with pytest.raises(ValueError, match=message):
        tt.fine_tune(detector("retinanet"), data(images=2), stages=[stage], verbose=0)


def test_pixel_only_augmentation_is_refused_for_detectors():
    with pytest.raises(ValueError, match="moves pixels but not boxes.*augment_detection"):
        tt.fine_tune(detector("yolov8"), data(images=2), augmentation={"flip": 1}, verbose=0)


@pytest.mark.slow
def test_detection_example_runs_with_tiny_settings(tmp_path):
    script = Path(__file__).resolve().parents[1] / "examples" / "detection_90_to_92.py"
    result = subprocess.run(
        [sys.executable, str(script), "--tiny"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 92 classes")]
    old_map50, new_map50, old_map = (float(cell) for cell in rows[0].split("|")[2:5])
    assert all(0.0 <= value <= 1.0 for value in (old_map50, new_map50, old_map))
    exported = result.stdout.split("SavedModel with decoding and NMS: ")[1].split()[0]
    labels = (Path(exported) / "assets" / "labels.txt").read_text().split()
    assert len(labels) == 92 and labels[-2:] == ["blue_crescent", "red_arrow"]

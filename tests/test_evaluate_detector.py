"""`tt.evaluate` on detection data: COCO mAP, old vs new classes, the change
against the detector before expansion (known answers with scripted detectors)."""

import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt

BOXES = np.array([[[2, 2, 10, 10], [20, 20, 8, 8]], [[5, 5, 12, 12], [-1, -1, -1, -1]]], "float32")
CLASSES = np.array([[0, 2], [1, -1]], "float32")  # image 1: one box and padding


class ScriptedDetector:
    """Answers `predict` with fixed detections, like a KerasCV detector would."""

    bounding_box_format = "xywh"

    def __init__(self, class_names, detections, history=()):
        self.class_metadata = tt.ClassMetadata(
            tuple(class_names), multi_label=True, history=tuple(history)
        )
        self.detections = detections

    def predict(self, images, verbose=0):
        count = len(images)
        return {key: value[:count] for key, value in self.detections.items()}


def detections(keep):
    """The ground truth as detections (score 0.9), keeping classes in `keep`."""
    classes = np.where(np.isin(CLASSES, keep), CLASSES, -1)
    return {
        "boxes": BOXES,
        "classes": classes,
        "confidence": np.where(classes >= 0, 0.9, -1).astype("float32"),
        "num_detections": (classes >= 0).sum(axis=1),
    }


def data():
    images = np.zeros((2, 32, 32, 3), "float32")
    batch = {"images": images, "bounding_boxes": {"boxes": BOXES, "classes": CLASSES}}
    return tf.data.Dataset.from_tensors(batch)


def test_old_new_map_and_forgetting_against_the_reference():
    base = ScriptedDetector(["a", "b"], detections([0, 1]))  # perfect on its 2 classes
    expansion = {"operation": "expand_classes", "old_classes": 2, "new_classes": 1}
    # After expansion: finds the new class and "a", has forgotten "b".
    expanded = ScriptedDetector(["a", "b", "c"], detections([0, 2]), history=[expansion])
    report = tt.evaluate(expanded, data(), reference=base)
    assert isinstance(report, tt.DetectionReport)
    assert report.old_classes == 2
    assert report.per_class == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert (report.old_map, report.new_map) == (0.5, 1.0)
    assert report.reference_old_map == report.reference_old_map50 == 1.0
    assert report.old_map_change == -0.5


def test_old_classes_given_and_no_reference():
    model = ScriptedDetector(["a", "b", "c"], detections([0, 1, 2]))
    report = tt.evaluate(model, data(), old_classes=["a"])
    assert (report.map, report.old_map, report.new_map) == (1.0, 1.0, 1.0)
    assert report.reference_old_map is None and report.old_map_change is None


def test_a_raw_model_output_is_refused_with_the_reason():
    class Raw(ScriptedDetector):
        def predict(self, images, verbose=0):
            return np.zeros((len(images), 3))

    with pytest.raises(ValueError, match="model.predict must return KerasCV detections"):
        tt.evaluate(Raw(["a", "b", "c"], {}), data())

"""COCO mAP through pycocotools on hand-made cases with known answers."""

import numpy as np
import pytest
import tensorflow as tf

from tfx_transfer.data.detection import synthetic_detection
from tfx_transfer.detection.metrics import DetectionReport, coco_map, detection_predictions

# 2 images, 3 classes: image 0 has a class-0 and a class-1 box, image 1 a class-2 box.
TRUTH = {
    "boxes": [[[10, 10, 20, 20], [40, 40, 10, 30]], [[5, 5, 30, 30], [-1, -1, -1, -1]]],
    "classes": [[0, 1], [2, -1]],
}
NAMES = ["cat", "dog", "owl"]


def _predicted(boxes, classes, scores):
    return {"boxes": boxes, "classes": classes, "confidence": scores}


def test_perfect_predictions_give_one_everywhere():
    found = _predicted(TRUTH["boxes"], TRUTH["classes"], [[0.9, 0.8], [0.7, -1]])
    report = coco_map(TRUTH, found, class_names=NAMES)
    assert isinstance(report, DetectionReport)
    assert report.map == 1.0 and report.map50 == 1.0
    assert report.per_class == {"cat": 1.0, "dog": 1.0, "owl": 1.0}
    assert (report.num_images, report.num_ground_truth, report.num_predictions) == (2, 3, 3)


def test_class_zero_counts_like_any_other_class():
    truth = {"boxes": [[[10, 10, 20, 20]]], "classes": [[0]]}
    wrong = _predicted([[[10, 10, 20, 20]]], [[1]], [[0.9]])
    right = _predicted([[[10, 10, 20, 20]]], [[0]], [[0.9]])
    assert coco_map(truth, right, class_names=["zero", "one"]).per_class == {
        "zero": 1.0,
        "one": None,  # no ground truth: not measured, not in the mean
    }
    report = coco_map(truth, wrong, class_names=["zero", "one"])
    assert report.per_class == {"zero": 0.0, "one": None} and report.map == 0.0


def test_partial_overlap_counts_only_at_the_thresholds_it_reaches():
    truth = {"boxes": [[[0, 0, 10, 25]]], "classes": [[0]]}
    # IoU = 10*19 / (10*25) = 0.76: a match at IoU 0.50, 0.55, ..., 0.75 (6 of 10 thresholds)
    found = _predicted([[[0, 0, 10, 19]]], [[0]], [[0.9]])
    report = coco_map(truth, found)
    assert report.map50 == 1.0
    assert report.map == pytest.approx(0.6)
    assert report.class_names == ["0"]


def test_half_of_the_objects_found_and_a_class_without_predictions():
    truth = {"boxes": [[[0, 0, 10, 10], [50, 50, 10, 10], [20, 0, 10, 10]]], "classes": [[0, 0, 1]]}
    found = _predicted([[[0, 0, 10, 10]]], [[0]], [[0.9]])
    report = coco_map(truth, found, class_names=["a", "b"])
    # recall 0.5 at precision 1: 51 of the 101 recall points
    assert report.per_class["a"] == pytest.approx(51 / 101)
    assert report.per_class["b"] == 0.0
    assert report.map == pytest.approx(51 / 101 / 2)


def test_empty_images_and_false_positives_on_them():
    truth = {
        "boxes": [np.zeros((0, 4)), [[0, 0, 10, 10]], np.zeros((0, 4))],
        "classes": [[], [0], []],
    }
    perfect = _predicted(
        [np.zeros((0, 4)), [[0, 0, 10, 10]], np.zeros((0, 4))], [[], [0], []], [[], [0.5], []]
    )
    assert coco_map(truth, perfect).map == 1.0
    # a more confident false positive on an empty image halves the precision at full recall
    spurious = _predicted(
        [np.zeros((0, 4)), [[0, 0, 10, 10]], [[3, 3, 5, 5]]], [[], [0], [0]], [[], [0.5], [0.9]]
    )
    assert coco_map(truth, spurious).map == pytest.approx(0.5)
    nothing = _predicted([np.zeros((0, 4))] * 3, [[], [], []], [[], [], []])
    assert coco_map(truth, nothing).map == 0.0


def test_old_and_new_classes_reported_apart():
    found = _predicted(
        [[[10, 10, 20, 20], [0, 0, 5, 5]], [[5, 5, 30, 30]]], [[0, 1], [2]], [[0.9, 0.8], [0.7]]
    )
    report = coco_map(TRUTH, found, class_names=NAMES, old_classes=2)
    assert report.per_class == {"cat": 1.0, "dog": 0.0, "owl": 1.0}
    assert report.old_classes == 2
    assert report.old_map == 0.5 and report.new_map == 1.0
    assert report.old_map50 == 0.5 and report.new_map50 == 1.0
    assert report.map == pytest.approx(2 / 3)
    assert coco_map(TRUTH, found, class_names=NAMES, old_classes=["cat", "dog"]).old_map == 0.5
    text = report.table(per_class=True)
    lines = [line.split() for line in text.splitlines()]
    assert ["old_map", "0.5000"] in lines and ["new_map", "1.0000"] in lines
    assert ["dog", "AP", "0.0000", "AP50", "0.0000"] in lines
    assert '"new_map": 1.0' in report.to_json()


def test_keras_cv_predict_output_other_formats_and_errors():
    # KerasCV `predict`: dense (B, M) padded with -1, and num_detections
    found = {
        "boxes": np.array(
            [
                [[10, 10, 30, 30], [40, 40, 50, 70], [0, 0, 1, 1]],
                [[5, 5, 35, 35], [0, 0, 0, 0], [0, 0, 0, 0]],
            ],
            np.float32,
        ),
        "classes": np.array([[0, 1, 2], [2, -1, -1]], np.float32),
        "confidence": np.array([[0.9, 0.8, 0.1], [0.7, -1, -1]], np.float32),
        "num_detections": np.array([2, 1], np.int32),
    }
    truth = {
        "boxes": tf.ragged.constant(
            [[[10, 10, 30, 30], [40, 40, 50, 70]], [[5, 5, 35, 35]]], ragged_rank=1
        ),
        "classes": tf.ragged.constant([[0, 1], [2]]),
    }
    report = coco_map(truth, found, class_names=NAMES, bounding_box_format="xyxy")
    assert report.map == 1.0 and report.num_predictions == 3  # the third box is past num_detections
    with pytest.raises(ValueError, match="ground_truth has 2 images but predictions has 1"):
        coco_map(TRUTH, _predicted([[]], [[]], [[]]))
    with pytest.raises(ValueError, match="predictions needs scores under 'confidence' or 'scores'"):
        coco_map(TRUTH, {"boxes": TRUTH["boxes"], "classes": TRUTH["classes"]})
    with pytest.raises(ValueError, match="Class index 2 is out of range for 2 class_names"):
        coco_map(
            TRUTH,
            _predicted(TRUTH["boxes"], TRUTH["classes"], [[1, 1], [1, -1]]),
            class_names=["a", "b"],
        )


class _PerfectDetector:
    """Stands in for a KerasCV detector: `predict` returns the documented dict,
    here the ground truth of each image (found by its content) with score 0.9."""

    def __init__(self, lookup, max_detections=4):
        self.lookup, self.max_detections, self.calls = lookup, max_detections, 0

    def predict(self, images, verbose=0):
        self.calls += 1
        batch = len(images)
        boxes = np.full((batch, self.max_detections, 4), -1, np.float32)
        classes = np.full((batch, self.max_detections), -1, np.float32)
        confidence = np.full((batch, self.max_detections), -1, np.float32)
        counts = np.zeros(batch, np.int32)
        for i, image in enumerate(np.asarray(images)):
            truth_boxes, truth_classes = self.lookup[np.asarray(image).tobytes()]
            n = len(truth_classes)
            boxes[i, :n], classes[i, :n], confidence[i, :n], counts[i] = (
                truth_boxes,
                truth_classes,
                0.9,
                n,
            )
        return {
            "boxes": boxes,
            "classes": classes,
            "confidence": confidence,
            "num_detections": counts,
        }


def test_detection_predictions_gathers_truth_and_predict_outputs():
    data = synthetic_detection(
        1,
        image_size=32,
        classes=["red_circle", "blue_square", "green_star"],
        test_images=6,
        batch_size=4,
        seed=0,
    )
    lookup = {}
    for batch in data.test:
        for image, boxes, classes in zip(
            batch["images"].numpy(),
            batch["bounding_boxes"]["boxes"].numpy(),
            batch["bounding_boxes"]["classes"].numpy(),
        ):
            lookup[image.tobytes()] = (boxes[classes != -1], classes[classes != -1])
    model = _PerfectDetector(lookup)
    truth, found = detection_predictions(model, data, split="test")
    assert model.calls == 2 and len(truth["boxes"]) == len(found["boxes"]) == 6
    assert sum(len(c) for c in truth["classes"]) == sum(len(c) for c in found["classes"]) > 6
    report = coco_map(truth, found, class_names=data.class_names)
    assert report.map == 1.0
    with pytest.raises(ValueError, match="no 'validation' split"):
        detection_predictions(model, data, split="validation")

    class RawHeads:
        def predict(self, images, verbose=0):
            return {
                "box": np.zeros((len(images), 5, 4)),
                "classification": np.zeros((len(images), 5, 3)),
            }

    with pytest.raises(ValueError, match=r"got dict\['box', 'classification'\]"):
        detection_predictions(RawHeads(), data.test)


def test_real_keras_cv_detector_predict_output_is_scored():
    keras_cv = pytest.importorskip("keras_cv")
    data = synthetic_detection(
        2,
        image_size=64,
        classes=["red_circle", "blue_square"],
        min_objects=0,
        max_objects=2,
        test_images=3,
        batch_size=3,
        seed=0,
    )
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=[8, 16, 32, 64],
        stackwise_depth=[1, 1, 1, 1],
        include_rescaling=True,
        input_shape=(64, 64, 3),
    )
    detector = keras_cv.models.YOLOV8Detector(
        num_classes=2, bounding_box_format="xywh", backbone=backbone, fpn_depth=1
    )
    truth, found = detection_predictions(detector, data.test)
    assert len(truth["boxes"]) == len(found["boxes"]) == 3
    assert all(b.shape[1] == 4 for b in found["boxes"])
    assert all(((c >= 0) & (c < 2)).all() for c in found["classes"])
    report = coco_map(truth, found, class_names=data.class_names)
    assert 0.0 <= report.map <= 1.0 and report.num_ground_truth == sum(
        len(c) for c in truth["classes"]
    )

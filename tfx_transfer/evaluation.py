"""`tt.evaluate`: one call for every model kind, dispatched on what the model is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from tfx_transfer.classification.metrics import EvaluationReport, evaluate_classifier
from tfx_transfer.detection.metrics import DetectionReport, evaluate_detector, is_detection_data
from tfx_transfer.heads.locate import is_segmenter
from tfx_transfer.segmentation.metrics import SegmentationReport, evaluate_segmenter


def evaluate(
    model: keras.Model,
    data: Any,
    *,
    reference: keras.Model | None = None,
    old_classes: int | Sequence[str] | None = None,
) -> EvaluationReport | DetectionReport | SegmentationReport:
    """Evaluates a model, and for an expanded one its old and new classes apart.

    A classifier gets top-1/top-5 accuracy, per-class precision and recall and
    the confusion matrix (`EvaluationReport`). A detector on detection data (a
    `tt.data.DetectionData`, whose test split is used, or a dataset of
    `{"images", "bounding_boxes"}` batches) gets `tt.evaluate_detector`'s COCO
    mAP report, and a segmenter (`tt.build_segmenter`) `tt.evaluate_segmenter`'s
    IoU report.

    Args:
        model: a classifier, detector or segmenter.
        data: a `tf.data.Dataset` of (images, int labels) batches, or a tuple
            (images, labels) of arrays; labels index the model's columns
            (detection and segmentation data as their evaluators take it).
        reference: keras.Model. The original model before expansion; its score
            on the old classes gives the change on old classes.
        old_classes: int or class names. The old classes (the first columns);
            by default the count before the model's last expansion, or the
            reference model's class count.

    Example:

    >>> report = tt.evaluate(expanded, test_data, reference=base)
    >>> print(report)              # top1, top5, old_accuracy, new_accuracy, change
    >>> report.old_accuracy_change
    -0.004
    """
    if is_detection_data(data):
        return evaluate_detector(model, data, reference=reference, old_classes=old_classes)
    if is_segmenter(model):
        return evaluate_segmenter(model, data, reference=reference, old_classes=old_classes)
    return evaluate_classifier(model, data, reference=reference, old_classes=old_classes)

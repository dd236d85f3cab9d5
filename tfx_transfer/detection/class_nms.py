"""`PerClassNonMaxSuppression`: detections from class-specific boxes (two-stage detectors).

KerasCV's `MultiClassNonMaxSuppression` takes one box per candidate; Faster
R-CNN refines every ROI into one box per class. `tf.image.combined_non_max_suppression`
takes such per-class boxes (`q = num_classes`) and suppresses class by class.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_cv
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PerClassNonMaxSuppression(keras.layers.Layer):
    """Boxes [B, R, C, 4] (y1, x1, y2, x2 pixels) and scores [B, R, C] -> KerasCV detections.

    Returns {"boxes" [B, N, 4] in `bounding_box_format`, "confidence" [B, N],
    "classes" [B, N] int32, "num_detections" [B]}, rows past `num_detections`
    padded with -1, as KerasCV's decoders return them.

    Args:
        bounding_box_format: str. Format of the returned boxes.
        iou_threshold: float. Boxes of one class overlapping more are suppressed.
        confidence_threshold: float. Lower scores are dropped.
        max_detections: int. N, detections per image.
        max_detections_per_class: int. Detections per class and image.

    Example:

    >>> decoder = PerClassNonMaxSuppression("xywh", confidence_threshold=0.3)
    >>> decoder(boxes, scores, images)["num_detections"]
    """

    def __init__(
        self,
        bounding_box_format: str,
        iou_threshold: float = 0.5,
        confidence_threshold: float = 0.5,
        max_detections: int = 100,
        max_detections_per_class: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format
        self.iou_threshold = float(iou_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.max_detections = int(max_detections)
        self.max_detections_per_class = int(max_detections_per_class)
        self.built = True

    def call(self, boxes, scores, images=None):
        boxes, classes_scores, classes, count = tf.image.combined_non_max_suppression(
            tf.cast(boxes, tf.float32),
            tf.cast(scores, tf.float32),
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.confidence_threshold,
            pad_per_class=False,
            clip_boxes=False,
        )
        boxes = keras_cv.bounding_box.convert_format(
            boxes, source="yxyx", target=self.bounding_box_format, images=images
        )
        valid = tf.range(self.max_detections)[None, :] < count[:, None]
        return {
            "boxes": tf.where(valid[..., None], boxes, -1.0),
            "confidence": tf.where(valid, classes_scores, -1.0),
            "classes": tf.cast(tf.where(valid, classes, -1.0), tf.int32),
            "num_detections": count,
        }

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "bounding_box_format": self.bounding_box_format,
            "iou_threshold": self.iou_threshold,
            "confidence_threshold": self.confidence_threshold,
            "max_detections": self.max_detections,
            "max_detections_per_class": self.max_detections_per_class,
        }

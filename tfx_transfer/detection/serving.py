"""What a detector's SavedModel signatures compute: raw heads, box decoding and NMS.

KerasCV's own export (`model.export`) stops at the raw head outputs (keras-cv
#2499); these functions put `decode_predictions` (anchor decoding and
non-max suppression, as `predict` does) inside the graph. `tt.export_saved_model`
uses them for detectors; see `tfx_transfer.export` for the signatures.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def detection_outputs(model: keras.Model, images: tf.Tensor, labels: tf.lookup.StaticHashTable):
    """Decoded detections of `model` for a batch of raw 0..255 `images`.

    Returns a dict: `boxes` [B, N, 4] float32 in the model's
    `bounding_box_format`, `scores` [B, N] float32, `classes` [B, N] int64,
    `labels` [B, N] string (class names; "" for padding) and
    `num_detections` [B] int32. Rows past `num_detections` are padding
    (boxes and classes -1, as KerasCV pads them). N is the decoder's
    `max_detections` (100 by default).

    Example:

    >>> outputs = detection_outputs(detector, images, table)
    >>> outputs["labels"][0, : outputs["num_detections"][0]]
    """
    images = tf.cast(images, tf.float32)
    decoded = model.decode_predictions(model(images, training=False), images)
    classes = tf.cast(decoded["classes"], tf.int64)
    return {
        "boxes": tf.cast(decoded["boxes"], tf.float32),
        "scores": tf.cast(decoded["confidence"], tf.float32),
        "classes": classes,
        "labels": labels.lookup(classes),
        "num_detections": tf.cast(decoded["num_detections"], tf.int32),
    }


def compare_detections(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tolerance: float
) -> str | None:
    """None when two batches of detections agree, else a description of the first difference.

    `expected` uses `predict`'s keys ("confidence" for the scores); only the
    first `num_detections` rows of each image are compared (the rest is padding).

    Example:

    >>> compare_detections(detector.predict(images), served, tolerance=1e-4) is None
    True
    """
    expected_count = np.asarray(expected["num_detections"]).astype(int)
    actual_count = np.asarray(actual["num_detections"]).astype(int)
    if not np.array_equal(expected_count, actual_count):
        return f"num_detections {actual_count.tolist()} instead of {expected_count.tolist()}"
    for image, count in enumerate(expected_count):
        for key, expected_key in (
            ("boxes", "boxes"),
            ("scores", "confidence"),
            ("classes", "classes"),
        ):
            want = np.asarray(expected[expected_key])[image, :count].astype(np.float64)
            got = np.asarray(actual[key])[image, :count].astype(np.float64)
            difference = float(np.max(np.abs(got - want))) if count else 0.0
            if not difference <= tolerance:
                return f"{key} of image {image} differ by {difference:.3g}"
    return None

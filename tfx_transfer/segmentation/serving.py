"""What a segmenter's SavedModel signatures return."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfx_transfer.heads.probabilities import probabilities_of


def segmenter_outputs(model: keras.Model, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """`class_ids` [B, H, W] int32 (each pixel's most probable class) and
    `probabilities` [B, H, W, C].

    Example:

    >>> segmenter_outputs(segmenter, images)["class_ids"].shape
    TensorShape([2, 64, 64])
    """
    probabilities = probabilities_of(model, images)
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {"class_ids": class_ids, "probabilities": probabilities}

"""A model's class probabilities, whatever its output activation."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfx_transfer.core.metadata import class_info


def probabilities_of(model: keras.Model, images) -> tf.Tensor:
    """The model's class probabilities: its outputs, or softmax/sigmoid of its logits."""
    metadata = class_info(model)
    outputs = tf.cast(model(images, training=False), tf.float32)
    if metadata.activation is not None:
        return outputs
    return tf.sigmoid(outputs) if metadata.multi_label else tf.nn.softmax(outputs)

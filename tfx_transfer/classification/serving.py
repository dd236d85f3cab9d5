"""What a classifier's SavedModel signatures return."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfx_transfer.heads.probabilities import probabilities_of


def classifier_outputs(
    model: keras.Model, images: tf.Tensor, labels: tf.lookup.StaticHashTable, top_k: int
) -> dict[str, tf.Tensor]:
    """`probabilities` [B, C], the `top_k` `classes` and `scores`, and their `labels`.

    Example:

    >>> outputs = classifier_outputs(model, images, labels_table, top_k=5)
    >>> sorted(outputs)
    ['classes', 'labels', 'probabilities', 'scores']
    """
    probabilities = probabilities_of(model, images)
    scores, classes = tf.math.top_k(probabilities, k=top_k)
    return {
        "probabilities": probabilities,
        "classes": classes,
        "scores": scores,
        "labels": labels.lookup(tf.cast(classes, tf.int64)),
    }

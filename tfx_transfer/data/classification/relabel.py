"""Relabelling data to a model's class order (e.g. after adding classes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfx_transfer.data.common import ImageData


def align_labels(data: ImageData, class_names: Sequence[str]) -> ImageData:
    """`data` relabelled so that label k means `class_names[k]`.

    An image folder's classes come in alphabetical order and may be only some
    of the model's (the new classes and a few old ones); the model's columns
    have their own order. Every class of the data must be one of the model's.

    Example:

    >>> expanded = tt.expand_classes(base, new_class_names=["kite", "drone"])
    >>> data = tt.data.align_labels(data, tt.class_info(expanded).class_names)
    """
    names = list(class_names)
    unknown = [name for name in data.class_names if name not in names]
    if unknown:
        raise ValueError(
            f"The data's classes {unknown} are not among the model's {len(names)} classes "
            f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}); add them with "
            "tt.expand_classes or fix the class names."
        )
    positions = [names.index(name) for name in data.class_names]
    if positions == list(range(len(names))):
        return data
    table = tf.constant(positions, tf.int32)
    spread = tf.constant(np.eye(len(names), dtype=np.float32)[positions])

    def relabel(images, labels, *rest):
        if labels.shape.rank == 2:  # multi-hot rows
            return (images, tf.matmul(tf.cast(labels, tf.float32), spread), *rest)
        return (images, tf.gather(table, tf.cast(labels, tf.int32)), *rest)

    def mapped(split):
        return None if split is None else split.map(relabel, num_parallel_calls=tf.data.AUTOTUNE)

    return dataclasses.replace(
        data,
        train=mapped(data.train),
        validation=mapped(data.validation),
        test=mapped(data.test),
        class_names=names,
        class_counts={name: data.class_counts.get(name, 0) for name in names},
    )

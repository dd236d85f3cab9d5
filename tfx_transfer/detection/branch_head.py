"""RetinaNet's classification head with class branches.

`expand_classes(retinanet, ..., separate_branch=True)` replaces the head by a
`BranchedClassificationHead`: branch 0 is the original head (its convs and
class conv, frozen), each later branch a copy of its convs with a class conv
for the classes it adds. RetinaNet's constructor takes the head as
`classification_head`, so the detector's graph, losses, decoding and export
are KerasCV's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import keras_cv
import numpy as np
from keras import ops

from tfx_transfer.heads.locate import RETINANET_PRIOR

FOCAL_PRIOR = -float(np.log((1 - RETINANET_PRIOR) / RETINANET_PRIOR))


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BranchedClassificationHead(keras.layers.Layer):
    """Several RetinaNet prediction heads, one per group of classes, read as one head.

    Branch `i` is a KerasCV `PredictionHead` with `anchors * branch_classes[i]`
    output channels; the outputs are joined anchor-major over all classes
    (channel = anchor * total + class), exactly what a plain head of
    `sum(branch_classes)` classes outputs, by a fixed channel permutation.

    Args:
        branch_classes: sequence of int. Classes of each branch, in class order.
        anchors: int. Anchors per position (9 for RetinaNet).
        num_conv_layers: int. 3x3 convs before each branch's class conv.

    Example:

    >>> head = BranchedClassificationHead([90, 2])
    >>> head(np.zeros((1, 8, 8, 256), "float32")).shape
    (1, 8, 8, 828)
    """

    def __init__(
        self,
        branch_classes: Sequence[int],
        anchors: int = 9,
        num_conv_layers: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.branch_classes = [int(c) for c in branch_classes]
        if not self.branch_classes or min(self.branch_classes) < 1:
            raise ValueError(f"branch_classes must be positive counts; got {branch_classes}.")
        self.anchors = int(anchors)
        self.num_conv_layers = int(num_conv_layers)
        self.branches = [
            keras_cv.models.retinanet.PredictionHead(
                output_filters=self.anchors * classes,
                bias_initializer=keras.initializers.Constant(FOCAL_PRIOR),
                num_conv_layers=self.num_conv_layers,
                name=f"branch_{index}",
            )
            for index, classes in enumerate(self.branch_classes)
        ]
        self.permutation = _anchor_major_permutation(self.branch_classes, self.anchors)

    @property
    def num_classes(self) -> int:
        return sum(self.branch_classes)

    def build(self, input_shape) -> None:
        for branch in self.branches:
            branch.build(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        outputs = ops.concatenate(
            [branch(inputs, training=training) for branch in self.branches], -1
        )
        return ops.take(outputs, ops.convert_to_tensor(self.permutation), axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.anchors * self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "branch_classes": self.branch_classes,
            "anchors": self.anchors,
            "num_conv_layers": self.num_conv_layers,
        }


def _anchor_major_permutation(branch_classes: Sequence[int], anchors: int) -> np.ndarray:
    """Index into the branches' concatenated channels for each anchor-major output channel."""
    total = sum(branch_classes)
    starts = np.cumsum([0, *[anchors * c for c in branch_classes]])
    offsets = np.cumsum([0, *branch_classes])
    permutation = np.empty(anchors * total, np.int32)
    for anchor in range(anchors):
        for index, classes in enumerate(branch_classes):
            for c in range(classes):
                permutation[anchor * total + offsets[index] + c] = (
                    starts[index] + anchor * classes + c
                )
    return permutation

"""A classifier copied with new class columns in its classification layer(s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from tfx_transfer.core.metadata import ClassMetadata, TransferModel, with_metadata
from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.locate import Classifier, assign_dense
from tfx_transfer.surgery.rebuild import clone_with_weights

PROBABILITIES = "probabilities"

Columns = tuple[np.ndarray, np.ndarray, Sequence[bool]]


def trainable_columns(layer: keras.layers.Layer) -> list[bool]:
    """Whether each output column of a classification layer trains.

    >>> trainable_columns(tt.expand_classes(base, 2, freeze_old=True).get_layer("predictions"))[-3:]
    [False, True, True]
    """
    if isinstance(layer, ColumnBlockDense):
        return [flag and layer.trainable for flag in layer.trainable_columns]
    return [bool(layer.trainable)] * int(layer.units)


def rebuild_classifier(
    model: keras.Model,
    classifier: Classifier,
    columns: Mapping[str, Columns],
    metadata: ClassMetadata,
) -> TransferModel:
    """A copy of `model` whose classification layers get new columns.

    `columns[name] = (kernel, bias, trainable)` gives layer `name` its full
    kernel and bias and says which columns train: a plain `Dense` when all do,
    a `ColumnBlockDense` with frozen blocks otherwise. A built-in activation
    (`Dense(90, activation="softmax")`) is split off into an `Activation` layer.

    Example:

    >>> located = tt.surgery.locate_classifier(model)
    >>> kernel, bias = located.kernel_and_bias()
    >>> copy = rebuild_classifier(model, located, {"predictions": (kernel, bias, [True] * 90)},
    ...                           tt.class_info(model))
    """

    def make_layer(old: keras.layers.Layer) -> keras.layers.Layer:
        _, bias, trainable = columns[old.name]
        if len(trainable) != len(bias):
            raise ValueError(f"{len(trainable)} trainable flags for {len(bias)} columns.")
        if all(trainable):
            return keras.layers.Dense(len(bias), name=old.name, dtype=old.dtype_policy)
        return ColumnBlockDense.from_trainable_columns(
            trainable, name=old.name, dtype=old.dtype_policy
        )

    activation = classifier.builtin_activation
    append = None
    if activation:
        split = lambda: keras.layers.Activation(activation, name=PROBABILITIES)  # noqa: E731
        append = {classifier.layer.name: split}
    clone = clone_with_weights(model, {name: make_layer for name in columns}, append=append)
    for name, (kernel, bias, _) in columns.items():
        assign_dense(clone.get_layer(name), kernel, bias)
    return with_metadata(clone.inputs[0], clone.outputs[0], metadata, name=model.name)

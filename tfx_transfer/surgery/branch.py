"""Class branches: new classes on their own copy of the hidden layers.

A classifier ends in hidden Dense layers and a classification layer. A class
branch is a copy of those hidden layers (named `branch_<i>_<name>`) ending in
its own classification layer `branch_<i>_predictions`; the logits of every
branch are concatenated by a `Concatenate` layer named `class_logits`, so the
model's columns are the first branch's classes, then the second's, and so on.
`expand_classes(..., separate_branch=True)` adds one for new classes (the old
hidden and classification layers become frozen `ColumnBlockDense` layers, so
the features the old classes use cannot move) and `tt.merge_heads` adds
another model's head as one.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfx_transfer.core.graph import input_layers
from tfx_transfer.core.metadata import ClassMetadata, TransferModel, with_metadata
from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.locate import (
    CLASSIFIER_LAYERS,
    PREDICTIONS,
    Classifier,
    dense_kernel_and_bias,
)
from tfx_transfer.surgery.columns import PROBABILITIES
from tfx_transfer.surgery.rebuild import clone_with_weights

CLASS_LOGITS = "class_logits"


def add_class_branch(
    model: keras.Model,
    classifier: Classifier,
    kernel: np.ndarray,
    bias: np.ndarray,
    metadata: ClassMetadata,
) -> TransferModel:
    """A copy of classifier `model` with a new class branch for `bias.size` new classes.

    The branch copies the hidden layers feeding the first classification layer,
    with their weights, and ends in a fresh layer with `kernel` and `bias`. The
    hidden and classification layers of every earlier branch are frozen.

    Example:

    >>> located = tt.surgery.locate_classifier(base)
    >>> bigger = add_class_branch(base, located, np.zeros((1024, 2)), np.zeros(2), metadata)
    """
    branches = list(classifier.layers)
    hidden = hidden_layers(branches[0])
    if not hidden:
        raise ValueError(
            f"Model {model.name!r} has no hidden Dense layer before {branches[0].name!r} to copy "
            "into a class branch; build it with hidden_units=(1024,) or expand without "
            "separate_branch."
        )
    earlier_hidden = [layer for branch in branches for layer in hidden_layers(branch)]
    frozen = {layer.name: layer for layer in [*earlier_hidden, *branches]}
    clone = clone_with_weights(model, {name: _frozen_copy for name in frozen})
    for name, layer in frozen.items():
        clone.get_layer(name).assign_full(*dense_kernel_and_bias(layer))
    branch_input = clone.get_layer(hidden[0].name).input
    return attach_branch(
        clone,
        [clone.get_layer(b.name).output for b in branches],
        branch_input,
        hidden,
        (kernel, bias),
        classifier,
        metadata,
        name=model.name,
    )


def attach_branch(
    clone: keras.Model,
    logits: Sequence,
    branch_input,
    hidden: Sequence[keras.layers.Layer],
    head: tuple[np.ndarray, np.ndarray],
    classifier: Classifier,
    metadata: ClassMetadata,
    *,
    name: str,
) -> TransferModel:
    """Builds `clone`'s inputs -> [`logits`..., a new branch] -> `class_logits`.

    The branch applies copies of `hidden` (weights included) to `branch_input`
    and a new classification layer with `head` = (kernel, bias).
    """
    index = len(logits)
    x = branch_input
    for layer in hidden:
        copy = keras.layers.Dense(
            int(layer.units),
            activation=keras.activations.serialize(layer.activation),
            name=f"branch_{index}_{layer.name}",
            dtype=layer.dtype_policy,
        )
        x = copy(x)
        copy.set_weights(list(dense_kernel_and_bias(layer)))
    kernel, bias = head
    classification = keras.layers.Dense(
        int(bias.size), name=f"branch_{index}_{PREDICTIONS}", dtype=classifier.layer.dtype_policy
    )
    outputs = keras.layers.Concatenate(name=CLASS_LOGITS, dtype="float32")(
        [*logits, classification(x)]
    )
    classification.set_weights([kernel, bias])
    if classifier.output_activation:
        outputs = keras.layers.Activation(
            classifier.output_activation, name=PROBABILITIES, dtype="float32"
        )(outputs)
    return with_metadata(clone.inputs[0], outputs, metadata, name=name)


def hidden_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The Dense layers feeding `layer` one after the other, input side first.

    >>> [layer.name for layer in hidden_layers(model.get_layer("predictions"))]
    ['head_dense_1']
    """
    chain: list[keras.layers.Layer] = []
    current = _producer(layer)
    while isinstance(current, CLASSIFIER_LAYERS):
        chain.insert(0, current)
        current = _producer(current)
    return chain


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    parents = input_layers(layer)
    return parents[0] if len(parents) == 1 else None


def _frozen_copy(layer: keras.layers.Layer) -> ColumnBlockDense:
    """A frozen `ColumnBlockDense` standing in for a Dense layer (same name, activation)."""
    return ColumnBlockDense(
        [int(layer.units)],
        [False],
        activation=keras.activations.serialize(layer.activation),
        name=layer.name,
        dtype=layer.dtype_policy,
    )

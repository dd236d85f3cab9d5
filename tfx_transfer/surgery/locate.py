"""The one place that knows where a model keeps its classifier and how its
columns are laid out. Every class operation goes through `locate_classifier`.

Classifiers built here end in a `Dense` (or `ColumnBlockDense`) named
`predictions` whose output columns are the classes, in order ("plain" layout),
optionally followed by an activation layer. Models from elsewhere are
recognised when a Dense layer produces the model output, directly or through
`Activation`/`Softmax` layers.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfx_transfer.heads import PREDICTIONS
from tfx_transfer.surgery.layers import ColumnBlockDense

CLASSIFIER_LAYERS = (keras.layers.Dense, ColumnBlockDense)
ACTIVATION_LAYERS = (keras.layers.Activation, keras.layers.Softmax)


@dataclasses.dataclass(frozen=True)
class Classifier:
    """Where a model's classes are.

    Attributes:
        layer: the classification layer (outputs logits, one column per class,
            unless `builtin_activation` is set).
        layout: str. How classes map to output columns; "plain" (column k is class k).
        builtin_activation: str or None. An activation inside `layer` itself
            (e.g. `Dense(90, activation="softmax")` in a foreign model).
        output_activation: str or None. The activation between the logits and the
            model output ("softmax", "sigmoid" or None).
    """

    layer: keras.layers.Layer
    layout: str
    builtin_activation: str | None
    output_activation: str | None

    @property
    def num_classes(self) -> int:
        return int(self.layer.units)

    def kernel_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """Full kernel (features x classes) and bias (classes,) as numpy arrays."""
        if isinstance(self.layer, ColumnBlockDense):
            return self.layer.full_kernel_and_bias()
        kernel = keras.ops.convert_to_numpy(self.layer.kernel)
        if self.layer.use_bias:
            bias = keras.ops.convert_to_numpy(self.layer.bias)
        else:
            bias = np.zeros(kernel.shape[1], kernel.dtype)
        return kernel, bias

    def assign(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Writes a full kernel and bias back into the layer."""
        if isinstance(self.layer, ColumnBlockDense):
            self.layer.assign_full(kernel, bias)
            return
        self.layer.kernel.assign(kernel)
        if self.layer.use_bias:
            self.layer.bias.assign(bias)


def locate_classifier(model: keras.Model, layer: str | None = None) -> Classifier:
    """Finds the classification layer of `model`.

    Args:
        model: a functional or Sequential `keras.Model`.
        layer: str. Name of the classification layer; None looks for
            `predictions`, then for the Dense layer that produces the output.

    Raises:
        ValueError: naming the layer and what was expected, when `layer` does not
            exist, is not a Dense layer, or does not produce the model output.
    """
    names = [existing.name for existing in model.layers]
    if layer is not None and layer not in names:
        raise ValueError(
            f"Model {model.name!r} has no layer named {layer!r}. Its last layers are {names[-5:]}."
        )
    chain = _output_chain(model)  # output layer first, then its inputs, through activations
    if layer is None and PREDICTIONS not in names and not isinstance(chain[-1], CLASSIFIER_LAYERS):
        raise ValueError(
            f"Model {model.name!r} has no recognisable classification layer: expected a Dense "
            f"layer named {PREDICTIONS!r}, or a Dense layer (optionally followed by activation "
            f"layers) producing the output, which comes from {chain[-1].name!r} "
            f"({type(chain[-1]).__name__}). Pass layer=<name of the classification layer>."
        )
    layer = layer or (PREDICTIONS if PREDICTIONS in names else chain[-1].name)
    candidate = model.get_layer(layer)
    if not isinstance(candidate, CLASSIFIER_LAYERS):
        raise ValueError(
            f"Layer {layer!r} of model {model.name!r} is a {type(candidate).__name__}, not a "
            "classification layer: expected a Dense layer mapping features to one column per "
            "class."
        )
    if candidate not in chain:
        raise ValueError(
            f"Layer {layer!r} of model {model.name!r} does not produce the model output (the "
            f"output comes from {chain[0].name!r}), so it is not the classification layer."
        )
    activations = [_activation_name(a) for a in chain[: chain.index(candidate)]]
    builtin = _activation_name(candidate) if isinstance(candidate, keras.layers.Dense) else None
    return Classifier(
        layer=candidate,
        layout="plain",
        builtin_activation=builtin,
        output_activation=(activations or [builtin])[-1] if (activations or builtin) else None,
    )


def _output_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The layer producing the output, then back through activation layers."""
    if len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.outputs)} outputs; class operations need a "
            "classifier with one output."
        )
    current = model.outputs[0]._keras_history.operation
    chain = [current]
    while isinstance(current, ACTIVATION_LAYERS):
        current = current._inbound_nodes[0].parent_nodes[0].operation
        chain.append(current)
    return chain


def _activation_name(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    name = name if isinstance(name, str) else getattr(activation, "__name__", str(name))
    return None if name == "linear" else name

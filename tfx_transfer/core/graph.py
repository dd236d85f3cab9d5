"""The only reader of Keras' functional-graph internals (`_inbound_nodes`,
`_keras_history`, `_flatten_layers`), behind a few plain functions."""

from __future__ import annotations

from typing import Any

import keras


def all_layers(model: keras.layers.Layer, *, include_self: bool = False) -> list[Any]:
    """Every layer of `model`, nested ones included, depth first, each parent before
    its children.

    Example:

    >>> [layer.name for layer in all_layers(detector)][:1]
    ['mobilenet_v3_small']
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def producer(tensor: Any) -> Any:
    """The layer (operation) that computed a symbolic tensor of a functional model.

    Example:

    >>> producer(model.outputs[0]).name
    'predictions'
    """
    return tensor._keras_history.operation


def input_layers(layer: keras.layers.Layer, call: int = 0) -> list[Any]:
    """The layers whose outputs feed the `call`-th call of `layer` in a functional
    graph, in argument order (empty for a layer that was never called).

    Example:

    >>> [parent.name for parent in input_layers(model.get_layer("predictions"))]
    ['head_dense_1']
    """
    nodes = layer._inbound_nodes
    if len(nodes) <= call:
        return []
    return [parent.operation for parent in nodes[call].parent_nodes]


def all_input_layers(layer: keras.layers.Layer) -> list[Any]:
    """The layers feeding any call of `layer`.

    Example:

    >>> [parent.name for parent in all_input_layers(model.get_layer("add"))]
    ['conv_a', 'conv_b']
    """
    return [parent.operation for node in layer._inbound_nodes for parent in node.parent_nodes]

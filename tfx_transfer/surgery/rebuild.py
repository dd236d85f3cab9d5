"""Copying a model with one layer replaced; every other weight carried over."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras


def as_functional(model: keras.Model, *, stop_before: str | None = None) -> keras.Model:
    """`model` itself if functional; a functional view over a Sequential's layers
    (ending before layer `stop_before`, if given)."""
    if not isinstance(model, keras.Sequential):
        return model
    if not model.built or not model.inputs:
        raise ValueError(
            f"Sequential model {model.name!r} is not built; give it an Input (or call it once)."
        )
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        if layer.name == stop_before:
            break
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def features_before(model: keras.Model, layer_name: str) -> keras.Model:
    """A model from `model`'s input to the input of layer `layer_name` (shared layers)."""
    if isinstance(model, keras.Sequential):
        return as_functional(model, stop_before=layer_name)
    return keras.Model(model.inputs, model.get_layer(layer_name).input)


def clone_with_weights(
    model: keras.Model,
    replacements: Mapping[str, Callable[[keras.layers.Layer], keras.layers.Layer]],
    *,
    append: Mapping[str, Callable[[], keras.layers.Layer]] | None = None,
) -> keras.Model:
    """A plain functional copy of `model` (nothing shared); the layers named in
    `replacements` are made by their function, the others copied with their
    weights. `append[name]()` is applied right after layer `name`.

    Example:

    >>> copy = clone_with_weights(model, {"predictions": lambda old: keras.layers.Dense(5)})
    """
    source = as_functional(model)
    append = append or {}

    def clone_layer(layer):
        if layer.name in replacements:
            return replacements[layer.name](layer)
        return layer.__class__.from_config(layer.get_config())

    def call_layer(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if layer.name in append:
            outputs = append[layer.name]()(outputs)
        return outputs

    clone = keras.models.clone_model(source, clone_function=clone_layer, call_function=call_layer)
    for layer in source.layers:
        if layer.name not in replacements and layer.weights:
            clone.get_layer(layer.name).set_weights(layer.get_weights())
    return clone

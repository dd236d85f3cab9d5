"""Which layers train: the head only, the top blocks of the backbone, or everything."""

from __future__ import annotations

import keras

from tfx_transfer.backbones.build import block_boundaries, freeze_batchnorm
from tfx_transfer.backbones.registry import list_backbones
from tfx_transfer.surgery import locate_classifier, train_only


def find_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model of a classifier built by `tt.build_classifier`."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    registered = [layer for layer in nested if layer.name in list_backbones()]
    if registered or nested:
        return (registered or nested)[0]
    raise ValueError(
        f"Model {model.name!r} has no nested backbone model; build it with tt.build_classifier."
    )


def set_trainable(
    model: keras.Model, part: str = "head", *, top_blocks: int = 0, train_batchnorm: bool = False
) -> list[str]:
    """Makes one part of a classifier trainable and freezes the rest.

    Args:
        model: a classifier from `tt.build_classifier` (or `tt.expand_classes`).
        part: "head" (everything after the backbone), "top_blocks" (the head and
            the last `top_blocks` blocks of the backbone, by the registry's block
            boundaries), "all", or "classifier" (the classification layer only).
        top_blocks: int. For part="top_blocks".
        train_batchnorm: bool. Let unfrozen BatchNorm layers train (and use batch
            statistics); by default they stay frozen, in inference mode.

    Returns:
        Names of the backbone layers that now train.

    Example:

    >>> tt.training.set_trainable(model, "top_blocks", top_blocks=2)
    """
    parts = ("head", "top_blocks", "all", "classifier")
    if part not in parts:
        raise ValueError(f"Unknown part {part!r}; expected one of {parts}.")
    backbone = find_backbone(model)
    classifiers = locate_classifier(model).layers
    for layer in model.layers:
        _set_everywhere(layer, part != "classifier" or any(layer is c for c in classifiers))
    if part == "classifier":
        train_only(model, classifiers)
    _set_everywhere(backbone, part in ("top_blocks", "all"))
    unfrozen: list[str] = []
    if part == "top_blocks":
        boundaries = block_boundaries(backbone)
        if not 0 < top_blocks < len(boundaries):
            raise ValueError(
                f"top_blocks must be between 1 and {len(boundaries) - 1} for {backbone.name!r} "
                f"(blocks end at {boundaries[-3:]}...); got {top_blocks}."
            )
        first_trained = backbone.layers.index(backbone.get_layer(boundaries[-top_blocks - 1])) + 1
        for index, layer in enumerate(backbone.layers):
            layer.trainable = index >= first_trained
    if backbone.trainable:
        if not train_batchnorm:
            freeze_batchnorm(backbone)
        unfrozen = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    return unfrozen


def _set_everywhere(layer: keras.layers.Layer, trainable: bool) -> None:
    """Sets `trainable` on a layer and every layer inside it. (Keras propagates a
    change of a model's flag, but not when the model's own flag is unchanged.)"""
    layer.trainable = trainable
    for inner in getattr(layer, "layers", ()):
        _set_everywhere(inner, trainable)

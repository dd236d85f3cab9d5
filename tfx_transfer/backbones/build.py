"""Building registered backbones: raw 0..255 pixels in, the last feature map out."""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import Iterator, Sequence

import keras

from tfx_transfer.backbones.registry import BackboneSpec, get_backbone_spec
from tfx_transfer.core.compat import fresh_layer_names
from tfx_transfer.core.graph import all_input_layers
from tfx_transfer.core.preprocessing import ImagePreprocessing
from tfx_transfer.core.weights import Weights, explain_download_failures, resolve_weights


def build_backbone(
    name: str,
    weights: Weights = "imagenet",
    input_shape: Sequence[int | None] | None = None,
) -> keras.Model:
    """Builds a headless ImageNet backbone that takes raw 0..255 RGB pixels.

    The model-specific preprocessing is a layer inside the returned model; its
    output is the last feature map (P5, stride 32).

    Args:
        name: str. A name from `tt.list_backbones()`.
        weights: "imagenet" (Keras' cached download), a path to a weights file
            (saved with `save_weights`, or a Keras `*_notop.h5` file), or None.
        input_shape: (height, width, 3). Defaults to the backbone's default
            size; each side must be at least the backbone's minimum size.

    Example:

    >>> backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(64, 64, 3))
    >>> backbone.output_shape
    (None, 2, 2, 576)
    """
    spec = get_backbone_spec(name)
    shape = _check_input_shape(spec, input_shape)
    resolved = resolve_weights(weights, owner=name)
    with (
        fresh_layer_names(),
        explain_download_failures(name),
        _explain_weight_mismatch(name, resolved),
    ):
        inputs = keras.Input(shape, name="images")
        x = inputs
        if spec.preprocessing != "none":
            x = ImagePreprocessing(spec.preprocessing, name="preprocessing")(inputs)
        application = getattr(keras.applications, spec.constructor)(
            include_top=False, weights=resolved, input_tensor=x, input_shape=shape
        )
        return keras.Model(inputs, application.output, name=name)


def block_boundaries(backbone: keras.Model, name: str | None = None) -> list[str]:
    """Names of the layers that end each block of `backbone`, first to last.

    A boundary is a layer that every path from input to output goes through and
    whose name matches the registry's block pattern; the output layer always
    ends the last block. Unfreezing "the top k blocks" means training every
    layer after boundary `-(k + 1)`.

    Args:
        backbone: keras.Model. A model from `build_backbone`.
        name: str. Registry name; defaults to `backbone.name`.
    """
    spec = get_backbone_spec(name or backbone.name)
    pattern = re.compile(spec.block_pattern)
    boundaries = [n for n in _cut_points(backbone) if pattern.search(n)]
    output_layer = backbone.layers[-1].name
    if not boundaries or boundaries[-1] != output_layer:
        boundaries.append(output_layer)
    return boundaries


def freeze_batchnorm(model: keras.Model) -> None:
    """Makes every BatchNormalization layer in `model` (nested models included)
    non-trainable, which in Keras 3 also keeps it in inference mode."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif isinstance(layer, keras.Model):
            freeze_batchnorm(layer)


def _check_input_shape(spec: BackboneSpec, input_shape) -> tuple[int | None, ...]:
    if input_shape is None:
        return (spec.default_size, spec.default_size, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"input_shape for {spec.name!r} must be (height, width, 3) RGB; got {shape}."
        )
    too_small = [s for s in shape[:2] if s is not None and s < spec.min_size]
    if too_small:
        raise ValueError(
            f"input_shape {shape} is too small for {spec.name!r}: height and width must be "
            f"at least {spec.min_size} pixels (default size {spec.default_size})."
        )
    return shape


@contextlib.contextmanager
def _explain_weight_mismatch(name: str, weights: str | None) -> Iterator[None]:
    try:
        yield
    except ValueError as error:
        if weights in (None, "imagenet"):
            raise
        raise ValueError(
            f"Weights file {weights!r} does not fit backbone {name!r} as built here: {error}"
        ) from error


def _cut_points(model: keras.Model) -> list[str]:
    """Layers (in order) through which every path from input to output passes."""
    consumers: dict[str, set[str]] = collections.defaultdict(set)
    for layer in model.layers:
        for parent in all_input_layers(layer):
            consumers[parent.name].add(layer.name)
    computed: set[str] = set()
    live: set[str] = set()
    cuts = []
    for layer in model.layers:
        computed.add(layer.name)
        live = {n for n in live if not consumers[n] <= computed} | {layer.name}
        if live == {layer.name}:
            cuts.append(layer.name)
    return cuts

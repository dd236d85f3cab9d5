"""`build_classifier`: an ImageNet backbone with a new classification head."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfx_transfer.backbones.build import build_backbone, freeze_batchnorm
from tfx_transfer.backbones.registry import get_backbone_spec, list_backbones
from tfx_transfer.classification.head import classification_head
from tfx_transfer.core.metadata import ClassMetadata, TransferModel, with_metadata
from tfx_transfer.core.preprocessing import MODES, ImagePreprocessing
from tfx_transfer.core.weights import Weights


def build_classifier(
    backbone: str | keras.Model,
    num_classes: int,
    *,
    hidden_units: Sequence[int] = (1024,),
    dropout: float = 0.2,
    weights: Weights = "imagenet",
    input_shape: Sequence[int | None] | None = None,
    class_names: Sequence[str] | None = None,
    freeze_backbone: bool = True,
    activation: str | None = None,
    preprocessing: str = "auto",
    pooling: str = "avg",
    train_batchnorm: bool = False,
) -> TransferModel:
    """Builds an image classifier: preprocessing -> backbone -> head.

    The returned model is a functional `keras.Model` taking raw 0..255 RGB
    pixels. Its last Dense layer is named `predictions` and outputs logits;
    `activation` adds a separate `probabilities` layer after it. The class
    names travel with the model (`tt.class_info(model)`).

    Args:
        backbone: str or keras.Model. A name from `tt.list_backbones()`, or an
            existing headless model (then set `preprocessing`).
        num_classes: int. Number of classes.
        hidden_units: sequence of int. Hidden Dense widths of the head.
        dropout: float. Dropout rate after pooling.
        weights: "imagenet", a weights file or None; for registry backbones only.
        input_shape: (height, width, 3). Defaults to the backbone's default size.
        class_names: sequence of str. Defaults to `class_0`, `class_1`, ...
        freeze_backbone: bool. Make the backbone non-trainable.
        activation: None (logits), "softmax", or "sigmoid" (multi-label).
        preprocessing: str. "auto" (registry backbones, or models from
            `tt.build_backbone`), or a mode of `ImagePreprocessing` for a model
            of your own: "caffe", "tf", "torch" or "none".
        pooling: str. "avg" or "max".
        train_batchnorm: bool. By default the backbone's BatchNorm layers stay
            in inference mode (moving statistics, non-trainable), as they should
            while frozen or fine-tuned with small batches. True lets them follow
            `fit`'s training flag, e.g. to train a backbone from scratch. (In
            Keras 3 a nested model called with `training=False` still receives
            `fit`'s `training=True`; only a non-trainable BatchNorm layer is sure
            to use its moving statistics.)

    Example:

    >>> model = tt.build_classifier("mobilenet_v3_small", 90, weights=None,
    ...                             input_shape=(64, 64, 3))
    >>> model.get_layer("predictions").kernel.shape
    (1024, 90)
    """
    metadata = ClassMetadata.for_classes(num_classes, class_names, activation=activation)

    backbone_model, mode = _resolve_backbone(backbone, weights, input_shape, preprocessing)
    backbone_model.trainable = not freeze_backbone
    if not train_batchnorm:
        freeze_batchnorm(backbone_model)

    inputs = keras.Input(backbone_model.input_shape[1:], name="images")
    x = inputs
    if mode != "none":
        x = ImagePreprocessing(mode, name="preprocessing")(x)
    x = backbone_model(x) if train_batchnorm else backbone_model(x, training=False)
    outputs = classification_head(
        x, num_classes, hidden_units=hidden_units, dropout=dropout, pooling=pooling
    )
    if activation:
        outputs = keras.layers.Activation(activation, name="probabilities", dtype="float32")(
            outputs
        )
    return with_metadata(inputs, outputs, metadata, name=f"{backbone_model.name}_classifier")


def _resolve_backbone(backbone, weights, input_shape, preprocessing):
    """Returns (backbone model, preprocessing mode to apply in front of it)."""
    if isinstance(backbone, str):
        if preprocessing != "auto":
            raise ValueError(
                f"Backbone {backbone!r} comes from the registry, which sets its preprocessing; "
                f"leave preprocessing='auto' (got {preprocessing!r})."
            )
        return build_backbone(backbone, weights=weights, input_shape=input_shape), "none"
    if not isinstance(backbone, keras.Model):
        raise TypeError(
            f"backbone must be a registry name ({', '.join(list_backbones())}) or a "
            f"keras.Model; got {type(backbone).__name__}."
        )
    if len(backbone.outputs) != 1 or len(backbone.outputs[0].shape) != 4:
        raise ValueError(
            f"Backbone model {backbone.name!r} must have one 4D feature-map output "
            f"(batch, height, width, channels); got {backbone.output_shape}. Build it with "
            "include_top=False."
        )
    if input_shape is not None and tuple(input_shape) != tuple(backbone.input_shape[1:]):
        raise ValueError(
            f"input_shape {tuple(input_shape)} disagrees with backbone {backbone.name!r}'s "
            f"input shape {backbone.input_shape[1:]}."
        )
    if preprocessing == "auto":
        if _has_own_preprocessing(backbone):
            return backbone, "none"
        raise ValueError(
            f"Say how backbone {backbone.name!r} expects its pixels normalised: "
            f"preprocessing= one of {MODES} ('none' if it takes raw 0..255 pixels)."
        )
    if preprocessing not in MODES:
        raise ValueError(
            f"Unknown preprocessing {preprocessing!r}; expected 'auto' or one of {MODES}."
        )
    return backbone, preprocessing


def _has_own_preprocessing(model: keras.Model) -> bool:
    """True for models from `build_backbone` (normalisation inside)."""
    if any(isinstance(layer, ImagePreprocessing) for layer in model.layers):
        return True
    return model.name in list_backbones() and get_backbone_spec(model.name).preprocessing == "none"

"""`build_segmenter`: KerasCV DeepLabV3+ on registry backbones, with class metadata.

KerasCV's `DeepLabV3Plus` reads the backbone's P2 and P5 levels and ends in a
1x1 convolution with a built-in softmax. Ours passes it a segmentation head
whose 1x1 convolution `segmentation_logits` outputs logits (one channel per
class, with biases) followed by a separate `segmentation_probabilities`
softmax, so that `tt.expand_classes` can grow the logits conv and keep the
old classes' logits exact. The model takes raw 0..255 pixels and outputs
per-pixel class probabilities (B, H, W, classes); train it with `fit` on
(images, int masks) and `SparseCategoricalCrossentropy(ignore_class=255)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import keras_cv

from tfx_transfer.backbones.build import freeze_batchnorm
from tfx_transfer.backbones.pyramid import (
    resolve_pyramid_backbone,
)
from tfx_transfer.core.graph import all_layers
from tfx_transfer.core.metadata import ClassMetadata
from tfx_transfer.core.weights import Weights
from tfx_transfer.heads.carrier import ClassCarrier
from tfx_transfer.heads.frozen_channels import FrozenChannels

ARCHITECTURES = ("deeplab_v3_plus",)
SEGMENTATION_LEVELS = ("P2", "P3", "P4", "P5")
SEGMENTATION_LOGITS = "segmentation_logits"
SEGMENTATION_PROBABILITIES = "segmentation_probabilities"
DEFAULT_SIZE = 256


def segmentation_head(num_classes: int) -> keras.Sequential:
    """KerasCV's DeepLabV3+ head with the softmax split off its last conv.

    Layers: 1x1 conv (256) -> BatchNorm -> ReLU -> 4x bilinear upsampling ->
    `segmentation_logits` (1x1 conv, `num_classes` channels, float32) ->
    `segmentation_probabilities` (softmax).

    Example:

    >>> segmentation_head(21).layers[-2].name
    'segmentation_logits'
    """
    return keras.Sequential(
        [
            keras.layers.Conv2D(256, 1, use_bias=False, name="segmentation_head_conv"),
            keras.layers.BatchNormalization(name="segmentation_head_norm"),
            keras.layers.ReLU(name="segmentation_head_relu"),
            keras.layers.UpSampling2D(size=(4, 4), interpolation="bilinear"),
            keras.layers.Conv2D(num_classes, 1, name=SEGMENTATION_LOGITS, dtype="float32"),
            keras.layers.Activation("softmax", name=SEGMENTATION_PROBABILITIES, dtype="float32"),
        ],
        name="segmentation_head",
    )


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransferDeepLabV3Plus(ClassCarrier, keras_cv.models.segmentation.DeepLabV3Plus):
    """`keras_cv.models.segmentation.DeepLabV3Plus` with class metadata (build it
    with `tt.build_segmenter`).

    Args:
        backbone: a `keras_cv.models.Backbone` with P2 and P5 `pyramid_level_inputs`.
        num_classes: int. Number of classes (background included, if any).
        class_metadata: `ClassMetadata` or its config. Defaults to class_0, ...
        frozen_channels: list of `FrozenChannels` (or configs) held fixed in training.
        frozen_layers: list of int. Indices of the non-trainable layers (from `get_config`).
        **kwargs: the other arguments of `DeepLabV3Plus`; `segmentation_head`
            defaults to `segmentation_head(num_classes)`.

    Example:

    >>> model = tt.build_segmenter("deeplab_v3_plus", "mobilenet_v3_small", 3, weights=None,
    ...                            input_shape=(64, 64, 3))
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(ignore_class=255))
    >>> model.fit(images, masks, epochs=1)
    """

    logits_activation = "softmax"

    def __init__(
        self,
        backbone,
        num_classes,
        *,
        class_metadata=None,
        frozen_channels=None,
        frozen_layers=None,
        **kwargs,
    ):
        if kwargs.get("segmentation_head") is None:
            kwargs["segmentation_head"] = segmentation_head(num_classes)
        super().__init__(backbone, num_classes, **kwargs)
        self._setup_transfer(class_metadata, frozen_channels, frozen_layers)


def build_segmenter(
    arch: str,
    backbone: str | keras.Model,
    num_classes: int,
    *,
    weights: Weights = "imagenet",
    input_shape: Sequence[int | None] | None = None,
    class_names: Sequence[str] | None = None,
    freeze_backbone: bool = True,
    projection_filters: int = 48,
) -> TransferDeepLabV3Plus:
    """Builds a KerasCV DeepLabV3+ segmenter on an ImageNet backbone.

    Args:
        arch: str. "deeplab_v3_plus".
        backbone: str or keras.Model. A name from `tt.list_backbones()` whose
            feature levels align (not Inception/Xception), a model from
            `tt.build_backbone`, or a KerasCV backbone with P2 and P5 levels.
        num_classes: int. Number of classes, background included.
        weights: "imagenet", a weights file or None; for registry backbones only.
        input_shape: (height, width, 3), multiples of 32; default (256, 256, 3).
        class_names: sequence of str. Mask value k is class_names[k].
        freeze_backbone: bool. Make the backbone non-trainable (BatchNorm layers
            always stay in inference mode).
        projection_filters: int. Channels of the projected P2 features.

    Returns:
        A `TransferDeepLabV3Plus`: raw pixels in, (B, H, W, num_classes)
        probabilities out, class names in `tt.class_info(model)`.

    Example:

    >>> model = tt.build_segmenter("deeplab_v3_plus", "resnet50", 21, class_names=voc_names,
    ...                            input_shape=(256, 256, 3))
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown segmenter arch {arch!r}; choose one of {list(ARCHITECTURES)}.")
    metadata = ClassMetadata.for_classes(num_classes, class_names, activation="softmax")
    backbone_model = resolve_pyramid_backbone(
        backbone,
        weights,
        input_shape,
        levels=SEGMENTATION_LEVELS,
        default_size=DEFAULT_SIZE,
        task="segmenter",
    )
    backbone_model.trainable = not freeze_backbone
    freeze_batchnorm(backbone_model)
    return TransferDeepLabV3Plus(
        backbone=backbone_model,
        num_classes=num_classes,
        class_metadata=metadata,
        projection_filters=projection_filters,
    )


def rebuild_segmenter(
    segmenter: keras.Model,
    *,
    class_metadata: ClassMetadata,
    frozen_channels: Sequence[FrozenChannels] = (),
) -> TransferDeepLabV3Plus:
    """A fresh segmenter like `segmenter` (same config, new weights, nothing shared)
    with `class_metadata.num_classes` classes and the same trainable flags; the
    caller copies the weights (`tt.expand_classes` does).

    Example:

    >>> bigger = rebuild_segmenter(model, class_metadata=meta_with_two_more_classes)
    """
    config = segmenter.get_config()
    config.update(
        num_classes=class_metadata.num_classes,
        class_metadata=class_metadata.get_config(),
        frozen_channels=[record.get_config() for record in frozen_channels],
        frozen_layers=[i for i, layer in enumerate(all_layers(segmenter)) if not layer.trainable],
        segmentation_head=None,
    )
    return TransferDeepLabV3Plus.from_config(config)

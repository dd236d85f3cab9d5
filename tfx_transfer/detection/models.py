"""KerasCV detectors that carry class metadata: `TransferRetinaNet`, `TransferYOLOV8Detector`.

Thin registered subclasses of `keras_cv.models.RetinaNet` and
`keras_cv.models.YOLOV8Detector`. They add, and keep through `get_config` /
`from_config` (so through `.keras` files and `tt.load_model`):

- `class_metadata` (`tt.class_info(detector)`);
- `frozen_channels`: old class channels held fixed by `expand_classes(...,
  freeze_old=True)` (see `tfx_transfer.heads.frozen_channels`);
- `frozen_layers`: which layers are non-trainable. KerasCV's own backbones and
  heads are rebuilt from constructor arguments on loading, which loses
  per-layer trainable flags (a frozen `ResNetBackbone` would come back
  trainable); the flags are recorded as indices into the detector's layers
  (depth first, see `core.graph.all_layers`) and set again.

They also accept ragged boxes in `fit`/`evaluate` (densified with -1 padding),
give `compile()` KerasCV's usual losses by default, and name the nested
feature extractor after the backbone so that `tt.training.set_trainable`
finds the registry backbone.
"""

from __future__ import annotations

import keras
import keras_cv

from tfx_transfer.heads.carrier import ClassCarrier, CompileMemory


class _TransferDetector(CompileMemory, ClassCarrier):
    """What both detector subclasses add to their KerasCV parent."""

    arch: str = ""
    default_losses: tuple[str, str] = ("", "")  # KerasCV's (box_loss, classification_loss)

    def __init__(
        self,
        backbone,
        num_classes,
        bounding_box_format,
        *,
        class_metadata=None,
        frozen_channels=None,
        frozen_layers=None,
        **kwargs,
    ):
        super().__init__(backbone, num_classes, bounding_box_format, **kwargs)
        self._setup_transfer(class_metadata, frozen_channels, frozen_layers)

    def compile(self, box_loss=None, classification_loss=None, **kwargs):
        """KerasCV's `compile` with its default losses (RetinaNet: "smoothl1" and
        "focal"; YOLOv8: "ciou" and "binary_crossentropy") and no XLA."""
        kwargs.setdefault("jit_compile", False)
        losses = {
            "box_loss": box_loss or self.default_losses[0],
            "classification_loss": classification_loss or self.default_losses[1],
        }
        super().compile(**losses, **kwargs)
        self._remember_compile(**losses, **kwargs)

    def train_step(self, *args):
        return super().train_step(*args[:-1], dense_boxes(args[-1]))

    def test_step(self, *args):
        return super().test_step(*args[:-1], dense_boxes(args[-1]))


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransferRetinaNet(_TransferDetector, keras_cv.models.RetinaNet):
    """`keras_cv.models.RetinaNet` with class metadata (build it with `tt.build_detector`).

    Calling it (`detector(images, training=False)`) returns raw head outputs:
    {"box": (B, anchors, 4) deltas, "classification": (B, anchors, C) logits};
    `predict` decodes boxes and applies non-max suppression.

    Args:
        backbone: a `keras_cv.models.Backbone` with P3..P5 `pyramid_level_inputs`.
        num_classes: int. Number of classes.
        bounding_box_format: str. KerasCV box format of inputs and predictions.
        class_metadata: `ClassMetadata` or its config. Defaults to class_0, ...
        frozen_channels: list of `FrozenChannels` (or configs) held fixed in training.
        frozen_layers: list of int. Indices of the non-trainable layers (from `get_config`).
        **kwargs: the other arguments of `keras_cv.models.RetinaNet`.

    Example:

    >>> detector = tt.build_detector("retinanet", "mobilenet_v3_small", 3, weights=None,
    ...                              input_shape=(128, 128, 3))
    >>> detector.compile(optimizer="adam")
    >>> detector.fit({"images": images, "bounding_boxes": boxes}, epochs=1)
    """

    arch = "retinanet"
    logits_activation = None
    default_losses = ("smoothl1", "focal")

    def call(self, inputs, training=None, mask=None, **kwargs):
        # KerasCV's graph input is {"images": ...}; accept a bare batch of images too.
        if not isinstance(inputs, dict):
            inputs = {"images": inputs}
        return super().call(inputs, training=training, mask=mask, **kwargs)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransferYOLOV8Detector(_TransferDetector, keras_cv.models.YOLOV8Detector):
    """`keras_cv.models.YOLOV8Detector` with class metadata (build it with `tt.build_detector`).

    Calling it returns raw head outputs: {"boxes": (B, anchors, 64) box
    distributions, "classes": (B, anchors, C) sigmoid scores}; `predict`
    decodes and applies non-max suppression.

    Args:
        backbone: a `keras_cv.models.Backbone` with P3..P5 `pyramid_level_inputs`.
        num_classes: int. Number of classes.
        bounding_box_format: str. KerasCV box format of inputs and predictions.
        class_metadata: `ClassMetadata` or its config. Defaults to class_0, ...
        frozen_channels: list of `FrozenChannels` (or configs) held fixed in training.
        frozen_layers: list of int. Indices of the non-trainable layers (from `get_config`).
        **kwargs: the other arguments of `keras_cv.models.YOLOV8Detector`.

    Example:

    >>> detector = tt.build_detector("yolov8", "mobilenet_v3_small", 3, weights=None,
    ...                              input_shape=(128, 128, 3))
    >>> detector.compile(optimizer="adam")
    """

    arch = "yolov8"
    logits_activation = "sigmoid"
    default_losses = ("ciou", "binary_crossentropy")


DETECTOR_CLASSES = {"retinanet": TransferRetinaNet, "yolov8": TransferYOLOV8Detector}


def dense_boxes(data):
    """The batch with ragged boxes padded to dense tensors (-1), as KerasCV's losses need.

    Example:

    >>> dense_boxes({"images": images, "bounding_boxes": ragged})["bounding_boxes"]["boxes"]
    """
    if isinstance(data, dict) and "bounding_boxes" in data:
        return {**data, "bounding_boxes": keras_cv.bounding_box.to_dense(data["bounding_boxes"])}
    if isinstance(data, (tuple, list)) and len(data) >= 2 and isinstance(data[1], dict):
        return (data[0], keras_cv.bounding_box.to_dense(data[1]), *data[2:])
    return data

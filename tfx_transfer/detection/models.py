"""KerasCV detectors that carry class metadata: `TransferRetinaNet`, `TransferYOLOV8Detector`.

Thin registered subclasses of `keras_cv.models.RetinaNet` and
`keras_cv.models.YOLOV8Detector`. They add, and keep through `get_config` /
`from_config` (so through `.keras` files and `tt.load_model`):

- `class_metadata` (`tt.class_info(detector)`);
- `frozen_channels`: old class channels held fixed by `expand_classes(...,
  freeze_old=True)` (see `tfx_transfer.detection.freezing`);
- `frozen_layers`: which layers are non-trainable. KerasCV's own backbones and
  heads are rebuilt from constructor arguments on loading, which loses
  per-layer trainable flags (a frozen `ResNetBackbone` would come back
  trainable); the flags are recorded as indices into the detector's layers
  (depth first, as `_flatten_layers` lists them) and set again.

They also accept ragged boxes in `fit`/`evaluate` (densified with -1 padding),
give `compile()` KerasCV's usual losses by default, and name the nested
feature extractor after the backbone so that `tt.training.set_trainable`
finds the registry backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import keras_cv

from tfx_transfer.detection import freezing
from tfx_transfer.detection.freezing import FrozenChannels
from tfx_transfer.metadata import ClassMetadata


class ClassCarrier:
    """What our KerasCV task subclasses (detectors, segmenters) add to their parent:
    class metadata, frozen class channels and per-layer trainable flags, kept
    through `get_config`. A subclass calls `_setup_transfer` after its parent's
    constructor."""

    logits_activation: str | None = None  # activation of the raw class output
    multi_label: bool = True  # classes scored independently (sigmoid), not by one softmax

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._transfer_config()}

    def _setup_transfer(self, class_metadata, frozen_channels, frozen_layers) -> None:
        if isinstance(class_metadata, Mapping):
            class_metadata = ClassMetadata.from_config(dict(class_metadata))
        if class_metadata is None:
            class_metadata = default_metadata(
                self.num_classes, self.logits_activation, multi_label=self.multi_label
            )
        if class_metadata.num_classes != self.num_classes:
            raise ValueError(
                f"Model {self.name!r} has {self.num_classes} classes but its class metadata "
                f"names {class_metadata.num_classes}: {list(class_metadata.class_names)[:10]}."
            )
        self._class_metadata = class_metadata
        records = [
            r if isinstance(r, FrozenChannels) else FrozenChannels.from_config(r)
            for r in frozen_channels or ()
        ]
        self._frozen_channel_configs = [r.get_config() for r in records]
        freezing.install(self, records)
        if frozen_layers is not None:
            frozen = set(frozen_layers)
            for index, layer in enumerate(all_layers(self)):
                if index in frozen:
                    layer.trainable = False
        extractor = self._feature_extractor()
        if extractor is not None and self.backbone is not None:
            # `tt.training.find_backbone` / `block_boundaries` look it up by registry name.
            extractor.name = self.backbone.name

    @property
    def class_metadata(self) -> ClassMetadata:
        return self._class_metadata

    @property
    def frozen_channels(self) -> list[FrozenChannels]:
        """The frozen class channels (empty unless expanded with freeze_old=True).

        Example:

        >>> tt.expand_classes(detector_of_3_classes, 2, freeze_old=True).frozen_channels[0].classes
        (0, 1, 2)
        """
        return [FrozenChannels.from_config(c) for c in self._frozen_channel_configs]

    def refresh_frozen_snapshots(self) -> None:
        """Holds the frozen channels at their current values (after setting weights).

        Example:

        >>> detector.set_weights(weights); detector.refresh_frozen_snapshots()
        """
        freezing.refresh(self, self.frozen_channels)

    def _feature_extractor(self) -> keras.Model | None:
        nested = [layer for layer in self.layers if isinstance(layer, keras.Model)]
        return nested[0] if nested else None

    def _transfer_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class_metadata": self._class_metadata.get_config(),
            "frozen_channels": [dict(c) for c in self._frozen_channel_configs],
            "frozen_layers": [i for i, layer in enumerate(all_layers(self)) if not layer.trainable],
        }


class CompileMemory:
    """Keeps `compile`'s arguments (the live optimizer included) so that a saved
    detector reloads compiled as it was (`get_compile_config` /
    `compile_from_config`); `compile` calls `_remember_compile`."""

    def _remember_compile(self, **arguments) -> None:
        """Keeps `compile`'s arguments (the live optimizer) for `get_compile_config`."""
        arguments["optimizer"] = self.optimizer
        object.__setattr__(self, "_detector_compile_arguments", arguments)  # untracked

    def get_compile_config(self) -> dict[str, Any] | None:
        arguments = getattr(self, "_detector_compile_arguments", None)
        if not self.compiled or arguments is None:
            return None
        return keras.saving.serialize_keras_object(arguments)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Compiles a loaded detector as it was compiled when saved (optimizer state follows)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)


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


def default_metadata(
    num_classes: int, activation: str | None, *, multi_label: bool = True
) -> ClassMetadata:
    """class_0, class_1, ...: independent (multi-label) classes, as one-stage detectors
    score them, or one softmax (`multi_label=False`, Faster R-CNN).

    Example:

    >>> default_metadata(2, "sigmoid").class_names
    ('class_0', 'class_1')
    """
    names = ClassMetadata.default(num_classes).class_names
    return ClassMetadata(names, activation=activation, multi_label=multi_label)


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, depth first, each parent before its children.

    Example:

    >>> [layer.name for layer in all_layers(detector)][:1]
    ['mobilenet_v3_small']
    """
    return list(model._flatten_layers(include_self=False, recursive=True))


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

"""`build_detector`: KerasCV RetinaNet / YOLOv8, or our Faster R-CNN, on registry or
KerasCV backbones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import keras_cv

from tfx_transfer.backbones.build import freeze_batchnorm
from tfx_transfer.backbones.pyramid import (
    DETECTION_LEVELS,
    resolve_pyramid_backbone,
)
from tfx_transfer.core.graph import all_layers
from tfx_transfer.core.metadata import ClassMetadata
from tfx_transfer.core.weights import Weights
from tfx_transfer.detection import models
from tfx_transfer.detection.faster_rcnn import TransferFasterRCNN
from tfx_transfer.heads.frozen_channels import FrozenChannels

DETECTOR_CLASSES = {**models.DETECTOR_CLASSES, "faster_rcnn": TransferFasterRCNN}
ARCHITECTURES = tuple(DETECTOR_CLASSES)
DEFAULT_SIZE = 512


# The input size KerasCV's default RetinaNet anchors (32 .. 512 px) are made for.
KERAS_CV_ANCHOR_INPUT = 512


def build_detector(
    arch: str,
    backbone: str | keras.Model,
    num_classes: int,
    *,
    bounding_box_format: str = "xywh",
    weights: Weights = "imagenet",
    input_shape: Sequence[int | None] | None = None,
    class_names: Sequence[str] | None = None,
    freeze_backbone: bool = True,
    anchor_sizes: Sequence[float] | None = None,
    **options: Any,
) -> keras.Model:
    """Builds an object detector (KerasCV RetinaNet or YOLOv8, or our Faster R-CNN) on
    an ImageNet backbone.

    The detector takes raw 0..255 RGB pixels (registry backbones embed their
    preprocessing) and trains with `fit` on KerasCV's format
    `{"images": ..., "bounding_boxes": {"boxes": ..., "classes": ...}}`, boxes
    dense (padded with -1) or ragged. `detector(images)` returns raw head
    outputs; `predict` decodes boxes and applies non-max suppression. The
    backbone is frozen by default, its BatchNorm layers always in inference
    mode. The class names travel with the model (`tt.class_info(detector)`).

    Args:
        arch: str. "retinanet", "yolov8" or "faster_rcnn" (two-stage, with a
            1024-wide box classifier of num_classes + 1 columns, background first;
            see `tfx_transfer.detection.faster_rcnn`).
        backbone: str or keras.Model. A name from `tt.list_backbones()` whose
            feature levels align (not Inception/Xception), a model from
            `tt.build_backbone`, or a KerasCV backbone instance
            (e.g. `keras_cv.models.ResNetBackbone`, `YOLOV8Backbone`).
        num_classes: int. Number of object classes (no background class).
        bounding_box_format: str. KerasCV box format of labels and predictions
            ("xywh", "xyxy", "rel_xyxy", ...).
        weights: "imagenet", a weights file or None; for registry backbones only.
        input_shape: (height, width, 3), multiples of 32. Defaults to
            (512, 512, 3) for registry backbones, the backbone's own for a model.
        class_names: sequence of str. Defaults to `class_0`, `class_1`, ...
        freeze_backbone: bool. Make the backbone non-trainable.
        anchor_sizes: RetinaNet's anchor sizes in pixels on P3..P7. KerasCV's
            (32, 64, 128, 256, 512) suit 512 px and larger images; by default
            they shrink in proportion for smaller inputs (at 128 px: 8 .. 128),
            so that small objects still match an anchor. Faster R-CNN: any number
            of sizes on its one level, (32, 64, 128, 256) at 512 px, shrunk alike.
        **options: Faster R-CNN's other arguments (`feature_level`,
            `feature_channels`, `head_units`, `roi_samples`, ...; see
            `TransferFasterRCNN`).

    Returns:
        A `TransferRetinaNet`, `TransferYOLOV8Detector` (KerasCV model subclasses)
        or `TransferFasterRCNN`.

    Example:

    >>> detector = tt.build_detector("retinanet", "resnet50", num_classes=20,
    ...                              class_names=voc_names, input_shape=(512, 512, 3))
    >>> detector.compile(optimizer=keras.optimizers.SGD(1e-3, global_clipnorm=10.0))
    >>> detector.fit(train_data, epochs=10)
    """
    if arch not in DETECTOR_CLASSES:
        raise ValueError(f"Unknown detector arch {arch!r}; choose one of {list(ARCHITECTURES)}.")
    detector_class = DETECTOR_CLASSES[arch]
    metadata = ClassMetadata.for_classes(
        num_classes,
        class_names,
        activation=detector_class.logits_activation,
        multi_label=detector_class.multi_label,
    )
    if options and arch != "faster_rcnn":
        raise ValueError(f"Unknown arguments for {arch}: {sorted(options)}.")

    backbone_model = resolve_pyramid_backbone(
        backbone,
        weights,
        input_shape,
        levels=DETECTION_LEVELS,
        default_size=DEFAULT_SIZE,
        task="detector",
    )
    backbone_model.trainable = not freeze_backbone
    freeze_batchnorm(backbone_model)
    if arch == "retinanet":
        options["anchor_generator"] = _anchor_generator(
            backbone_model, bounding_box_format, anchor_sizes
        )
    elif arch == "faster_rcnn":
        options["anchor_sizes"] = _faster_rcnn_anchor_sizes(backbone_model, anchor_sizes)
    elif anchor_sizes is not None:
        raise ValueError("anchor_sizes is for RetinaNet and Faster R-CNN; YOLOv8 has no anchors.")
    return detector_class(
        backbone=backbone_model,
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        class_metadata=metadata,
        **options,
    )


def _anchor_generator(backbone: keras.Model, bounding_box_format: str, sizes):
    """KerasCV's RetinaNet anchors, with sizes scaled down for inputs under 512 px."""
    config = keras_cv.models.RetinaNet.default_anchor_generator(bounding_box_format).get_config()
    if sizes is None:
        side = min((d for d in backbone.input_shape[1:3] if d), default=KERAS_CV_ANCHOR_INPUT)
        scale = min(1.0, side / KERAS_CV_ANCHOR_INPUT)
        sizes = [size * scale for size in config["sizes"]]
    if len(sizes) != len(config["sizes"]) or min(sizes) <= 0:
        raise ValueError(f"anchor_sizes needs 5 positive sizes (P3..P7); got {list(sizes)}.")
    config["sizes"] = [float(size) for size in sizes]
    return keras_cv.layers.AnchorGenerator.from_config(config)


def _faster_rcnn_anchor_sizes(backbone: keras.Model, sizes) -> tuple[float, ...]:
    """Faster R-CNN's anchor sizes: (32, 64, 128, 256) at 512 px, in proportion below."""
    if sizes is None:
        side = min((d for d in backbone.input_shape[1:3] if d), default=KERAS_CV_ANCHOR_INPUT)
        scale = min(1.0, side / KERAS_CV_ANCHOR_INPUT)
        sizes = [size * scale for size in (32.0, 64.0, 128.0, 256.0)]
    if not len(sizes) or min(sizes) <= 0:
        raise ValueError(f"anchor_sizes needs positive sizes in pixels; got {list(sizes)}.")
    return tuple(float(size) for size in sizes)


def rebuild_detector(
    detector: keras.Model,
    *,
    class_metadata: ClassMetadata,
    frozen_channels: Sequence[FrozenChannels] = (),
    classification_head: keras.layers.Layer | None = None,
) -> keras.Model:
    """A fresh detector like `detector` (same config, new weights, nothing shared)
    with `class_metadata.num_classes` classes; trainable flags are copied.

    The caller copies weights. RetinaNet's class head is `classification_head`
    if given, else a default KerasCV head for the new number of classes (the
    flags of the head's layers are then left as built); everything else keeps
    its config. (`tt.expand_classes` uses it; it copies the weights.)

    Example:

    >>> bigger = rebuild_detector(detector, class_metadata=tt.class_info(detector).replace(
    ...     class_names=("cat", "dog", "kite")))
    >>> bigger.num_classes
    3
    """
    config = detector.get_config()
    config["num_classes"] = class_metadata.num_classes
    config["class_metadata"] = class_metadata.get_config()
    config["frozen_channels"] = [record.get_config() for record in frozen_channels]
    config["frozen_layers"] = None  # set below, layer by layer
    if "classification_head" in config:  # RetinaNet: default head, 9 x new classes wide
        config["classification_head"] = classification_head
    encoder = config.get("label_encoder")
    if isinstance(encoder, dict) and "num_classes" in encoder.get("config", {}):
        encoder = {**encoder, "config": {**encoder["config"], "num_classes": config["num_classes"]}}
        config["label_encoder"] = encoder
    config = {  # live layers in the config (RetinaNet's decoder) -> configs: nothing shared
        key: keras.saving.serialize_keras_object(value)
        if isinstance(value, keras.layers.Layer)
        else value
        for key, value in config.items()
    }
    rebuilt = DETECTOR_CLASSES[detector_arch(detector)].from_config(config)
    copy_trainable_flags(detector, rebuilt)
    return rebuilt


def detector_arch(model: keras.Model) -> str:
    """The arch of a detector (ours or KerasCV's own): "retinanet", "yolov8" or "faster_rcnn".

    Example:

    >>> detector_arch(tt.build_detector("yolov8", "resnet50", 3, weights=None))
    'yolov8'
    """
    if isinstance(model, keras_cv.models.RetinaNet):
        return "retinanet"
    if isinstance(model, keras_cv.models.YOLOV8Detector):
        return "yolov8"
    if isinstance(model, TransferFasterRCNN):
        return "faster_rcnn"
    raise TypeError(
        f"Model {model.name!r} ({type(model).__name__}) is not a KerasCV RetinaNet or "
        "YOLOV8Detector, nor a TransferFasterRCNN; build detectors with tt.build_detector."
    )


def copy_trainable_flags(source: keras.Model, target: keras.Model) -> None:
    """Sets every layer of `target` trainable as in `source` (same architecture).

    Example:

    >>> copy_trainable_flags(detector, rebuild_detector(detector, class_metadata=meta))
    """
    layers = all_layers(source), all_layers(target)
    if len(layers[0]) != len(layers[1]):  # another kind of class head: its flags stay as built
        layers = _outside_head(source), _outside_head(target)
    pairs = list(zip(*layers))
    if source.backbone is not None and target.backbone is not None:
        pairs += list(zip(all_layers(source.backbone), all_layers(target.backbone)))
    for origin, copy in pairs:
        if type(origin) is not type(copy):
            raise ValueError(
                f"Cannot copy trainable flags from {source.name!r} to {target.name!r}: layer "
                f"{origin.name!r} ({type(origin).__name__}) faces {copy.name!r} "
                f"({type(copy).__name__})."
            )
        copy.trainable = origin.trainable


def _outside_head(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of a detector except RetinaNet's class head and the layers inside it."""
    head = getattr(model, "classification_head", None)
    inside = (
        {id(layer) for layer in all_layers(head, include_self=True)} if head is not None else set()
    )
    return [layer for layer in all_layers(model) if id(layer) not in inside]

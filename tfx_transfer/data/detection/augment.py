"""`augment_detection`: box-aware augmentation of KerasCV detection batches.

Geometry goes through KerasCV layers that move the boxes with the pixels
(`RandomFlip`, `JitteredResize`); colour goes through Keras layers on the
images only. Afterwards every box is clipped to the image, boxes under 1 px
wide or high are dropped (and counted), and the boxes are padded back to the
input's N, valid ones first, so batches keep their shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import keras
import tensorflow as tf

from tfx_transfer.data.detection.batching import DetectionData
from tfx_transfer.data.detection.boxes import MIN_SIZE, PADDING, from_xyxy, keras_cv, to_xyxy

VALUE_RANGE = (0.0, 255.0)
DETECTION_AUGMENTATIONS = ("flip", "jitter", "brightness", "contrast")


class DroppedBoxes:
    """Counts boxes that augmentation dropped (cropped out, or under 1 px after clipping).

    Pass one to `tt.data.augment_detection(..., dropped=counter)`; the count
    grows as batches are produced (e.g. during `fit`).

    Example:

    >>> dropped = tt.data.DroppedBoxes()
    >>> train = tt.data.augment_detection(data.train, {"jitter": 0.3}, dropped=dropped)
    >>> _ = list(train)
    >>> dropped.count, dropped.seen
    (3, 120)
    """

    def __init__(self) -> None:
        self._dropped = tf.Variable(0, dtype=tf.int64, trainable=False, name="dropped_boxes")
        self._seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="seen_boxes")

    @property
    def count(self) -> int:
        """Boxes dropped so far."""
        return int(self._dropped.numpy())

    @property
    def seen(self) -> int:
        """Boxes that went into augmentation so far."""
        return int(self._seen.numpy())

    def reset(self) -> None:
        self._dropped.assign(0)
        self._seen.assign(0)

    def __repr__(self) -> str:
        return f"DroppedBoxes(count={self.count}, seen={self.seen})"


def augment_detection(
    data: tf.data.Dataset | DetectionData,
    spec: Mapping[str, float | tuple[float, float]],
    *,
    bounding_box_format: str | None = None,
    seed: int | None = None,
    dropped: DroppedBoxes | None = None,
) -> tf.data.Dataset | DetectionData:
    """Applies box-aware augmentation to batches of KerasCV detection dicts.

    Args:
        data: a `tf.data.Dataset` of `{"images", "bounding_boxes"}` batches, or a
            `DetectionData` (only its `train` split is augmented).
        spec: {name: strength}. `flip`: horizontal flips of half the images
            (any strength); `jitter`: random rescale by 1 +- strength (or a
            (low, high) scale range) then a random crop back to the image size
            (KerasCV `JitteredResize`); `brightness`, `contrast`: factors.
        bounding_box_format: str. The boxes' KerasCV format; default: the
            DetectionData's, or "xywh".
        seed: int. Seeds every layer.
        dropped: a `DroppedBoxes` that counts the boxes removed.

    Returns:
        The same kind of object as `data`; batches keep their shapes.

    Example:

    >>> dropped = tt.data.DroppedBoxes()
    >>> train = tt.data.augment_detection(
    ...     data.train, {"flip": 1, "jitter": 0.25, "brightness": 0.2}, seed=0, dropped=dropped)
    """
    if isinstance(data, DetectionData):
        augmented = augment_detection(
            data.train,
            spec,
            bounding_box_format=bounding_box_format or data.bounding_box_format,
            seed=seed,
            dropped=dropped,
        )
        return dataclasses.replace(data, train=augmented)
    bounding_box_format = bounding_box_format or "xywh"
    unknown = sorted(set(spec) - set(DETECTION_AUGMENTATIONS))
    if unknown:
        raise ValueError(
            f"Unknown detection augmentations {unknown}; expected some of "
            f"{list(DETECTION_AUGMENTATIONS)}."
        )
    spec_of = data.element_spec
    if not isinstance(spec_of, dict) or {"images", "bounding_boxes"} - set(spec_of):
        raise ValueError(
            "augment_detection expects batches {'images': ..., 'bounding_boxes': {'boxes', "
            f"'classes'}}}} as the tt.data detection loaders give; got {spec_of}."
        )
    images_spec = spec_of["images"]
    height, width = images_spec.shape[1], images_spec.shape[2]
    if height is None or width is None:
        raise ValueError(
            "augment_detection needs batches of one image size; got images of shape "
            f"{images_spec.shape}. Resize them first (every tt.data detection loader does)."
        )
    max_boxes = data.element_spec["bounding_boxes"]["boxes"].shape[1]
    layers = _layers(spec, (height, width), bounding_box_format, seed)
    counter = dropped or DroppedBoxes()
    image_shape = (height, width, 3)

    def apply(batch):
        boxes_in = batch["bounding_boxes"]
        before = tf.reduce_sum(tf.cast(_real(boxes_in["classes"]), tf.int64))
        batch = {"images": batch["images"], "bounding_boxes": dict(boxes_in)}
        for layer in layers["geometry"]:
            batch = layer(batch, training=True)
        images = batch["images"]
        for layer in layers["colour"]:
            images = layer(images, training=True)
        images = tf.clip_by_value(images, *VALUE_RANGE)
        boxes = keras_cv().bounding_box.to_dense(
            batch["bounding_boxes"], max_boxes=max_boxes, default_value=PADDING
        )
        boxes = _drop_degenerate(boxes, bounding_box_format, image_shape)
        after = tf.reduce_sum(tf.cast(_real(boxes["classes"]), tf.int64))
        counter._seen.assign_add(before)
        counter._dropped.assign_add(before - after)
        return {"images": images, "bounding_boxes": boxes}

    return data.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def _real(classes: tf.Tensor) -> tf.Tensor:
    return tf.not_equal(classes, PADDING)


def _drop_degenerate(bounding_boxes, bounding_box_format: str, image_shape) -> dict:
    """Clips to the image, drops boxes under MIN_SIZE px, puts valid boxes first."""
    height, width, _ = image_shape
    boxes = tf.convert_to_tensor(bounding_boxes["boxes"], tf.float32)
    classes = tf.cast(bounding_boxes["classes"], tf.float32)
    xyxy = to_xyxy(boxes, bounding_box_format, image_shape)
    xyxy = tf.clip_by_value(xyxy, 0.0, tf.constant([width, height, width, height], tf.float32))
    sizes = xyxy[..., 2:] - xyxy[..., :2]
    valid = _real(classes) & tf.reduce_all(sizes >= MIN_SIZE, axis=-1)
    # stable order: valid boxes first, padding after
    order = tf.argsort(tf.cast(~valid, tf.int32), axis=-1, stable=True)
    valid = tf.gather(valid, order, batch_dims=1)
    xyxy = tf.gather(xyxy, order, batch_dims=1)
    classes = tf.gather(classes, order, batch_dims=1)
    converted = from_xyxy(xyxy, bounding_box_format, image_shape)
    return {
        "boxes": tf.where(valid[..., None], converted, PADDING),
        "classes": tf.where(valid, classes, PADDING),
    }


def _layers(spec, image_size, bounding_box_format, seed) -> dict[str, list]:
    kcv = keras_cv()
    geometry, colour = [], []
    if "flip" in spec:
        geometry.append(
            kcv.layers.RandomFlip("horizontal", bounding_box_format=bounding_box_format, seed=seed)
        )
    if "jitter" in spec:
        value = spec["jitter"]
        low, high = (
            (1.0 - float(value), 1.0 + float(value)) if _scalar(value) else map(float, value)
        )
        if not 0.0 < low <= high:
            raise ValueError(f"jitter must give a scale range 0 < low <= high; got {value!r}.")
        geometry.append(
            kcv.layers.JitteredResize(
                target_size=tuple(image_size),
                scale_factor=(low, high),
                bounding_box_format=bounding_box_format,
                seed=seed,
            )
        )
    if "brightness" in spec:
        colour.append(
            keras.layers.RandomBrightness(
                _strength(spec, "brightness"), value_range=VALUE_RANGE, seed=seed
            )
        )
    if "contrast" in spec:
        colour.append(
            keras.layers.RandomContrast(
                _strength(spec, "contrast"), value_range=VALUE_RANGE, seed=seed
            )
        )
    return {"geometry": geometry, "colour": colour}


def _scalar(value) -> bool:
    return isinstance(value, (int, float))


def _strength(spec, name: str) -> float:
    strength = float(spec[name])
    if strength < 0:
        raise ValueError(f"Augmentation strength must be >= 0; got {name}={strength}.")
    return strength

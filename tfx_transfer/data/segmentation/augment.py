"""`augment_segmentation`: joint augmentation of (images, masks) batches.

Each image and its mask go through the same geometry in one
`tf.image.crop_and_resize` call per tensor: a random crop window (optionally
mirrored, which is the horizontal flip) resized back to the full size,
bilinearly for the image and with nearest neighbours for the mask. So the mask
stays aligned with the image and holds only values it held before (class ids
and the ignore index); the window never leaves the image, so no padding is
invented. Brightness changes the image only. Randomness comes from a seeded
`tf.data.Dataset.random` stream: the same seed gives the same augmented
batches, and every epoch draws new ones.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfx_transfer.data.segmentation.masks import SegmentationData

VALUE_RANGE = (0.0, 255.0)


def augment_segmentation(
    dataset: tf.data.Dataset | SegmentationData,
    *,
    flip: bool = True,
    crop_scale: tuple[float, float] | None = (0.7, 1.0),
    brightness: float = 0.1,
    seed: int | None = None,
) -> tf.data.Dataset | SegmentationData:
    """Randomly flips, crops and brightens (images, masks) batches together.

    Args:
        dataset: a `tf.data.Dataset` of `(images (B, H, W, 3), masks (B, H, W))`
            batches, or a `SegmentationData` (only its `train` split is augmented).
        flip: bool. Mirror half of the images (and their masks) left-right.
        crop_scale: (min, max) side of the random crop window as a fraction of
            the image side (same fraction for height and width, window inside
            the image), resized back to (H, W); None or (1, 1) for no crop.
        brightness: float. Adds up to +-brightness * 255 to every pixel of an
            image (one draw per image), clipped to 0..255; 0 for none.
        seed: int. The same seed gives the same augmented batches.

    Returns:
        The same kind of object as `dataset`; batches keep their shapes and dtypes.

    Example:

    >>> train = tt.data.augment_segmentation(data.train, crop_scale=(0.5, 1.0), seed=0)
    >>> model.fit(train, validation_data=data.validation)
    """
    if isinstance(dataset, SegmentationData):
        augmented = augment_segmentation(
            dataset.train, flip=flip, crop_scale=crop_scale, brightness=brightness, seed=seed
        )
        return dataclasses.replace(dataset, train=augmented)
    low, high = (1.0, 1.0) if crop_scale is None else (float(v) for v in crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1; got {crop_scale!r}.")
    if brightness < 0:
        raise ValueError(f"brightness must be >= 0; got {brightness}.")
    height, width = _check_spec(dataset.element_spec)

    def apply(batch, key):
        images, masks = batch
        count = tf.shape(images)[0]
        size = tf.shape(images)[1:3]
        crop_size = [height or size[0], width or size[1]]
        draws = [tf.stack([key, tf.constant(i, tf.int64)]) for i in range(5)]
        side = tf.random.stateless_uniform([count], draws[0], low, high)
        top = tf.random.stateless_uniform([count], draws[1]) * (1.0 - side)
        left = tf.random.stateless_uniform([count], draws[2]) * (1.0 - side)
        mirror = tf.random.stateless_uniform([count], draws[3]) < 0.5
        mirror = mirror if flip else tf.zeros_like(mirror)
        # x1 > x2 makes crop_and_resize sample the window mirrored
        x1 = tf.where(mirror, left + side, left)
        x2 = tf.where(mirror, left, left + side)
        boxes = tf.stack([top, x1, top + side, x2], axis=1)
        index = tf.range(count)
        images = tf.image.crop_and_resize(
            tf.cast(images, tf.float32), boxes, index, crop_size, method="bilinear"
        )
        labels = tf.image.crop_and_resize(
            tf.cast(masks, tf.float32)[..., None], boxes, index, crop_size, method="nearest"
        )
        masks = tf.cast(tf.round(labels[..., 0]), masks.dtype)
        if brightness:
            shift = tf.random.stateless_uniform([count, 1, 1, 1], draws[4], -1.0, 1.0)
            images = tf.clip_by_value(images + shift * brightness * 255.0, *VALUE_RANGE)
        return images, masks

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip((dataset, keys)).map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def _check_spec(spec) -> tuple[int | None, int | None]:
    """(H, W) of `(images, masks)` batch specs (None where not static)."""
    if (
        not isinstance(spec, tuple)
        or len(spec) != 2
        or not all(isinstance(s, tf.TensorSpec) for s in spec)
        or spec[0].shape.rank != 4
        or spec[1].shape.rank != 3
    ):
        raise ValueError(
            "augment_segmentation expects batches (images (B, H, W, 3), masks (B, H, W)) as the "
            f"tt.data segmentation loaders give; got {spec}."
        )
    return spec[0].shape[1], spec[0].shape[2]

"""`synthetic_segmentation`: the embedded shapes as a semantic segmentation data set.

Scenes are drawn exactly as `tt.data.synthetic_detection` draws them (the
shapes classes of `tt.data.shapes` on cluttered backgrounds, same colours,
shading and noise, objects not overlapping), and each pixel's class is that of
the object covering at least half of it, else 0 ("background"); the grey
clutter is background. Image `i` of split `s` depends only on (seed, s, i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfx_transfer.core.conventions import IGNORE_INDEX
from tfx_transfer.data import shapes
from tfx_transfer.data.common import array_pipeline, generate_splits
from tfx_transfer.data.detection.synthetic import _classes, _render
from tfx_transfer.data.segmentation.masks import SegmentationData

BACKGROUND = "background"
DEFAULT_IMAGE_SIZE = 64
# Object radius as a fraction of half the image side: larger than for detection,
# so that objects cover a good share of the pixels.
RADIUS_RANGE = (0.15, 0.4)
# A pixel belongs to an object when the object covers at least this fraction of it.
COVERAGE = 0.5
_STREAM = 8  # keeps segmentation scenes apart from the detection and classification streams


def synthetic_segmentation_arrays(
    num_images: int,
    *,
    classes: Sequence[str] | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    objects_per_image: tuple[int, int] = (1, 3),
    split: str = "train",
    seed: int = 0,
    object_size: tuple[float, float] = RADIUS_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates segmentation scenes as arrays.

    Args: as `synthetic_segmentation`; `split` ("train", "validation" or
    "test") picks one of the independent random streams.

    Returns:
        (images, masks): uint8 `(N, size, size, 3)` and int32 `(N, size, size)`,
        0 for background and k >= 1 for `classes[k - 1]`.

    Example:

    >>> images, masks = tt.data.synthetic_segmentation_arrays(4, image_size=32)
    >>> images.shape, masks.shape, masks.dtype
    ((4, 32, 32, 3), (4, 32, 32), dtype('int32'))
    """
    classes = _classes(classes)
    if split not in shapes.SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(shapes.SPLITS)}.")
    low_count, high_count = objects_per_image
    if not 1 <= low_count <= high_count:
        raise ValueError(
            f"objects_per_image must be (min, max) with 1 <= min <= max; got {objects_per_image}."
        )
    low, high = object_size
    if not 0 < low <= high < 1:
        raise ValueError(f"object_size must satisfy 0 < min <= max < 1; got {object_size}.")
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    masks = np.zeros((num_images, image_size, image_size), np.int32)
    for i in range(num_images):
        rng = np.random.default_rng((seed, _STREAM, shapes.SPLITS[split], i))
        image, _, labels, coverage = _render(
            classes, rng, image_size, low_count, high_count, object_size
        )
        images[i] = image
        for label, covered in zip(labels, coverage):
            masks[i][covered >= COVERAGE] = label + 1
    return images, masks


def synthetic_segmentation(
    num_images: int,
    *,
    classes: Sequence[str] | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = 8,
    test_images: int = 0,
    validation_images: int = 0,
    seed: int = 0,
    objects_per_image: tuple[int, int] = (1, 3),
    object_size: tuple[float, float] = RADIUS_RANGE,
) -> SegmentationData:
    """The embedded segmentation data: shapes on cluttered backgrounds, exact masks.

    Args:
        num_images: int. Training images.
        classes: class names from `tt.data.shapes.ALL_CLASSES`; default the 90
            `BASE_CLASSES`. Mask value 0 is "background", k >= 1 is classes[k - 1].
        image_size: int. Height and width in pixels.
        batch_size: int.
        test_images, validation_images: int. Images of the other splits
            (independent random streams).
        seed: int. The same seed gives the same images, masks and shuffle.
        objects_per_image: (min, max) objects drawn per image (uniform in
            between; an object that finds no free place is left out).
        object_size: (min, max) object radius as a fraction of half the image side.

    Example:

    >>> data = tt.data.synthetic_segmentation(
    ...     64, classes=["red_circle", "blue_square"], image_size=64, test_images=16)
    >>> data.class_names
    ['background', 'red_circle', 'blue_square']
    >>> images, masks = next(iter(data.train))
    >>> images.shape, masks.shape
    (TensorShape([8, 64, 64, 3]), TensorShape([8, 64, 64]))
    """
    classes = _classes(classes)
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1; got {num_images}.")
    class_names = [BACKGROUND, *classes]
    parts = generate_splits(
        lambda split, count: synthetic_segmentation_arrays(
            count,
            classes=classes,
            image_size=image_size,
            objects_per_image=objects_per_image,
            split=split,
            seed=seed,
            object_size=object_size,
        ),
        train=num_images,
        validation=validation_images,
        test=test_images,
    )

    def pipeline(split):
        if split not in parts:
            return None
        images, masks = parts[split]
        return array_pipeline(
            images, masks, batch_size=batch_size, shuffle=split == "train", seed=seed
        )

    totals = sum(
        np.bincount(masks.ravel(), minlength=len(class_names)) for _, masks in parts.values()
    )
    return SegmentationData(
        train=pipeline("train"),
        validation=pipeline("validation"),
        test=pipeline("test"),
        class_names=class_names,
        ignore_index=IGNORE_INDEX,
        image_size=(image_size, image_size),
        image_counts={
            split: len(parts[split][0]) if split in parts else 0 for split in shapes.SPLITS
        },
        pixel_counts=dict(zip(class_names, np.asarray(totals).tolist())),
        skipped=[],
    )

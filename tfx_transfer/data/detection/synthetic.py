"""`synthetic_detection`: the embedded shapes as a detection data set.

Several objects of the shapes classes (`tt.data.shapes`: "red_star", ...) are
drawn, without overlapping, on the same cluttered backgrounds as the
classification images, with the same colours, shading and noise. Each box is
the exact pixel extent of its object's drawn (anti-aliased) coverage. Image `i`
of split `s` depends only on (seed, s, i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfx_transfer.data import shapes
from tfx_transfer.data.common import generate_splits
from tfx_transfer.data.detection.batching import (
    DetectionData,
    batches,
    count_boxes,
    ragged,
)
from tfx_transfer.data.detection.boxes import from_xyxy, validate_format

DEFAULT_IMAGE_SIZE = 128
# Object radius as a fraction of half the image side (classification images use 0.45..0.8).
RADIUS_RANGE = (0.12, 0.3)
_PLACEMENT_TRIES = 20
_STREAM = 7  # keeps detection images apart from the classification streams


def synthetic_detection_arrays(
    num_images: int,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    classes: Sequence[str] | None = None,
    max_objects: int = 3,
    min_objects: int = 1,
    split: str = "train",
    seed: int = 0,
    object_size: tuple[float, float] = RADIUS_RANGE,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Generates detection images with their boxes and object masks.

    Returns:
        (images, boxes, classes, masks): uint8 (N, size, size, 3); per image a
        float32 (n, 4) array of `xyxy` pixel boxes, an int64 (n,) array of
        indices into `classes`, and a float32 (n, size, size) array of each
        object's drawn coverage (0..1).

    Example:

    >>> images, boxes, labels, masks = tt.data.synthetic_detection_arrays(4, image_size=64)
    >>> images.shape, boxes[0].shape[1]
    ((4, 64, 64, 3), 4)
    """
    classes = _classes(classes)
    if split not in shapes.SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(shapes.SPLITS)}.")
    if not 0 <= min_objects <= max_objects or max_objects < 1:
        raise ValueError(
            f"Need 0 <= min_objects <= max_objects and max_objects >= 1; got "
            f"min_objects={min_objects}, max_objects={max_objects}."
        )
    low, high = object_size
    if not 0 < low <= high < 1:
        raise ValueError(f"object_size must satisfy 0 < min <= max < 1; got {object_size}.")
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    all_boxes, all_classes, all_masks = [], [], []
    for i in range(num_images):
        rng = np.random.default_rng((seed, _STREAM, shapes.SPLITS[split], i))
        image, boxes, labels, masks = _render(
            classes, rng, image_size, min_objects, max_objects, object_size
        )
        images[i] = image
        all_boxes.append(boxes)
        all_classes.append(labels)
        all_masks.append(masks)
    return images, all_boxes, all_classes, all_masks


def synthetic_detection(
    num_images: int,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    classes: Sequence[str] | None = None,
    max_objects: int = 3,
    min_objects: int = 1,
    validation_images: int = 0,
    test_images: int = 0,
    batch_size: int = 8,
    seed: int = 0,
    bounding_box_format: str = "xywh",
    object_size: tuple[float, float] = RADIUS_RANGE,
) -> DetectionData:
    """The embedded detection data: shapes on cluttered backgrounds, exact boxes.

    Args:
        num_images: int. Training images.
        image_size: int. Height and width in pixels.
        classes: class names from `tt.data.shapes.ALL_CLASSES`; default the 90
            `BASE_CLASSES`. Pass `tt.data.shapes.NOVEL_CLASSES` (or
            `ALL_ORDERED`, 92) for the new classes. `class_ids` are positions in
            `ALL_ORDERED`, so the novel classes keep ids 90 and 91 in any subset.
        max_objects, min_objects: int. Objects per image (uniform in between);
            min_objects=0 gives some images without boxes.
        validation_images, test_images: int. Images of the other splits
            (independent random streams).
        batch_size: int.
        seed: int. The same seed gives the same images, boxes and shuffle.
        bounding_box_format: str. KerasCV format of the boxes ("xywh" pixels).
        object_size: (min, max) object radius as a fraction of half the image
            side (default 0.12..0.3: objects of 15..38 px at 128 px).

    Example:

    >>> data = tt.data.synthetic_detection(64, image_size=128, test_images=16)
    >>> len(data.class_names), data.max_boxes
    (90, 3)
    >>> novel = tt.data.synthetic_detection(16, classes=tt.data.shapes.NOVEL_CLASSES)
    >>> novel.class_ids
    [90, 91]
    """
    classes = _classes(classes)
    bounding_box_format = validate_format(bounding_box_format)
    parts = generate_splits(
        lambda split, count: synthetic_detection_arrays(
            count,
            image_size=image_size,
            classes=classes,
            max_objects=max_objects,
            min_objects=min_objects,
            split=split,
            seed=seed,
            object_size=object_size,
        )[:3],
        train=num_images,
        validation=validation_images,
        test=test_images,
    )
    if "train" not in parts:
        raise ValueError(f"num_images must be at least 1; got {num_images}.")

    def pipeline(split):
        if split not in parts:
            return None
        images, boxes, labels = parts[split]

        def element(image, image_boxes, image_classes):
            return {
                "images": tf.cast(image, tf.float32),
                "bounding_boxes": {
                    "boxes": from_xyxy(
                        image_boxes, bounding_box_format, (image_size, image_size, 3)
                    ),
                    "classes": image_classes,
                },
            }

        elements = tf.data.Dataset.from_tensor_slices(
            (images, ragged(boxes, (4,), np.float32), ragged(labels, (), np.float32))
        ).map(element, num_parallel_calls=tf.data.AUTOTUNE)
        return batches(
            elements,
            count=len(images),
            batch_size=batch_size,
            max_boxes=max_objects,
            shuffle=split == "train",
            seed=seed,
        )

    return DetectionData(
        train=pipeline("train"),
        validation=pipeline("validation"),
        test=pipeline("test"),
        class_names=list(classes),
        class_ids=[shapes.ALL_ORDERED.index(name) for name in classes],
        image_counts={
            split: len(parts[split][0]) if split in parts else 0 for split in shapes.SPLITS
        },
        box_counts=count_boxes([label for part in parts.values() for label in part[2]], classes),
        skipped=[],
        bounding_box_format=bounding_box_format,
        image_size=(image_size, image_size),
        max_boxes=max_objects,
    )


def _classes(classes) -> tuple[str, ...]:
    classes = shapes.BASE_CLASSES if classes is None else tuple(classes)
    unknown = [name for name in classes if name not in shapes.ALL_CLASSES]
    if unknown or not classes:
        raise ValueError(
            f"Unknown shape classes {unknown or '(none given)'}; see tt.data.shapes.ALL_CLASSES."
        )
    return classes


def _render(classes, rng, size, min_objects, max_objects, object_size):
    """One image: background, grey clutter, then non-overlapping coloured objects."""
    image = shapes._background(rng, size)
    for _ in range(rng.integers(0, 4)):
        blob = _object_mask(
            shapes.SHAPES[rng.integers(len(shapes.SHAPES))],
            rng.uniform(-0.9, 0.9, 2),
            rng.uniform(0.08, 0.2),
            rng.uniform(-0.35, 0.35),
            size,
        )
        grey = rng.uniform(60, 190)
        image = image * (1 - 0.6 * blob[..., None]) + 0.6 * blob[..., None] * grey
    boxes, labels, masks = [], [], []
    occupied = np.zeros((size, size), bool)
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        label = int(rng.integers(len(classes)))
        colour_name, shape = classes[label].split("_", 1)
        for _ in range(_PLACEMENT_TRIES):
            radius = rng.uniform(*object_size)
            centre = rng.uniform(-(1 - radius), 1 - radius, 2)
            mask = _object_mask(shape, centre, radius, rng.uniform(-0.35, 0.35), size)
            box = _extent(mask)
            if box is None:
                continue
            x0, y0, x1, y1 = box.astype(int)
            # one free pixel around each object keeps every box exact and every object visible
            if not occupied[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1].any():
                break
        else:
            continue
        occupied[y0:y1, x0:x1] = True
        colour = np.clip(
            np.array(shapes.COLOURS[colour_name], np.float64) + rng.normal(0, 22, 3), 0, 255
        )
        shade = 1.0 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, size)[None, :, None]
        image = image * (1 - mask[..., None]) + mask[..., None] * colour * shade
        boxes.append(box)
        labels.append(label)
        masks.append(mask.astype(np.float32))
    image = image + rng.normal(0, rng.uniform(4, 10), image.shape)
    return (
        np.clip(np.rint(image), 0, 255).astype(np.uint8),
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(masks, np.float32).reshape(-1, size, size),
    )


def _object_mask(shape: str, centre, radius: float, angle: float, size: int) -> np.ndarray:
    """Anti-aliased coverage (0..1) of `shape` at `centre` (-1..1 image coordinates),
    drawn as `tt.data.shapes` draws it (same outlines, 2x supersampling)."""
    supersample = 2
    n = size * supersample
    coords = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    x, y = xx - centre[0], yy - centre[1]
    x, y = (
        (np.cos(angle) * x + np.sin(angle) * y) / radius,
        (-np.sin(angle) * x + np.cos(angle) * y) / radius,
    )
    inside = shapes._inside(shape, x, y)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def _extent(mask: np.ndarray) -> np.ndarray | None:
    """The `xyxy` pixel box of the pixels the mask touches (None if empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)

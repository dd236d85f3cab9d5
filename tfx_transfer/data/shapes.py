"""The embedded data set: procedurally generated images of coloured shapes.

Each class is a (colour, shape) pair, e.g. "red_star": 12 shapes x 8 colours
give 96 pairs, of which 92 are used, 90 base classes and 2 novel ones. The
novel classes reuse shapes and colours seen in base classes, like a new
category that shares parts with known ones. Images have random size, position,
rotation, colour jitter, cluttered backgrounds and noise, so that a small
network classifies them well but not perfectly. Generation is deterministic:
image `i` of class `c` in split `s` depends only on (seed, s, c, i).

Example:

>>> images, labels = tt.data.shapes.arrays(tt.data.shapes.NOVEL_CLASSES, 5, split="test")
>>> images.shape, images.dtype
((10, 64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfx_transfer.data.common import ImageData

COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 170, 60),
    "cyan": (40, 205, 215),
    "blue": (40, 70, 220),
    "magenta": (215, 45, 200),
    "white": (245, 245, 245),
}
SHAPES = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "pentagon",
    "hexagon",
    "star",
    "cross",
    "ring",
    "crescent",
    "semicircle",
    "arrow",
)
NOVEL_CLASSES = ("blue_crescent", "red_arrow")
_UNUSED = ("white_ring", "yellow_crescent", "magenta_arrow", "green_semicircle")
ALL_CLASSES = tuple(
    f"{colour}_{shape}"
    for colour in COLOURS
    for shape in SHAPES
    if f"{colour}_{shape}" not in _UNUSED
)
BASE_CLASSES = tuple(name for name in ALL_CLASSES if name not in NOVEL_CLASSES)
# The column order of a base model expanded by the novel classes.
ALL_ORDERED = BASE_CLASSES + NOVEL_CLASSES
SPLITS = {"train": 0, "validation": 1, "test": 2}
DEFAULT_IMAGE_SIZE = 64


def arrays(
    classes: Sequence[str],
    per_class: int,
    *,
    split: str = "train",
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates `per_class` images of each class.

    Args:
        classes: sequence of str. Class names from `ALL_CLASSES`; label `k`
            means `classes[k]`.
        per_class: int. Images per class.
        split: str. "train", "validation" or "test" (disjoint random streams).
        image_size: int. Height and width in pixels.
        seed: int. Base seed.

    Returns:
        (images, labels): uint8 array (N, size, size, 3) and int32 array (N,),
        grouped by class.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(SPLITS)}.")
    unknown = [name for name in classes if name not in ALL_CLASSES]
    if unknown:
        raise ValueError(f"Unknown shape classes {unknown}; see tt.data.shapes.ALL_CLASSES.")
    images = np.empty((len(classes) * per_class, image_size, image_size, 3), np.uint8)
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), per_class)
    for label, name in enumerate(classes):
        class_index = ALL_CLASSES.index(name)
        for i in range(per_class):
            rng = np.random.default_rng((seed, SPLITS[split], class_index, i))
            images[label * per_class + i] = render(name, rng, image_size)
    return images, labels


def dataset(
    classes: Sequence[str],
    per_class: int,
    *,
    split: str = "train",
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = 32,
    shuffle: bool | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """`arrays` as a batched `tf.data.Dataset` of (float32 images 0..255, int labels).

    Training data are shuffled (deterministically for `seed`) unless
    `shuffle=False`; other splits keep class order.
    """
    images, labels = arrays(classes, per_class, split=split, image_size=image_size, seed=seed)
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if split == "train" if shuffle is None else shuffle:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return (
        data.batch(batch_size)
        .map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def image_data(
    classes: Sequence[str],
    per_class: int,
    *,
    validation_per_class: int = 0,
    test_per_class: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = 32,
    seed: int = 0,
):
    """The embedded data as `tt.data.ImageData` (class names and counts included),
    with its own train/validation/test splits.

    Example:

    >>> data = tt.data.shapes.image_data(tt.data.shapes.BASE_CLASSES, 40, test_per_class=10)
    >>> data.class_counts["red_circle"]
    50
    """

    def split(name, count):
        if not count:
            return None
        return dataset(
            classes, count, split=name, image_size=image_size, batch_size=batch_size, seed=seed
        )

    total = per_class + validation_per_class + test_per_class
    return ImageData(
        train=split("train", per_class),
        validation=split("validation", validation_per_class),
        test=split("test", test_per_class),
        class_names=list(classes),
        class_counts={name: total for name in classes},
        skipped=[],
    )


def write_image_folder(
    directory: str | os.PathLike,
    classes: Sequence[str],
    per_class: int,
    *,
    split: str = "train",
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
) -> Path:
    """Writes `arrays(...)` as PNGs, one sub-folder per class; returns the folder.

    Example:

    >>> root = tt.data.shapes.write_image_folder("shapes/train", tt.data.shapes.NOVEL_CLASSES, 20)
    >>> sorted(p.name for p in root.iterdir())
    ['blue_crescent', 'red_arrow']
    """
    root = Path(directory)
    images, labels = arrays(classes, per_class, split=split, image_size=image_size, seed=seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        png = tf.io.encode_png(image).numpy()
        (folder / f"{split}_{index % per_class:05d}.png").write_bytes(png)
    return root


def render(
    class_name: str, rng: np.random.Generator, image_size: int = DEFAULT_IMAGE_SIZE
) -> np.ndarray:
    """Draws one image of `class_name` ("colour_shape") with randomness from `rng`."""
    colour_name, shape = class_name.split("_", 1)
    size = image_size
    image = _background(rng, size)
    # Clutter: a few faint grey blobs that are not the object.
    for _ in range(rng.integers(0, 3)):
        blob = _mask(SHAPES[rng.integers(len(SHAPES))], rng, size, scale=rng.uniform(0.1, 0.25))
        grey = rng.uniform(60, 190)
        image = image * (1 - 0.6 * blob[..., None]) + 0.6 * blob[..., None] * grey
    mask = _mask(shape, rng, size, scale=rng.uniform(0.45, 0.8))
    colour = np.clip(np.array(COLOURS[colour_name], np.float64) + rng.normal(0, 22, 3), 0, 255)
    shade = 1.0 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, size)[None, :, None]
    image = image * (1 - mask[..., None]) + mask[..., None] * colour * shade
    image += rng.normal(0, rng.uniform(4, 14), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-saturation gradient with a random stripe texture."""
    grid = np.linspace(0.0, 1.0, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    start, end = rng.uniform(20, 150, 3), rng.uniform(20, 150, 3)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2
    image = start + (end - start) * t[..., None]
    frequency, phase = rng.uniform(4, 14), rng.uniform(0, 2 * np.pi)
    stripes = np.sin(frequency * np.pi * (np.cos(angle) * yy - np.sin(angle) * xx) + phase)
    return image + rng.uniform(0, 18) * stripes[..., None]


def _mask(shape: str, rng: np.random.Generator, size: int, *, scale: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a shape with random centre and rotation."""
    supersample = 2
    n = size * supersample
    coords = (np.arange(n) + 0.5) / n * 2 - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    radius = scale
    centre = rng.uniform(-(1 - radius), 1 - radius, 2)
    angle = rng.uniform(-0.35, 0.35)
    x, y = xx - centre[0], yy - centre[1]
    x, y = (
        (np.cos(angle) * x + np.sin(angle) * y) / radius,
        (-np.sin(angle) * x + np.cos(angle) * y) / radius,
    )
    inside = _inside(shape, x, y)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def _inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = np.hypot(x, y)
    if shape == "circle":
        return (r <= 0.9).astype(np.float64)
    if shape == "ring":
        return ((r <= 0.95) & (r >= 0.55)).astype(np.float64)
    if shape == "crescent":
        return ((r <= 0.95) & (np.hypot(x - 0.45, y + 0.1) >= 0.75)).astype(np.float64)
    if shape == "semicircle":
        return ((r <= 0.95) & (y <= 0.25)).astype(np.float64)
    return _in_polygon(_POLYGONS[shape], x, y)


def _regular(sides: int, radius: float = 0.95, offset: float = -np.pi / 2) -> np.ndarray:
    angles = offset + 2 * np.pi * np.arange(sides) / sides
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int = 5) -> np.ndarray:
    outer = _regular(points, 0.98)
    inner = _regular(points, 0.42, -np.pi / 2 + np.pi / points)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


_POLYGONS = {
    "square": np.array([[-0.75, -0.75], [0.75, -0.75], [0.75, 0.75], [-0.75, 0.75]]),
    "triangle": _regular(3, 0.98, np.pi / 2),
    "diamond": np.array([[0.0, -0.98], [0.7, 0.0], [0.0, 0.98], [-0.7, 0.0]]),
    "pentagon": _regular(5),
    "hexagon": _regular(6, 0.95, 0.0),
    "star": _star(),
    "cross": np.array(
        [
            [-0.3, -0.9],
            [0.3, -0.9],
            [0.3, -0.3],
            [0.9, -0.3],
            [0.9, 0.3],
            [0.3, 0.3],
            [0.3, 0.9],
            [-0.3, 0.9],
            [-0.3, 0.3],
            [-0.9, 0.3],
            [-0.9, -0.3],
            [-0.3, -0.3],
        ]
    ),
    "arrow": np.array(
        [
            [-0.9, -0.25],
            [0.15, -0.25],
            [0.15, -0.7],
            [0.95, 0.0],
            [0.15, 0.7],
            [0.15, 0.25],
            [-0.9, 0.25],
        ]
    ),
}


def _in_polygon(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised over the pixel grid."""
    inside = np.zeros(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at_y = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at_y)
    return inside.astype(np.float64)

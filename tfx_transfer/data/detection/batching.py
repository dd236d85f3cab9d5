"""What every detection source shares: `DetectionData`, problem reports, image
checks, splits and the `tf.data` pipeline of KerasCV batches.

A batch is `{"images": float32 (B, H, W, 3) 0..255, "bounding_boxes":
{"boxes": float32 (B, N, 4), "classes": float32 (B, N)}}`, padded with -1
where an image has fewer than N boxes (N is the most boxes of any image of the
data set, so every batch has the same shape).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfx_transfer.core.label_maps import LabelMap
from tfx_transfer.data.common import report_problems, split_images
from tfx_transfer.data.detection.boxes import PADDING, check_box, from_xyxy, keras_cv
from tfx_transfer.data.images import _JPEG_END, _JPEG_START, unusable_reason


@dataclasses.dataclass
class DetectionData:
    """Images with boxes, ready for a KerasCV detector's `fit`.

    Attributes:
        train: tf.data.Dataset of batches `{"images": float32 (B, H, W, 3) 0..255,
            "bounding_boxes": {"boxes": (B, N, 4), "classes": (B, N)}}`, padded
            with -1.
        validation, test: the same for the held-out splits, or None.
        class_names: list of str. Class index k is class_names[k].
        class_ids: list of int. The original id of each class (e.g. COCO's
            sparse category ids).
        image_counts: dict. Split name -> number of images.
        box_counts: dict. Class name -> number of boxes (all splits).
        skipped: list of (file or annotation, reason) for what was left out.
        bounding_box_format: str. The KerasCV format of the boxes.
        image_size: (height, width).
        max_boxes: int. N, the padded number of boxes per image.
        clipped_boxes: int. Boxes partly outside their image, clipped to it.

    Example:

    >>> data = tt.data.synthetic_detection(16, image_size=64, test_images=4)
    >>> data.image_counts, data.num_classes
    ({'train': 16, 'validation': 0, 'test': 4}, 90)
    >>> detector.fit(data.train, validation_data=data.test, epochs=1)
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    class_ids: list[int]
    image_counts: dict[str, int]
    box_counts: dict[str, int]
    skipped: list[tuple[str, str]]
    bounding_box_format: str
    image_size: tuple[int, int]
    max_boxes: int
    clipped_boxes: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_map(self) -> LabelMap:
        """Class names with their original ids, e.g. for `tt.LabelMap.save`."""
        return LabelMap(tuple(self.class_names), tuple(self.class_ids))


@dataclasses.dataclass
class ImageRecord:
    """One image of a file-based source: its path and its usable boxes.

    `boxes` are `xyxy` pixels of the original image, `classes` class indices;
    `where` names the image in messages (annotation file, image id) and
    `box_names` has (where, how the file writes it) for each box."""

    path: str
    boxes: np.ndarray
    classes: np.ndarray
    where: str
    box_names: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def image_shapes(paths: Sequence[str]) -> list[tuple[tuple[int, int] | None, str | None]]:
    """[(height, width) or None, reason or None] per path, decoding each image once."""

    def inspect(path):
        if not os.path.isfile(path):
            return None, "missing file"
        try:
            with open(path, "rb") as handle:
                contents = handle.read()
        except OSError:
            return None, unusable_reason(path)
        if not contents or (contents.startswith(_JPEG_START) and _JPEG_END not in contents[-64:]):
            return None, unusable_reason(path)
        try:
            shape = tf.io.decode_image(contents, channels=3, expand_animations=False).shape
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            return None, unusable_reason(path)
        return (int(shape[0]), int(shape[1])), None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(
            tqdm(pool.map(inspect, paths), total=len(paths), desc="Checking images", leave=False)
        )


def resolve_max_boxes(counts: Sequence[int], max_boxes: int | None, names: Sequence[str]) -> int:
    """N for padding: the most boxes of any image (at least 1), or `max_boxes` if large enough."""
    most = max(counts, default=0)
    if max_boxes is None:
        return max(most, 1)
    if max_boxes < most:
        where = names[int(np.argmax(counts))]
        raise ValueError(
            f"max_boxes={max_boxes} is smaller than the {most} boxes of {where}; "
            "raise max_boxes or leave it None."
        )
    return max_boxes


def batches(
    elements: tf.data.Dataset,
    *,
    count: int,
    batch_size: int,
    max_boxes: int,
    shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:
    """Per-image dicts with (n, 4) boxes -> dense KerasCV batches padded to `max_boxes`."""
    if shuffle:
        elements = elements.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    to_dense = keras_cv().bounding_box.to_dense

    def dense(batch):
        boxes = to_dense(batch["bounding_boxes"], max_boxes=max_boxes, default_value=PADDING)
        return {"images": batch["images"], "bounding_boxes": boxes}

    return (
        elements.ragged_batch(batch_size)
        .map(dense, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def ragged(rows: Sequence[np.ndarray], inner: tuple[int, ...], dtype) -> tf.RaggedTensor:
    """Variable-length numpy rows -> a RaggedTensor (rows, None, *inner)."""
    lengths = np.array([len(row) for row in rows], np.int64)
    flat = np.concatenate([np.asarray(row, dtype).reshape(-1, *inner) for row in rows] or [])
    flat = flat.reshape(-1, *inner).astype(dtype)
    return tf.RaggedTensor.from_row_lengths(flat, lengths)


def file_batches(
    records: Sequence[ImageRecord],
    *,
    image_size: tuple[int, int],
    batch_size: int,
    max_boxes: int,
    bounding_box_format: str,
    shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:
    """Image files with `xyxy` boxes of the original images -> KerasCV batches.

    Each image is decoded, resized to `image_size` (no aspect preservation)
    and its boxes are scaled by the same factors, then converted."""
    height, width = image_size
    paths = [record.path for record in records]
    boxes = ragged([r.boxes for r in records], (4,), np.float32)
    classes = ragged([r.classes for r in records], (), np.float32)

    def load(path, image_boxes, image_classes):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        original = tf.cast(tf.shape(image)[:2], tf.float32)
        image = tf.image.resize(image, image_size)
        scale = tf.stack([width / original[1], height / original[0]])
        scaled = image_boxes * tf.tile(scale, [2])
        return {
            "images": image,
            "bounding_boxes": {
                "boxes": from_xyxy(scaled, bounding_box_format, (height, width, 3)),
                "classes": image_classes,
            },
        }

    elements = tf.data.Dataset.from_tensor_slices((paths, boxes, classes)).map(
        load, num_parallel_calls=tf.data.AUTOTUNE
    )
    return batches(
        elements,
        count=len(records),
        batch_size=batch_size,
        max_boxes=max_boxes,
        shuffle=shuffle,
        seed=seed,
    )


def assemble(
    pipeline: Callable[[np.ndarray, bool], tf.data.Dataset],
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    **fields,
) -> DetectionData:
    """`DetectionData` from `pipeline(indices, shuffle)` and split indices; an
    empty held-out split becomes None."""
    train, validation, test = splits
    return DetectionData(
        train=pipeline(train, True),
        validation=pipeline(validation, False) if len(validation) else None,
        test=pipeline(test, False) if len(test) else None,
        image_counts={
            "train": len(train),
            "validation": len(validation),
            "test": len(test),
        },
        **fields,
    )


def count_boxes(class_rows: Sequence[np.ndarray], class_names: Sequence[str]) -> dict[str, int]:
    """Boxes per class name."""
    flat = np.concatenate([np.asarray(row, np.int64).ravel() for row in class_rows] or [[]])
    totals = np.bincount(flat.astype(np.int64), minlength=len(class_names))
    return {name: int(total) for name, total in zip(class_names, totals)}


def file_detection_data(
    records: list[ImageRecord],
    problems: list[tuple[str, str]],
    *,
    class_names: Sequence[str],
    class_ids: Sequence[int],
    source: str,
    image_size: tuple[int, int],
    batch_size: int,
    validation_split: float | None,
    test_split: float | None,
    seed: int | None,
    strict: bool,
    bounding_box_format: str,
    max_boxes: int | None,
) -> DetectionData:
    """Checks every image and box of `records` against the decoded image, then
    splits and builds the pipelines (shared by the COCO and VOC loaders)."""
    problems = list(problems)
    usable, clipped = [], 0
    total_boxes = sum(len(r.boxes) for r in records)
    for record, (shape, reason) in zip(records, image_shapes([r.path for r in records])):
        if reason:
            problems.append((record.path, f"{reason} ({record.where})"))
            continue
        height, width = shape
        keep_boxes, keep_classes = [], []
        for box, label, (name, shown) in zip(record.boxes, record.classes, record.box_names):
            checked, why, was_clipped = check_box(box, width, height, shown=shown)
            if why:
                problems.append((name, why))
                continue
            clipped += was_clipped
            keep_boxes.append(checked)
            keep_classes.append(label)
        usable.append(
            dataclasses.replace(
                record,
                boxes=np.array(keep_boxes, np.float32).reshape(-1, 4),
                classes=np.array(keep_classes, np.int64),
            )
        )
    skipped = report_problems(
        problems,
        strict=strict,
        source=source,
        total=f"{len(records)} images and {total_boxes} boxes",
    )
    if not usable:
        raise ValueError(f"No usable images in {source}; see the problems above: {skipped[:3]}.")
    n = resolve_max_boxes([len(r.boxes) for r in usable], max_boxes, [r.path for r in usable])
    splits = split_images(
        len(usable), validation_split=validation_split, test_split=test_split, seed=seed
    )

    def pipeline(indices, shuffle):
        return file_batches(
            [usable[i] for i in indices],
            image_size=image_size,
            batch_size=batch_size,
            max_boxes=n,
            bounding_box_format=bounding_box_format,
            shuffle=shuffle,
            seed=seed,
        )

    return assemble(
        pipeline,
        splits,
        class_names=list(class_names),
        class_ids=[int(i) for i in class_ids],
        box_counts=count_boxes([r.classes for r in usable], class_names),
        skipped=skipped,
        bounding_box_format=bounding_box_format,
        image_size=image_size,
        max_boxes=n,
        clipped_boxes=clipped,
    )

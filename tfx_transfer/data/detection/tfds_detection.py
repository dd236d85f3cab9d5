"""`tfds_detection`: a detection data set from the TFDS catalogue (`voc`, `coco/2017`)."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tensorflow_datasets

from tfx_transfer.core.label_maps import COCO_IDS
from tfx_transfer.data.detection.batching import (
    DetectionData,
    assemble,
    batches,
    count_boxes,
    report_problems,
    resolve_max_boxes,
    split_images,
)
from tfx_transfer.data.detection.boxes import keras_cv, validate_format
from tfx_transfer.data.images import as_size
from tfx_transfer.data.tfds_prepare import prepare


def tfds_detection(
    name: str,
    *,
    split: str,
    image_size: int | tuple[int, int],
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    download: bool = True,
    bounding_box_format: str = "xywh",
    max_boxes: int | None = None,
) -> DetectionData:
    """Loads a TFDS detection data set with `objects/bbox` and `objects/label`.

    TFDS boxes are normalised `[ymin, xmin, ymax, xmax]`; they are converted
    (KerasCV `rel_yxyx` -> `bounding_box_format`) for images resized to
    `image_size`. COCO's crowd boxes are left out and its 80 classes keep their
    sparse COCO ids (1..90) in `class_ids`. Boxes with non-positive width or
    height are dropped and listed in `.skipped`. Offline, a data set that is
    not prepared fails fast with `tt.data.DatasetUnavailableError` (as in
    `tt.data.tfds`).

    Args:
        name: str. E.g. "voc" (VOC 2007), "voc/2012", "coco/2017".
        split: str. A TFDS split (slices like "validation[:10%]" work).
        image_size: int or (height, width).
        data_dir: path. Where TFDS keeps data sets (default: TFDS' own).
        batch_size, validation_split, test_split, seed, bounding_box_format,
        max_boxes: as in `tt.data.coco_detection`.
        download: bool. False fails at once when the data set is not prepared.

    Example:

    >>> data = tt.data.tfds_detection("voc", split="train", image_size=320, batch_size=8)
    >>> data.class_names[:2], data.max_boxes
    (['aeroplane', 'bicycle'], 42)
    """
    bounding_box_format = validate_format(bounding_box_format)
    builder = tensorflow_datasets.builder(name, data_dir=data_dir)
    features = builder.info.features
    objects = features["objects"] if "objects" in features else None
    if objects is None or "bbox" not in objects.feature or "label" not in objects.feature:
        raise ValueError(
            f"TFDS data set {name!r} has no objects/bbox and objects/label features; it is not "
            "an object detection data set like 'voc' or 'coco/2017'."
        )
    has_crowd = "is_crowd" in objects.feature
    if not builder.is_prepared():
        prepare(builder, name, download)
    class_names = list(objects["label"].names)
    class_ids = list(COCO_IDS) if _is_coco(name, class_names) else list(range(len(class_names)))

    rows = _annotations(builder, split, has_crowd)
    problems, kept_classes = [], []
    for position, (image_name, boxes, labels, crowd, box_ids) in enumerate(rows):
        keep = _usable(boxes, crowd)
        for k in np.flatnonzero(~keep & ~crowd):
            box_name = f"annotation {box_ids[k]}" if box_ids is not None else f"object {k}"
            problems.append(
                (
                    f"{name} {split} example {position} ({image_name}), {box_name}",
                    f"bbox [{', '.join(f'{v:.4g}' for v in boxes[k])}] (ymin, xmin, ymax, xmax) has "
                    "non-positive width or height",
                )
            )
        kept_classes.append(labels[keep])
    skipped = report_problems(
        problems, strict=False, source=f"TFDS {name!r} split {split!r}", total=f"{len(rows)} images"
    )
    counts = [len(labels) for labels in kept_classes]
    n = resolve_max_boxes(counts, max_boxes, [f"{split} example {i}" for i in range(len(rows))])
    splits = split_images(
        len(rows), validation_split=validation_split, test_split=test_split, seed=seed
    )
    size = as_size(image_size)
    convert = keras_cv().bounding_box.convert_format

    def element(example):
        bbox = example["objects"]["bbox"]
        crowd = example["objects"]["is_crowd"] if has_crowd else tf.zeros_like(bbox[:, 0], tf.bool)
        keep = _usable_tf(bbox, crowd)
        image = tf.image.resize(example["image"], size)
        boxes = convert(
            tf.boolean_mask(bbox, keep),
            source="rel_yxyx",
            target=bounding_box_format,
            image_shape=(*size, 3),
        )
        classes = tf.cast(tf.boolean_mask(example["objects"]["label"], keep), tf.float32)
        return {"images": image, "bounding_boxes": {"boxes": boxes, "classes": classes}}

    def pipeline(indices, shuffle):
        mask = np.zeros(len(rows), dtype=bool)
        mask[indices] = True
        elements = (
            builder.as_dataset(split=split, shuffle_files=False)
            .enumerate()
            .filter(lambda index, _: tf.gather(mask, index))
            .map(lambda _, example: element(example), num_parallel_calls=tf.data.AUTOTUNE)
        )
        return batches(
            elements,
            count=len(indices),
            batch_size=batch_size,
            max_boxes=n,
            shuffle=shuffle,
            seed=seed,
        )

    return assemble(
        pipeline,
        splits,
        class_names=class_names,
        class_ids=class_ids,
        box_counts=count_boxes(kept_classes, class_names),
        skipped=skipped,
        bounding_box_format=bounding_box_format,
        image_size=size,
        max_boxes=n,
    )


def _is_coco(name: str, class_names: list[str]) -> bool:
    return name.split("/")[0] == "coco" and len(class_names) == len(COCO_IDS)


def _annotations(builder, split: str, has_crowd: bool) -> list:
    """[(image name, boxes, labels, crowd mask, annotation ids or None)] without decoding images."""

    def fields(example):
        objects = example["objects"]
        crowd = objects["is_crowd"] if has_crowd else tf.zeros_like(objects["label"], tf.bool)
        ids = objects["id"] if "id" in objects else tf.zeros_like(objects["label"]) - 1
        name = example.get("image/filename", tf.constant(""))
        return name, objects["bbox"], objects["label"], crowd, ids

    data = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tensorflow_datasets.decode.SkipDecoding()},
    )
    rows = []
    for name, boxes, labels, crowd, ids in data.map(fields).as_numpy_iterator():
        rows.append(
            (
                name.decode() if isinstance(name, bytes) else str(name),
                boxes.reshape(-1, 4),
                labels.astype(np.int64),
                crowd.astype(bool),
                ids if (ids >= 0).all() and len(ids) else None,
            )
        )
    return rows


def _usable(boxes: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & ~crowd


def _usable_tf(boxes: tf.Tensor, crowd: tf.Tensor) -> tf.Tensor:
    """The same rule as `_usable`, in the graph."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & ~crowd

"""`coco_detection`: images and boxes from a COCO annotation file."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from tfx_transfer.core.label_maps import LabelMap
from tfx_transfer.data.common import AnnotationError
from tfx_transfer.data.detection.batching import (
    DetectionData,
    ImageRecord,
    file_detection_data,
)
from tfx_transfer.data.detection.boxes import validate_format
from tfx_transfer.data.images import as_size


def coco_detection(
    annotation_json: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    bounding_box_format: str = "xywh",
    max_boxes: int | None = None,
) -> DetectionData:
    """Loads images and boxes described by a COCO annotation (instances) file.

    Categories keep their original (often sparse) ids in `class_ids`; class
    index k is the k-th category in id order. Images are resized to
    `image_size` (aspect ratio not kept) and boxes scaled with them; boxes
    partly outside their image are clipped. Crowd annotations (`iscrowd: 1`)
    are ignored; images without boxes are kept (all -1 padding). Annotations
    with unknown images or categories, non-positive width or height, boxes
    wholly outside the image, and missing or corrupt image files are listed in
    `.skipped` (with the annotation id and file), or raise `AnnotationError`
    naming them with `strict=True`.

    Args:
        annotation_json: path of the COCO JSON file.
        image_dir: folder that `images[].file_name` is relative to.
        image_size: int or (height, width).
        batch_size: int.
        validation_split, test_split: float in (0, 1), or None. Random image splits.
        seed: int. Fixes the splits and the training shuffle.
        strict: bool. Raise on any unusable annotation or image instead of skipping.
        bounding_box_format: str. KerasCV format of the output boxes ("xywh" pixels).
        max_boxes: int. Boxes per image after padding (default: the most of any image).

    Example:

    >>> data = tt.data.coco_detection("instances.json", "images", image_size=256)
    >>> data.class_names, data.class_ids
    (['person', 'car', 'toothbrush'], [1, 3, 90])
    >>> batch = next(iter(data.train))
    >>> batch["bounding_boxes"]["boxes"].shape         # (batch, max_boxes, 4), xywh pixels
    TensorShape([32, 12, 4])
    """
    path = Path(annotation_json)
    document = _read(path)
    label_map = _categories(document, path)
    records, problems = _records(document, path, Path(image_dir), label_map)
    return file_detection_data(
        records,
        problems,
        class_names=label_map.names,
        class_ids=label_map.ids,
        source=repr(str(path)),
        image_size=as_size(image_size),
        batch_size=batch_size,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        strict=strict,
        bounding_box_format=validate_format(bounding_box_format),
        max_boxes=max_boxes,
    )


def _read(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO annotation file not found: {str(path)!r}.") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(
            f"COCO annotation file {str(path)!r} is not valid JSON: {error}."
        ) from None
    missing = [
        key
        for key in ("images", "categories")
        if not isinstance(document, dict) or not isinstance(document.get(key), list)
    ]
    if missing:
        raise AnnotationError(
            f"COCO annotation file {str(path)!r} has no {' or '.join(repr(k) for k in missing)} "
            "list; expected {'images': [...], 'annotations': [...], 'categories': [...]}."
        )
    return document


def _categories(document: dict, path: Path) -> LabelMap:
    categories = document["categories"]
    for position, entry in enumerate(categories):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), int)
            or isinstance(entry.get("id"), bool)
            or not isinstance(entry.get("name"), str)
        ):
            raise AnnotationError(
                f"{path}: categories[{position}] needs an integer 'id' and a string 'name'; "
                f"got {entry!r}."
            )
    if not categories:
        raise AnnotationError(f"{path}: the 'categories' list is empty.")
    ordered = sorted(categories, key=lambda entry: entry["id"])
    try:
        return LabelMap(tuple(e["name"] for e in ordered), tuple(e["id"] for e in ordered))
    except ValueError as error:
        raise AnnotationError(f"{path}: categories: {error}") from None


def _records(
    document: dict, path: Path, image_dir: Path, label_map: LabelMap
) -> tuple[list[ImageRecord], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    images: dict[int, dict] = {}
    for position, entry in enumerate(document["images"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("id"), int)
            or not isinstance(entry.get("file_name"), str)
        ):
            problems.append(
                (
                    f"{path}: images[{position}]",
                    f"needs an integer 'id' and a 'file_name'; got {entry!r}",
                )
            )
            continue
        if entry["id"] in images:
            problems.append((f"{path}: images[{position}]", f"duplicate image id {entry['id']}"))
            continue
        images[entry["id"]] = entry
    index = {class_id: k for k, class_id in enumerate(label_map.ids)}
    boxes: dict[int, list] = defaultdict(list)
    for position, annotation in enumerate(document.get("annotations") or []):
        annotation_id = (
            annotation.get("id", f"#{position}") if isinstance(annotation, dict) else f"#{position}"
        )
        image = images.get(annotation.get("image_id")) if isinstance(annotation, dict) else None
        where = f"{path}: annotation {annotation_id}"
        if image is not None:
            where += f" (image {image['file_name']!r})"
        if not isinstance(annotation, dict):
            problems.append((where, f"expected an object; got {annotation!r}"))
            continue
        if annotation.get("iscrowd"):
            continue
        if image is None:
            problems.append((where, f"image_id {annotation.get('image_id')!r} is not in 'images'"))
            continue
        category = annotation.get("category_id")
        if category not in index:
            problems.append(
                (
                    where,
                    f"category_id {category!r} is not in 'categories' (ids {list(label_map.ids)})",
                )
            )
            continue
        bbox = annotation.get("bbox")
        if (
            not isinstance(bbox, (list, tuple))
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            problems.append((where, f"bbox must be [x, y, width, height]; got {bbox!r}"))
            continue
        x, y, w, h = (float(v) for v in bbox)
        shown = "bbox [" + ", ".join(f"{v:g}" for v in bbox) + "]"
        if w <= 0 or h <= 0:
            problems.append((where, f"{shown} has non-positive width or height"))
            continue
        boxes[image["id"]].append(
            ([x, y, x + w, y + h], index[category], (where, shown), annotation_id)
        )
    records = []
    for image_id, image in images.items():
        entries = boxes.get(image_id, [])
        where = f"image id {image_id} in {path.name}"
        if entries:
            where += f", annotations {', '.join(str(entry[3]) for entry in entries)}"
        records.append(
            ImageRecord(
                path=str(image_dir / image["file_name"]),
                boxes=np.array([entry[0] for entry in entries], np.float32).reshape(-1, 4),
                classes=np.array([entry[1] for entry in entries], np.int64),
                where=where,
                box_names=[entry[2] for entry in entries],
            )
        )
    return records, problems

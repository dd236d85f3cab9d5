"""`voc_detection`: images and boxes from Pascal VOC XML annotation files."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
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

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def voc_detection(
    annotations_dir: str | os.PathLike,
    image_dir: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    class_names: Sequence[str] | str | os.PathLike | None = None,
    include_difficult: bool = True,
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    bounding_box_format: str = "xywh",
    max_boxes: int | None = None,
) -> DetectionData:
    """Loads images and boxes described by Pascal VOC XML files (one per image).

    VOC corners are 1-based inclusive pixel indices: a box `xmin=1 .. xmax=W`
    covers the whole width, so it becomes `x0 = xmin - 1, x1 = xmax` in pixel
    coordinates (as Detectron2 reads VOC). Objects of unknown classes,
    inverted corners, boxes wholly outside the image, unreadable XML and
    missing or corrupt images are listed in `.skipped` (or raise
    `AnnotationError` naming the file and object with `strict=True`); boxes
    partly outside are clipped. Images without objects are kept.

    Args:
        annotations_dir: folder of `.xml` files (e.g. VOC2007/Annotations).
        image_dir: folder the XML `<filename>` entries are relative to (JPEGImages).
        image_size: int or (height, width).
        class_names: the classes in index order: a list, or a label-map JSON
            (`tt.LabelMap.save`); default: the sorted names found. Objects of
            other classes count as unknown.
        include_difficult: bool. False leaves out objects marked `<difficult>1`.
        batch_size, validation_split, test_split, seed, strict,
        bounding_box_format, max_boxes: as in `tt.data.coco_detection`.

    Example:

    >>> data = tt.data.voc_detection("VOC2007/Annotations", "VOC2007/JPEGImages",
    ...                              image_size=320, validation_split=0.1, seed=0)
    >>> data.class_names[:3]
    ['aeroplane', 'bicycle', 'bird']
    """
    root = Path(annotations_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"VOC annotations folder not found: {str(root)!r}.")
    files = sorted(root.glob("*.xml"))
    if not files:
        raise AnnotationError(f"No .xml annotation files in {str(root)!r}.")
    problems: list[tuple[str, str]] = []
    parsed = []
    for file in files:
        try:
            parsed.append((file, _parse(file)))
        except ValueError as error:
            problems.append((str(file), str(error)))
    label_map = _label_map(class_names, parsed)
    index = {name: k for k, name in enumerate(label_map.names)}
    records = []
    for file, (filename, objects) in parsed:
        boxes, classes, names = [], [], []
        for number, (name, corners, difficult) in enumerate(objects, start=1):
            where = f"{file}: object {number} ({name!r})"
            if difficult and not include_difficult:
                continue
            if name not in index:
                problems.append(
                    (where, f"class {name!r} is not one of {list(label_map.names)[:20]}")
                )
                continue
            x0, y0, x1, y1 = corners
            boxes.append([x0 - 1, y0 - 1, x1, y1])
            classes.append(index[name])
            names.append(
                (where, "bndbox " + " ".join(f"{k}={v:g}" for k, v in zip(_CORNERS, corners)))
            )
        records.append(
            ImageRecord(
                path=str(Path(image_dir) / filename),
                boxes=np.array(boxes, np.float32).reshape(-1, 4),
                classes=np.array(classes, np.int64),
                where=f"named in {file}",
                box_names=names,
            )
        )
    return file_detection_data(
        records,
        problems,
        class_names=label_map.names,
        class_ids=label_map.ids,
        source=repr(str(root)),
        image_size=as_size(image_size),
        batch_size=batch_size,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        strict=strict,
        bounding_box_format=validate_format(bounding_box_format),
        max_boxes=max_boxes,
    )


def _parse(file: Path) -> tuple[str, list[tuple[str, tuple[float, ...], bool]]]:
    """(image file name, [(class name, (xmin, ymin, xmax, ymax), difficult)])."""
    try:
        root = ElementTree.parse(file).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"not valid XML ({error})") from None
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise ValueError("no <filename>")
    objects = []
    for number, element in enumerate(root.findall("object"), start=1):
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        try:
            corners = tuple(float(box.findtext(key)) for key in _CORNERS)
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"object {number} ({name!r}) needs <bndbox> with numeric xmin, ymin, xmax, ymax"
            ) from None
        if not name:
            raise ValueError(f"object {number} has no <name>")
        objects.append((name, corners, (element.findtext("difficult") or "0").strip() == "1"))
    return filename, objects


def _label_map(class_names, parsed) -> LabelMap:
    if class_names is None:
        names = sorted({name for _, (_, objects) in parsed for name, _, _ in objects})
        if not names:
            raise AnnotationError("The VOC annotations name no objects; pass class_names=.")
        return LabelMap(tuple(names), tuple(range(len(names))))
    if isinstance(class_names, (str, os.PathLike)):
        return LabelMap.load(class_names)
    names = tuple(str(name) for name in class_names)
    return LabelMap(names, tuple(range(len(names))))

"""COCO mAP for detectors with pycocotools, old and new classes apart.

`coco_map` runs the reference COCO evaluation (pycocotools' `COCOeval`,
box IoU, 101-point interpolated precision, up to 100 detections per image) on
ground truth and predictions given as per-image boxes, classes and scores.
Class index k is evaluated as COCO category k + 1, so class 0 counts like any
other (KerasCV's COCO metric callbacks drop class id 0, keras-cv #2402).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfx_transfer.core.conventions import BOX_PADDING
from tfx_transfer.core.report import Report, fmt

DECIMALS = 10
SCORE_KEYS = ("confidence", "scores")
EVALUATION_CONFIDENCE = 0.001  # lowest detection score an evaluation counts (as YOLO val)


@dataclasses.dataclass
class DetectionReport(Report):
    """What `tt.coco_map` measured. Print it for a table; `to_json()` for a file.

    Attributes:
        map: float. COCO mAP@[.5:.95] over the classes that have ground truth.
        map50: float. mAP at IoU 0.5.
        per_class: dict. Class name -> AP@[.5:.95], or None for a class
            without ground-truth boxes (not part of any mean).
        per_class50: dict. Class name -> AP@.5 (None likewise).
        class_names: list of str.
        num_images, num_ground_truth, num_predictions: int.
        old_classes: int or None. The first `old_classes` classes are the old ones.
        old_map, new_map, old_map50, new_map50: float or None. Means of the
            per-class APs over old / new classes with ground truth.
        reference_old_map, reference_old_map50: float or None. The reference
            model's mAP@[.5:.95] and mAP@.5 on the old classes
            (`evaluate_detector(..., reference=)`).
        old_map_change: float or None. old_map - reference_old_map (negative =
            forgetting).
        per_step: dict or None. For an expanded detector (`evaluate_detector`):
            "original", "step 1", ... -> mAP@[.5:.95] over the classes each step
            added (see `tfx_transfer.core.metadata.class_steps`).
    """

    map: float
    map50: float
    per_class: dict[str, float | None]
    per_class50: dict[str, float | None]
    class_names: list[str]
    num_images: int
    num_ground_truth: int
    num_predictions: int
    old_classes: int | None = None
    old_map: float | None = None
    new_map: float | None = None
    old_map50: float | None = None
    new_map50: float | None = None
    reference_old_map: float | None = None
    reference_old_map50: float | None = None
    old_map_change: float | None = None
    per_step: dict[str, float | None] | None = None

    STEP_METRIC = "map"
    SUMMARY_KEYS = (
        "num_images",
        "num_ground_truth",
        "num_predictions",
        "map",
        "map50",
        "old_map",
        "new_map",
        "old_map50",
        "new_map50",
        "reference_old_map",
        "reference_old_map50",
        "old_map_change",
    )

    def per_class_rows(self) -> list[tuple[str, str]]:
        return [
            (name, f"AP {fmt(ap)}  AP50 {fmt(self.per_class50[name])}")
            for name, ap in self.per_class.items()
        ]


def coco_map(
    ground_truth: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    class_names: Sequence[str] | None = None,
    bounding_box_format: str = "xywh",
    old_classes: int | Sequence[str] | None = None,
    image_shape: tuple[int, int] | None = None,
) -> DetectionReport:
    """COCO mAP@[.5:.95], mAP@.5 and per-class AP, computed by pycocotools.

    Args:
        ground_truth: per-image boxes and classes: a dict `{"boxes": (B, N, 4),
            "classes": (B, N)}` (KerasCV batches, padded with -1; a list of
            per-image arrays works too), or a list of such dicts, one per image.
        predictions: the same for the detections, with scores under
            "confidence" (KerasCV `predict` output, whose "num_detections" is
            honoured) or "scores".
        class_names: the model's classes; default: "0", "1", ... up to the
            largest class index seen.
        bounding_box_format: str. KerasCV format of both box sets.
        old_classes: int or the first class names. Adds old/new means, e.g.
            after `tt.expand_classes` from 90 to 92 classes: `old_classes=90`.
        image_shape: (height, width). Needed only for relative box formats.

    Example:

    >>> truth = {"boxes": [[[10, 10, 20, 20]]], "classes": [[0]]}
    >>> found = {"boxes": [[[10, 10, 20, 20]]], "classes": [[0]], "confidence": [[0.9]]}
    >>> tt.coco_map(truth, found, class_names=["cat"]).map
    1.0
    """
    truth = _per_image(ground_truth, "ground_truth", scores=False)
    found = _per_image(predictions, "predictions", scores=True)
    if len(truth) != len(found):
        raise ValueError(
            f"ground_truth has {len(truth)} images but predictions has {len(found)}; "
            "they must describe the same images in the same order."
        )
    largest = max([int(c.max()) for _, c, _ in truth + found if c.size] or [-1])
    names = [str(k) for k in range(largest + 1)] if class_names is None else list(class_names)
    if largest >= len(names):
        raise ValueError(f"Class index {largest} is out of range for {len(names)} class_names.")
    if not any(c.size for _, c, _ in truth):
        raise ValueError("coco_map needs at least one ground-truth box.")
    shape = None if image_shape is None else (*image_shape, 3)
    evaluation = _evaluate(
        [(_xywh(b, bounding_box_format, shape), c) for b, c, _ in truth],
        [(_xywh(b, bounding_box_format, shape), c, s) for b, c, s in found],
        len(names),
    )
    precision = evaluation["precision"][:, :, :, 0, -1]  # (IoU, recall, class), area all, 100 dets
    per_class = {name: _ap(precision[:, :, k]) for k, name in enumerate(names)}
    per_class50 = {name: _ap(precision[:1, :, k]) for k, name in enumerate(names)}
    report = DetectionReport(
        map=_mean(per_class.values()),
        map50=_mean(per_class50.values()),
        per_class=per_class,
        per_class50=per_class50,
        class_names=names,
        num_images=len(truth),
        num_ground_truth=int(sum(c.size for _, c, _ in truth)),
        num_predictions=int(sum(c.size for _, c, _ in found)),
    )
    from tfx_transfer.core.metadata import old_class_count  # keras-free until needed

    old = old_class_count(old_classes, names)
    if old is not None:
        report.old_classes = old
        report.old_map = _mean_or_none(list(per_class.values())[:old])
        report.new_map = _mean_or_none(list(per_class.values())[old:])
        report.old_map50 = _mean_or_none(list(per_class50.values())[:old])
        report.new_map50 = _mean_or_none(list(per_class50.values())[old:])
    return report


def detection_predictions(
    model: Any, data: Any, *, split: str = "test", confidence_threshold: float | None = None
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """Ground truth and `model.predict` detections for every image of `data`.

    Args:
        model: a KerasCV detector (or anything whose `predict(images)` returns
            the KerasCV dict `{"boxes": (B, M, 4), "confidence": (B, M),
            "classes": (B, M), "num_detections": (B,)}`, padded with -1), in
            the data's bounding-box format.
        data: a `tf.data.Dataset` of `{"images", "bounding_boxes"}` batches (or
            `(images, bounding_boxes)` tuples), or a `DetectionData`.
        split: str. The `DetectionData` split to use ("test", "validation", "train").
        confidence_threshold: float or None. Score below which the model's
            decoder drops detections while predicting (None: the model's own).

    Returns:
        (ground_truth, predictions): dicts of per-image lists, ready for
        `tt.coco_map(ground_truth, predictions, ...)`.

    Example:

    >>> truth, found = tt.detection_predictions(detector, data, split="test")
    >>> report = tt.coco_map(truth, found, class_names=data.class_names, old_classes=90)
    """
    if hasattr(data, "class_names") and hasattr(data, split):
        dataset = getattr(data, split)
        if dataset is None:
            raise ValueError(f"The DetectionData has no {split!r} split.")
        data = dataset
    with _decoder_threshold(model, confidence_threshold):
        return _predictions(model, data)


def _predictions(model, data):
    truth = {"boxes": [], "classes": []}
    found = {"boxes": [], "classes": [], "confidence": []}
    for batch in data:
        if isinstance(batch, Mapping):
            images, boxes = batch["images"], batch["bounding_boxes"]
        else:
            images, boxes = batch[0], batch[1]
        for b, c, _ in _per_image(boxes, "ground_truth", scores=False):
            truth["boxes"].append(b)
            truth["classes"].append(c)
        output = model.predict(images, verbose=0)
        if not isinstance(output, Mapping) or not {"boxes", "classes", "confidence"} <= set(output):
            raise ValueError(
                "model.predict must return KerasCV detections {'boxes', 'confidence', 'classes', "
                f"'num_detections'}}; got {type(output).__name__}"
                f"{sorted(output) if isinstance(output, Mapping) else ''}. Raw heads (a model "
                "called directly, or without its prediction decoder) cannot be scored."
            )
        for b, c, s in _per_image(output, "predictions", scores=True):
            found["boxes"].append(b)
            found["classes"].append(c)
            found["confidence"].append(s)
    return truth, found


def evaluate_detector(
    model: Any,
    data: Any,
    *,
    reference: Any = None,
    old_classes: int | Sequence[str] | None = None,
    split: str = "test",
    confidence_threshold: float | None = EVALUATION_CONFIDENCE,
) -> DetectionReport:
    """COCO mAP of a detector on `data`, old and new classes apart after an expansion.

    Detections are scored down to `confidence_threshold` (0.001, as YOLO's
    validation does; KerasCV's decoders keep only scores above 0.5 (RetinaNet)
    or 0.2 (YOLOv8), which hides recall); None keeps the model's.

    `tt.evaluate` calls it for detection data. The old classes default to the
    count before the model's last expansion, or the reference model's classes;
    with a `reference` (the detector before expansion) the report also holds
    its mAP on the old classes and the change (the forgetting).

    Example:

    >>> report = tt.evaluate(expanded_detector, detection_data, reference=base_detector)
    >>> report.old_map_change
    -0.01
    """
    from tfx_transfer.core.metadata import class_info, class_steps, expanded_from

    metadata = class_info(model)
    box_format = getattr(model, "bounding_box_format", "xywh")
    truth, found = detection_predictions(
        model, data, split=split, confidence_threshold=confidence_threshold
    )
    old = old_classes if old_classes is not None else expanded_from(metadata, reference)
    report = coco_map(
        truth,
        found,
        class_names=metadata.class_names,
        bounding_box_format=box_format,
        old_classes=old,
    )
    steps = class_steps(metadata)
    if len(steps) > 1:
        report.per_step = {
            step: _mean_or_none([report.per_class[name] for name in names])
            for step, names in steps.items()
        }
    if reference is not None and report.old_map is not None:
        # Per-class AP depends only on that class's boxes, so the reference is
        # scored on the same old-class ground truth.
        _, reference_found = detection_predictions(
            reference, data, split=split, confidence_threshold=confidence_threshold
        )
        before = coco_map(
            _only_classes(truth, report.old_classes),
            reference_found,
            class_names=class_info(reference).class_names,
            bounding_box_format=box_format,
        )
        report.reference_old_map = before.map
        report.reference_old_map50 = before.map50
        report.old_map_change = round(report.old_map - before.map, DECIMALS)
    return report


@contextlib.contextmanager
def _decoder_threshold(model: Any, threshold: float | None):
    """Temporarily another confidence threshold in a detector's non-max suppression.

    The decoder's attribute changes and only `predict` is traced again: swapping
    in another decoder layer would add a layer to the model, which makes its
    next `fit` trace the train step again (seconds per evaluation)."""
    decoder = getattr(model, "prediction_decoder", None)
    if threshold is None or decoder is None or not hasattr(decoder, "confidence_threshold"):
        yield
        return
    previous = decoder.confidence_threshold
    decoder.confidence_threshold = float(threshold)
    model.predict_function = None  # traced again with the threshold
    try:
        yield
    finally:
        decoder.confidence_threshold = previous
        model.predict_function = None


def is_detection_data(data: Any) -> bool:
    """Whether `data` is a `DetectionData` or a dataset of detection batches."""
    if hasattr(data, "class_names") and hasattr(data, "bounding_box_format"):
        return True
    spec = getattr(data, "element_spec", None)
    return isinstance(spec, Mapping) and "bounding_boxes" in spec


def _only_classes(per_image: dict[str, list], count: int) -> dict[str, list]:
    """The boxes (and scores) of classes below `count`, image by image."""
    kept: dict[str, list] = {key: [] for key in per_image}
    for i in range(len(per_image["classes"])):
        classes = np.asarray(per_image["classes"][i])
        mask = (classes >= 0) & (classes < count)
        for key in per_image:
            kept[key].append(np.asarray(per_image[key][i])[mask])
    return kept


def _per_image(data, what: str, *, scores: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(boxes (n, 4), classes (n,) int, scores (n,))] without padding."""
    if isinstance(data, Mapping):
        if "boxes" not in data or "classes" not in data:
            raise ValueError(f"{what} needs 'boxes' and 'classes'; got keys {sorted(data)}.")
        score_key = next((key for key in SCORE_KEYS if key in data), None)
        if scores and score_key is None:
            raise ValueError(f"{what} needs scores under 'confidence' or 'scores'.")
        boxes, classes = _rows(data["boxes"]), _rows(data["classes"])
        score_rows = _rows(data[score_key]) if scores else [None] * len(boxes)
        counts = _rows(data["num_detections"]) if "num_detections" in data else None
        images = [
            {"boxes": b, "classes": c, "scores": s, "count": None if counts is None else counts[i]}
            for i, (b, c, s) in enumerate(zip(boxes, classes, score_rows))
        ]
        if len({len(boxes), len(classes), len(score_rows)}) != 1:
            raise ValueError(f"{what}: boxes, classes and scores list different numbers of images.")
    else:
        images = []
        for image in data:
            score_key = next((key for key in SCORE_KEYS if key in image), None)
            if scores and score_key is None:
                raise ValueError(f"{what} needs scores under 'confidence' or 'scores'.")
            images.append(
                {
                    "boxes": image["boxes"],
                    "classes": image["classes"],
                    "scores": image[score_key] if scores else None,
                    "count": image.get("num_detections"),
                }
            )
    result = []
    for position, image in enumerate(images):
        boxes = np.asarray(image["boxes"], np.float64).reshape(-1, 4)
        classes = np.asarray(image["classes"], np.float64).reshape(-1)
        values = (
            np.asarray(image["scores"], np.float64).reshape(-1) if scores else np.ones(len(classes))
        )
        if not len(boxes) == len(classes) == len(values):
            raise ValueError(
                f"{what}, image {position}: {len(boxes)} boxes, {len(classes)} classes and "
                f"{len(values)} scores."
            )
        keep = classes != BOX_PADDING
        if image["count"] is not None:
            keep &= np.arange(len(classes)) < int(np.asarray(image["count"]))
        if np.any(classes[keep] < 0) or np.any(classes[keep] != np.round(classes[keep])):
            raise ValueError(
                f"{what}, image {position}: classes must be indices >= 0 (or -1 for padding); "
                f"got {sorted(set(classes[keep].tolist()))[:5]}."
            )
        result.append((boxes[keep], classes[keep].astype(np.int64), values[keep]))
    return result


def _rows(value) -> list:
    """A batch array, a ragged tensor or a list of per-image arrays -> list of per-image rows."""
    if hasattr(value, "to_list") and not isinstance(value, np.ndarray):
        return [np.asarray(row) for row in value.to_list()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return list(np.asarray(value))


def _xywh(boxes: np.ndarray, bounding_box_format: str, image_shape) -> np.ndarray:
    if not len(boxes) or bounding_box_format.lower() == "xywh":
        return boxes
    from tfx_transfer.data.detection.boxes import to_xyxy

    xyxy = np.asarray(to_xyxy(boxes.astype(np.float32), bounding_box_format, image_shape))
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float64)


def _evaluate(truth, found, num_classes: int) -> dict:
    """Runs COCOeval ("bbox") quietly; class k is category k + 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i} for i in range(len(truth))]
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]

    def annotations(rows, with_scores):
        entries = []
        for image_id, row in enumerate(rows):
            for j, (box, label) in enumerate(zip(row[0], row[1])):
                entry = {
                    "id": len(entries) + 1,  # COCOeval treats id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
                if with_scores:
                    entry["score"] = float(row[2][j])
                entries.append(entry)
        return entries

    def coco(entries):
        api = COCO()
        api.dataset = {"images": images, "categories": categories, "annotations": entries}
        api.createIndex()
        return api

    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(
            coco(annotations(truth, False)), coco(annotations(found, True)), "bbox"
        )
        evaluator.params.catIds = [c["id"] for c in categories]
        evaluator.params.imgIds = [i["id"] for i in images]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval


def _ap(precision: np.ndarray) -> float | None:
    """Mean precision over thresholds and recall points, or None without ground truth.

    Rounded to 10 decimals: pycocotools divides by tp + fp + eps, so a perfect
    class would otherwise score 0.9999999999999998."""
    valid = precision[precision > -1]
    return round(float(np.mean(valid)), DECIMALS) if valid.size else None


def _mean(values) -> float:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), DECIMALS) if present else 0.0


def _mean_or_none(values) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), DECIMALS) if present else None

"""Mean IoU and pixel accuracy for semantic segmenters, old and new classes apart.

`segmentation_confusion` counts (true class, predicted class) pixel pairs with
`np.bincount`, leaving out the pixels whose truth is the ignore index (255 by
default, as in Pascal VOC). `segmentation_report` turns a confusion matrix into
per-class IoU = TP / (TP + FP + FN), mean IoU over the classes present (in the
truth or the prediction) and pixel accuracy. `evaluate_segmenter` runs a model
over a dataset batch by batch, accumulating the confusion, and compares an
expanded model's old classes with the model before expansion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.core.conventions import IGNORE_INDEX
from tfx_transfer.core.metadata import (
    class_info,
    class_steps,
    expanded_from,
    old_class_count,
)
from tfx_transfer.core.report import Report, fmt

BATCH_SIZE = 32  # images per model call when `data` is a tuple of arrays
SPLITS = ("test", "validation", "train")
MASK_KEYS = ("segmentation_masks", "masks")


@dataclasses.dataclass
class SegmentationReport(Report):
    """What `tt.evaluate_segmenter` measured. Print it for a table; `to_json()` for a file.

    Attributes:
        mean_iou: float. Mean IoU over the classes present in the truth or the
            prediction.
        pixel_accuracy: float. Correct / scored pixels.
        per_class: dict. Class name -> IoU = TP / (TP + FP + FN), or None for a
            class absent from both truth and prediction (not part of any mean).
        confusion: list of lists. confusion[true][predicted] pixel counts.
        class_names: list of str.
        num_images: int.
        num_pixels: int. Scored pixels (those whose truth is not the ignore index).
        old_classes: int or None. The first `old_classes` classes are the old ones.
        old_mean_iou, new_mean_iou: float or None. Means of the per-class IoUs
            (None left out) over the old / new classes.
        reference_old_mean_iou: float or None. The reference model's mean IoU on
            the old classes, from its own predictions on the same pixels.
        old_mean_iou_change: float or None. old_mean_iou - reference_old_mean_iou
            (negative = forgetting).
        per_step: dict or None. For an expanded (or merged) model: "original",
            "step 1", ... -> mean IoU over the classes each step added (see
            `tfx_transfer.core.metadata.class_steps`).
    """

    mean_iou: float
    pixel_accuracy: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    class_names: list[str]
    num_images: int
    num_pixels: int
    old_classes: int | None = None
    old_mean_iou: float | None = None
    new_mean_iou: float | None = None
    reference_old_mean_iou: float | None = None
    old_mean_iou_change: float | None = None
    per_step: dict[str, float | None] | None = None

    STEP_METRIC = "mean_iou"
    SUMMARY_KEYS = (
        "num_images",
        "num_pixels",
        "mean_iou",
        "pixel_accuracy",
        "old_mean_iou",
        "new_mean_iou",
        "reference_old_mean_iou",
        "old_mean_iou_change",
    )

    def per_class_rows(self) -> list[tuple[str, str]]:
        support = np.asarray(self.confusion, np.int64).sum(axis=1)
        return [
            (name, f"IoU {fmt(iou)}  pixels {int(support[i])}")
            for i, (name, iou) in enumerate(self.per_class.items())
        ]


def segmentation_confusion(
    truth: Any, predicted: Any, num_classes: int, *, ignore_index: int | None = IGNORE_INDEX
) -> np.ndarray:
    """Pixel confusion matrix `confusion[true][predicted]`, shape (C, C), int64.

    Args:
        truth: int masks, (..., H, W) or (..., H, W, 1).
        predicted: predicted class indices, the shape of `truth` (without its
            trailing 1).
        num_classes: int. C.
        ignore_index: int or None. Truth value of the pixels left out.

    Raises:
        ValueError: for a truth or predicted value outside [0, C) other than
            the ignore index (the message names it).

    Example:

    >>> segmentation_confusion([[0, 1, 255]], [[0, 0, 1]], 2)
    array([[1, 0],
           [1, 0]])
    """
    truth = _as_indices(truth, "truth")
    predicted = _as_indices(predicted, "predicted")
    if truth.shape != predicted.shape and truth.shape[-1:] == (1,):
        truth = truth[..., 0]
    if truth.shape != predicted.shape:
        raise ValueError(
            f"truth {truth.shape} and predicted {predicted.shape} must have the same shape."
        )
    truth, predicted = truth.ravel(), predicted.ravel()
    if ignore_index is not None:
        scored = truth != ignore_index
        truth, predicted = truth[scored], predicted[scored]
    for values, what in ((truth, "truth"), (predicted, "predicted")):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            found = sorted(set(values[bad].tolist()))
            ignoring = "" if ignore_index is None else f" (ignore index {ignore_index})"
            raise ValueError(
                f"{what} values must index the {num_classes} classes{ignoring}; found {found[:10]}."
            )
    counts = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def segmentation_report(
    confusion: Any,
    class_names: Sequence[str],
    *,
    old_classes: int | Sequence[str] | None = None,
    num_images: int = 0,
) -> SegmentationReport:
    """Per-class IoU, mean IoU and pixel accuracy of a pixel confusion matrix.

    Args:
        confusion: (C, C) counts, confusion[true][predicted].
        class_names: C names.
        old_classes: int or the first class names. Adds old/new mean IoU, e.g.
            after `tt.expand_classes` from 20 to 21 classes: `old_classes=20`.
        num_images: int. Recorded in the report.

    Example:

    >>> report = segmentation_report([[1, 1], [1, 1]], ["ground", "sky"])
    >>> report.per_class, report.mean_iou, report.pixel_accuracy
    ({'ground': 0.3333333333333333, 'sky': 0.3333333333333333}, 0.3333333333333333, 0.5)
    """
    confusion = np.asarray(confusion, np.int64)
    names = [str(name) for name in class_names]
    if confusion.shape != (len(names), len(names)):
        raise ValueError(
            f"confusion must be ({len(names)}, {len(names)}) for {len(names)} class names; "
            f"got {confusion.shape}."
        )
    total = int(confusion.sum())
    if total == 0:
        raise ValueError("The confusion matrix counts no pixels (all ignored, or no images).")
    ious = _ious(confusion)
    per_class = dict(zip(names, ious))
    report = SegmentationReport(
        mean_iou=_mean(ious) or 0.0,
        pixel_accuracy=float(np.trace(confusion) / total),
        per_class=per_class,
        confusion=confusion.tolist(),
        class_names=names,
        num_images=int(num_images),
        num_pixels=total,
    )
    old = old_class_count(old_classes, names)
    if old is not None:
        report.old_classes = old
        report.old_mean_iou = _mean(ious[:old])
        report.new_mean_iou = _mean(ious[old:])
    return report


def evaluate_segmenter(
    model: Any,
    data: Any,
    *,
    reference: Any = None,
    old_classes: int | Sequence[str] | None = None,
    ignore_index: int | None = None,
    split: str = "test",
) -> SegmentationReport:
    """Mean IoU and pixel accuracy of a segmenter, old and new classes apart after an expansion.

    The predicted class of a pixel is the argmax of the model's (B, H, W, C)
    output (probabilities or logits). Pixels whose truth is the ignore index
    are left out of every number. The confusion is accumulated batch by batch.

    Args:
        model: a segmenter (e.g. `tt.build_segmenter`); class names from
            `tt.class_info(model)`.
        data: a `SegmentationData` (its `split`, else validation, else train),
            a `tf.data.Dataset` of (images, masks) batches (or KerasCV
            `{"images", "segmentation_masks"}` dicts), or a tuple (images, masks)
            of arrays. Masks are (B, H, W) or (B, H, W, 1) class indices.
        reference: the segmenter before expansion; its mean IoU on the old
            classes (same pixels, its own predictions) gives the change.
        old_classes: int or the first class names. Default: the count before
            the model's last `expand_classes`, else the reference's class count.
        ignore_index: int. Default: `data.ignore_index`, else 255.
        split: str. The `SegmentationData` split: "test", "validation" or "train".

    Example:

    >>> report = tt.evaluate_segmenter(expanded, segmentation_data, reference=base)
    >>> print(report)            # mean_iou, pixel_accuracy, old/new mean IoU, change
    >>> report.old_mean_iou_change
    -0.012
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}.")
    if ignore_index is None:
        ignore_index = getattr(data, "ignore_index", None)
    if ignore_index is None:
        ignore_index = IGNORE_INDEX
    metadata = class_info(model)
    num_classes = metadata.num_classes
    reference_classes = class_info(reference).num_classes if reference is not None else 0
    reference_size = max(num_classes, reference_classes)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    reference_confusion = np.zeros((reference_size, reference_size), np.int64)
    num_images = 0
    for images, masks in _batches(_dataset(data, split)):
        masks = _as_indices(masks, "masks")
        if masks.ndim == 4 and masks.shape[-1] == 1:
            masks = masks[..., 0]
        predicted = _predict_classes(model, images, masks.shape, num_classes)
        confusion += segmentation_confusion(
            masks, predicted, num_classes, ignore_index=ignore_index
        )
        if reference is not None:
            reference_predicted = _predict_classes(
                reference, images, masks.shape, reference_classes
            )
            reference_confusion += segmentation_confusion(
                masks, reference_predicted, reference_size, ignore_index=ignore_index
            )
        num_images += len(masks)
    if num_images == 0:
        raise ValueError("evaluate_segmenter got no images.")
    old = old_classes if old_classes is not None else expanded_from(metadata, reference)
    report = segmentation_report(
        confusion, metadata.class_names, old_classes=old, num_images=num_images
    )
    steps = class_steps(metadata)
    if len(steps) > 1:
        report.per_step = {
            step: _mean([report.per_class[name] for name in names]) for step, names in steps.items()
        }
    if reference is not None and report.old_classes is not None:
        report.reference_old_mean_iou = _mean(_ious(reference_confusion)[: report.old_classes])
        if report.old_mean_iou is not None and report.reference_old_mean_iou is not None:
            report.old_mean_iou_change = report.old_mean_iou - report.reference_old_mean_iou
    return report


def _dataset(data: Any, split: str) -> Any:
    """The batches to evaluate: a SegmentationData's split (else validation, else train)."""
    if isinstance(data, tuple) or not any(hasattr(data, name) for name in SPLITS):
        return data
    for name in (split, "validation", "train"):
        dataset = getattr(data, name, None)
        if dataset is not None:
            return dataset
    raise ValueError(f"The segmentation data has no {split!r}, 'validation' or 'train' split.")


def _batches(data: Any) -> Iterator[tuple[Any, Any]]:
    """(images, masks) batches from a dataset, or chunks of a tuple of arrays."""
    if isinstance(data, tuple) and len(data) == 2:
        images, masks = data
        if len(images) != len(masks):
            raise ValueError(f"Got {len(images)} images but {len(masks)} masks.")
        for start in range(0, len(images), BATCH_SIZE):
            stop = start + BATCH_SIZE
            yield np.asarray(images[start:stop], np.float32), masks[start:stop]
        return
    for batch in data:
        if isinstance(batch, Mapping):
            key = next((k for k in MASK_KEYS if k in batch), None)
            if "images" not in batch or key is None:
                raise ValueError(
                    f"Dict batches need 'images' and 'segmentation_masks'; got {sorted(batch)}."
                )
            yield batch["images"], batch[key]
        else:
            yield batch[0], batch[1]


def _predict_classes(model: Any, images: Any, mask_shape: tuple, num_classes: int) -> np.ndarray:
    """Argmax over the last axis of the model's (B, H, W, C) output (compiled
    `predict_on_batch` when the model has it: faster than eager calls, and
    without the input-structure warning of KerasCV models called directly)."""
    predict = getattr(model, "predict_on_batch", None)
    outputs = predict(images) if predict is not None else model(images, training=False)
    outputs = keras.ops.convert_to_numpy(outputs)
    if outputs.shape[:3] != tuple(mask_shape) or outputs.shape[3:] != (num_classes,):
        raise ValueError(
            f"The model must output (B, H, W, {num_classes}) for masks of shape "
            f"{tuple(mask_shape)}; got {outputs.shape}."
        )
    return outputs.argmax(axis=-1)


def _as_indices(values: Any, what: str) -> np.ndarray:
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        if np.any(values != np.round(values)):
            raise ValueError(f"{what} must hold class indices; got non-integer values.")
    return values.astype(np.int64)


def _ious(confusion: np.ndarray) -> list[float | None]:
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    return [float(tp / u) if u else None for tp, u in zip(true_positive, union)]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None

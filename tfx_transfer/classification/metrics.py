"""Classifier metrics: accuracy, per-class precision/recall, confusion, old vs new classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.core.metadata import class_info, class_steps, expanded_from, old_class_count
from tfx_transfer.core.report import Report


@dataclasses.dataclass
class EvaluationReport(Report):
    """What `tt.evaluate` measured. Print it for a table; `to_json()` for a file.

    Attributes:
        top1, top5: float. Accuracy over all classes (top-5 capped at the class count).
        per_class: dict. Class name -> {"precision", "recall", "support"}.
        confusion: list of lists. confusion[true][predicted] counts.
        class_names: list of str.
        old_classes: int or None. The first `old_classes` columns are the old classes.
        old_accuracy, new_accuracy: float or None. Top-1 (over all outputs) on images
            of old / new classes.
        reference_old_accuracy: float or None. The reference model's top-1 on the
            old-class images.
        old_accuracy_change: float or None. old_accuracy - reference_old_accuracy
            (negative = forgetting).
        per_step: dict or None. For an expanded (or merged) model: "original",
            "step 1", ... -> top-1 on the images of the classes each step
            added (see `tfx_transfer.core.metadata.class_steps`).
        num_images: int.
    """

    top1: float
    top5: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    class_names: list[str]
    num_images: int
    old_classes: int | None = None
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    reference_old_accuracy: float | None = None
    old_accuracy_change: float | None = None
    per_step: dict[str, float | None] | None = None

    STEP_METRIC = "top1"
    SUMMARY_KEYS = (
        "num_images",
        "top1",
        "top5",
        "old_accuracy",
        "new_accuracy",
        "reference_old_accuracy",
        "old_accuracy_change",
    )

    def per_class_rows(self) -> list[tuple[str, str]]:
        return [
            (name, f"P {v['precision']:.3f}  R {v['recall']:.3f}  n {v['support']}")
            for name, v in self.per_class.items()
        ]


def evaluate_classifier(
    model: keras.Model,
    data: Any,
    *,
    reference: keras.Model | None = None,
    old_classes: int | Sequence[str] | None = None,
) -> EvaluationReport:
    """Evaluates a classifier, and for an expanded one its old and new classes apart
    (`tt.evaluate` calls it for classifiers).

    Takes the arguments of `tt.evaluate` (a classifier; (images, int labels)
    batches or arrays); `reference`'s top-1 on the old-class images gives the
    change on old classes.

    Example:

    >>> report = evaluate_classifier(expanded, (x_test, y_test), reference=base)
    >>> report.old_accuracy_change
    -0.004
    """
    metadata = class_info(model)
    outputs, labels, reference_outputs = _predict_all(model, data, reference)
    num_classes = outputs.shape[1]
    if labels.size == 0:
        raise ValueError("evaluate got no images.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"Labels must index the model's {num_classes} classes; found labels "
            f"{sorted(set(labels[(labels < 0) | (labels >= num_classes)].tolist()))}."
        )
    predicted = outputs.argmax(axis=1)
    k = min(5, num_classes)
    top_k = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    report = EvaluationReport(
        top1=float(np.mean(predicted == labels)),
        top5=float(np.mean((top_k == labels[:, None]).any(axis=1))),
        per_class=_per_class(confusion, metadata.class_names),
        confusion=confusion.tolist(),
        class_names=list(metadata.class_names),
        num_images=int(labels.size),
    )
    steps = class_steps(metadata)
    if len(steps) > 1:
        index = {name: i for i, name in enumerate(metadata.class_names)}
        report.per_step = {}
        for step, names in steps.items():
            in_step = np.isin(labels, [index[name] for name in names])
            report.per_step[step] = _mean(predicted[in_step] == labels[in_step])
    old = old_class_count(old_classes, metadata.class_names)
    if old is None:
        old = expanded_from(metadata, reference)
    if old is not None:
        is_old = labels < old
        report.old_classes = old
        report.old_accuracy = _mean(predicted[is_old] == labels[is_old])
        report.new_accuracy = _mean(predicted[~is_old] == labels[~is_old])
        if reference_outputs is not None:
            reference_predicted = reference_outputs.argmax(axis=1)
            report.reference_old_accuracy = _mean(reference_predicted[is_old] == labels[is_old])
            if report.old_accuracy is not None and report.reference_old_accuracy is not None:
                report.old_accuracy_change = report.old_accuracy - report.reference_old_accuracy
    return report


def _predict_all(model, data, reference):
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = np.asarray(data[0], np.float32), np.asarray(data[1])
        reference_outputs = reference.predict(images, verbose=0) if reference is not None else None
        return model.predict(images, verbose=0), labels.astype(np.int64).ravel(), reference_outputs
    outputs, labels, reference_outputs = [], [], []
    for images, batch_labels in data:
        outputs.append(keras.ops.convert_to_numpy(model(images, training=False)))
        labels.append(np.asarray(batch_labels).ravel())
        if reference is not None:
            reference_outputs.append(keras.ops.convert_to_numpy(reference(images, training=False)))
    return (
        np.concatenate(outputs),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(reference_outputs) if reference is not None else None,
    )


def _per_class(confusion: np.ndarray, names) -> dict[str, dict[str, float]]:
    true_positive = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    return {
        name: {
            "precision": float(true_positive[i] / predicted[i]) if predicted[i] else 0.0,
            "recall": float(true_positive[i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None

"""Refining, dropping and reordering the classes of a classifier, detector or segmenter.

Each operation returns a new model (the input is untouched) whose classes are
chosen columns of the old classification layer(s), bit for bit, with the class
metadata updated and the operation recorded in its history.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfx_transfer.core.graph import all_layers
from tfx_transfer.core.label_maps import LabelMap
from tfx_transfer.core.metadata import ClassMetadata, class_info
from tfx_transfer.heads.locate import Classifier, locate_classifier
from tfx_transfer.surgery.columns import rebuild_classifier, trainable_columns
from tfx_transfer.surgery.detectors import (
    detector_metadata,
    rebuild_with_classes,
    require_one_class_head,
)

ClassList = Sequence[str | int]


def refine_classes(model: keras.Model, classes: ClassList) -> keras.Model:
    """Returns a copy of `model` in which only the named classes' columns train.

    Every other layer is frozen (the backbone's BatchNorm layers in inference
    mode) and every other class's columns sit in frozen blocks (detectors:
    frozen channels), so after training the other classes' outputs are bit
    for bit what they were. Train it with `model.fit`, or with `tt.fine_tune`
    stages that train `"classifier"` only (a stage that unfreezes more layers
    moves the other classes' outputs too).

    Args:
        model: a classifier, detector (RetinaNet, YOLOv8, Faster R-CNN) or segmenter.
        classes: names (or column indices) of the classes to improve.

    Example:

    >>> refined = tt.refine_classes(model, classes=["red_arrow"])
    >>> refined.fit(images, labels, epochs=5)     # only red_arrow's column moves
    """
    classifier, metadata = _located(model, "refine_classes")
    chosen = set(_indices(metadata, classes, "refine_classes"))
    entry = {
        "operation": "refine_classes",
        "classes": [metadata.class_names[i] for i in sorted(chosen)],
    }
    new_metadata = metadata.replace(history=metadata.history + (entry,))
    if classifier.rebuilds_model:
        refined = rebuild_with_classes(
            model,
            classifier,
            new_metadata,
            range(metadata.num_classes),
            frozen_classes=[c for c in range(metadata.num_classes) if c not in chosen],
        )
        train_only(refined, locate_classifier(refined).layers)
        return refined
    columns, start = {}, 0
    for layer, (kernel, bias) in zip(classifier.layers, classifier.level_weights()):
        flags = [start + column in chosen for column in range(bias.size)]
        columns[layer.name] = (kernel, bias, flags)
        start += bias.size
    refined = rebuild_classifier(model, classifier, columns, new_metadata)
    train_only(refined, locate_classifier(refined).layers)
    return refined


def drop_classes(model: keras.Model, classes: ClassList) -> keras.Model:
    """Returns a copy of `model` without the named classes.

    The remaining classes keep their columns (and frozen state), in order, so
    their logits are bit for bit the old ones.

    Args:
        model: a classifier, detector (RetinaNet, YOLOv8, Faster R-CNN) or segmenter.
        classes: names (or column indices) of the classes to remove.

    Example:

    >>> smaller = tt.drop_classes(model, classes=["class_12", "class_26"])
    >>> tt.class_info(smaller).num_classes
    88
    """
    classifier, metadata = _located(model, "drop_classes")
    dropped = set(_indices(metadata, classes, "drop_classes"))
    keep = [c for c in range(metadata.num_classes) if c not in dropped]
    if not keep:
        raise ValueError("drop_classes would remove every class; keep at least one.")
    entry = {
        "operation": "drop_classes",
        "dropped": [metadata.class_names[c] for c in sorted(dropped)],
    }
    return _select(model, classifier, metadata, keep, entry)


def reorder_classes(model: keras.Model, order: ClassList | LabelMap) -> keras.Model:
    """Returns a copy of `model` with its classes (output columns) in another order.

    Args:
        model: a classifier, detector or segmenter.
        order: every class name (or index) once, in the new order; or a
            `tt.LabelMap` with the model's class names, whose order and ids
            the model takes (e.g. contiguous ids to COCO's sparse ids).

    Example:

    >>> coco_order = tt.reorder_classes(model, tt.LabelMap.coco(coco_names))
    >>> tt.class_info(coco_order).class_ids[:3]
    (1, 2, 3)
    """
    classifier, metadata = _located(model, "reorder_classes")
    names = order.names if isinstance(order, LabelMap) else order
    sources = _indices(metadata, names, "reorder_classes")
    missing = [n for i, n in enumerate(metadata.class_names) if i not in set(sources)]
    if missing:
        raise ValueError(
            f"reorder_classes needs every class of {model.name!r} once; missing {missing[:10]}."
        )
    entry = {"operation": "reorder_classes", "order": [metadata.class_names[c] for c in sources]}
    ids = order.ids if isinstance(order, LabelMap) else None
    return _select(model, classifier, metadata, sources, entry, ids=ids)


def train_only(model: keras.Model, layers: Sequence[keras.layers.Layer]) -> None:
    """Freezes every layer of `model` except `layers` (which may sit inside other
    layers, like a detector's class convs inside its head).

    Example:

    >>> train_only(model, [model.get_layer("predictions")])
    """
    for layer in model.layers:
        inner = all_layers(layer, include_self=True)
        if not any(sub is target for sub in inner for target in layers):
            layer.trainable = False
            continue
        for sub in inner:  # parents come before their children
            sub.trainable = sub is layer or any(sub is target for target in layers)


def _select(model, classifier: Classifier, metadata, sources, entry, ids=None) -> keras.Model:
    """A copy whose class j is old class `sources[j]`."""
    new_metadata = metadata.replace(
        class_names=tuple(metadata.class_names[c] for c in sources),
        class_ids=tuple(ids) if ids is not None else tuple(metadata.class_ids[c] for c in sources),
        history=metadata.history + (entry,),
    )
    if classifier.rebuilds_model:
        frozen = {c for record in getattr(model, "frozen_channels", [])[:1] for c in record.classes}
        return rebuild_with_classes(
            model,
            classifier,
            new_metadata,
            sources,
            frozen_classes=[j for j, c in enumerate(sources) if c in frozen],
        )
    columns, start, new_start = {}, 0, 0
    for layer, (kernel, bias) in zip(classifier.layers, classifier.level_weights()):
        stop = start + bias.size
        local = [c - start for c in sources if start <= c < stop]
        positions = [j for j, c in enumerate(sources) if start <= c < stop]
        if positions != list(range(new_start, new_start + len(local))):
            raise ValueError(
                f"{entry['operation']} cannot move classes between the class branches of "
                f"{model.name!r} ({[b.name for b in classifier.layers]}): each branch has its "
                "own features. Keep each branch's classes together, in branch order."
            )
        if not local:
            raise ValueError(
                f"{entry['operation']} would leave class branch {layer.name!r} of "
                f"{model.name!r} without classes."
            )
        flags = trainable_columns(layer)
        columns[layer.name] = (kernel[:, local], bias[local], [flags[c] for c in local])
        start, new_start = stop, new_start + len(local)
    return rebuild_classifier(model, classifier, columns, new_metadata)


def _located(model: keras.Model, operation: str) -> tuple[Classifier, ClassMetadata]:
    classifier = locate_classifier(model)
    if classifier.rebuilds_model:
        require_one_class_head(model, classifier, operation)
        return classifier, detector_metadata(model, classifier)
    return classifier, class_info(model)


def _indices(metadata: ClassMetadata, classes: ClassList, operation: str) -> list[int]:
    if isinstance(classes, (str, int)):
        raise TypeError(f"{operation} takes a list of classes; got {classes!r}.")
    names = metadata.class_names
    indices, unknown = [], []
    for item in classes:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if 0 <= item < len(names):
                indices.append(int(item))
            else:
                unknown.append(item)
        elif str(item) in names:
            indices.append(names.index(str(item)))
        else:
            unknown.append(item)
    if unknown:
        raise ValueError(
            f"{operation}: unknown classes {unknown}; the model's classes are "
            f"{list(names)[:20]}{'...' if len(names) > 20 else ''}."
        )
    if not indices:
        raise ValueError(f"{operation}: no classes given.")
    duplicated = sorted({names[i] for i in indices if indices.count(i) > 1})
    if duplicated:
        raise ValueError(f"{operation}: classes given more than once: {duplicated}.")
    return indices

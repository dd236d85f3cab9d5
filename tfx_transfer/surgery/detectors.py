"""Class surgery of KerasCV tasks: a detector or segmenter rebuilt with other classes,
weights carried by layout.

KerasCV's detectors and segmenters keep their class convolutions inside their
graph, so a class operation rebuilds the model with the new class count
(`tt.detection.rebuild_detector`, `segmentation.rebuild_segmenter`) and copies
every weight over: weights that
keep their shape as they are, the class convs' channels class by class at
their new places (see `locate.py` for the layouts), and frozen classes held
by `FrozenChannels` constraints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.core.metadata import ClassMetadata
from tfx_transfer.heads.locate import ANCHOR_BRANCHED, PER_PIXEL, Classifier, locate_classifier


def detector_metadata(model: keras.Model, classifier: Classifier) -> ClassMetadata:
    """Our detectors carry metadata; other KerasCV detectors get default names."""
    metadata = getattr(model, "class_metadata", None)
    if isinstance(metadata, ClassMetadata):
        return metadata
    names = ClassMetadata.default(classifier.num_classes).class_names
    return ClassMetadata(names, activation=classifier.output_activation, multi_label=True)


def rebuild_with_classes(
    model: keras.Model,
    classifier: Classifier,
    metadata: ClassMetadata,
    sources: Sequence[int | None],
    *,
    frozen_classes: Sequence[int] = (),
    init: Any = None,
    bias_values: np.ndarray | None = None,
    added_columns: np.ndarray | None = None,
) -> keras.Model:
    """A copy of detector `model` whose class `j` is its old class `sources[j]`.

    `sources[j] = None` marks an added class, initialised by `init` (a Keras
    initializer, "zeros" or "mean" of the kept classes; "imprint" takes the
    class layer's `added_columns`) with biases `bias_values`. `frozen_classes`
    (new indices) are held fixed in training.

    Example:

    >>> located = locate_classifier(detector)                      # 3 classes
    >>> swapped = rebuild_with_classes(detector, located, metadata, [2, 1, 0])
    """
    from tfx_transfer.detection import FrozenChannels

    frozen = [
        FrozenChannels(reference, metadata.num_classes, tuple(frozen_classes), width, leading)
        for reference, width, leading in zip(
            classifier.references, classifier.widths, classifier.leading
        )
        if len(frozen_classes)
    ]
    new_model = _rebuild(model, classifier, class_metadata=metadata, frozen_channels=frozen)
    copy_detector_weights(
        model,
        new_model,
        classifier,
        locate_classifier(new_model),
        sources=sources,
        init=init,
        bias_values=bias_values,
        added_columns=added_columns,
    )
    return new_model


def without_frozen_channels(model: keras.Model, classifier: Classifier) -> keras.Model:
    """A copy of detector `model` with the same weights and no frozen channels
    (nor their snapshot weights): `tt.merge_frozen` for detectors."""
    copy = _rebuild(
        model,
        classifier,
        class_metadata=detector_metadata(model, classifier),
        classification_head=getattr(model, "classification_head", None),
    )
    _copy_layers(model, copy)
    return copy


def add_retinanet_branch(
    model: keras.Model,
    classifier: Classifier,
    metadata: ClassMetadata,
    count: int,
    *,
    init: Any,
    bias_values: np.ndarray,
) -> keras.Model:
    """A copy of RetinaNet `model` whose `count` new classes get their own class branch.

    The branch copies the original head's convs (weights included) and ends
    in a class conv for the new classes (`init`, `bias_values`); every earlier
    branch is frozen whole (constraints, as for frozen class channels).
    """
    from tfx_transfer.detection import FrozenChannels, rebuild_detector
    from tfx_transfer.detection.branch_head import BranchedClassificationHead

    old_head = model.classification_head
    branched = classifier.layout == ANCHOR_BRANCHED
    old_branches = list(old_head.branches) if branched else [old_head]
    counts = list(old_head.branch_classes) if branched else [classifier.num_classes]
    convs = int(old_branches[0].num_conv_layers)
    head = BranchedClassificationHead(
        [*counts, count], anchors=classifier.anchors, num_conv_layers=convs, name=old_head.name
    )
    parts = [*(f"conv_layers.{j}" for j in range(convs)), "prediction_layer"]
    frozen = [
        FrozenChannels(f"classification_head.branches.{index}.{part}", period=1, classes=(0,))
        for index in range(len(old_branches))
        for part in parts
    ]
    new_model = rebuild_detector(
        model, class_metadata=metadata, frozen_channels=frozen, classification_head=head
    )
    _copy_layers(model, new_model, skip=old_head)
    new_branches = new_model.classification_head.branches
    for old_branch, new_branch in zip(old_branches, new_branches):
        new_branch.set_weights(old_branch.get_weights())
    branch = new_branches[-1]
    for old_conv, new_conv in zip(old_branches[0].conv_layers, branch.conv_layers):
        new_conv.set_weights(old_conv.get_weights())
    kernel = _initial_kernel(init, tuple(branch.prediction_layer.kernel.shape), "float32")
    if init == "mean":  # each anchor's new classes: the mean of the original classes
        old_kernel, _ = _conv_kernel_and_bias_of(old_branches[0].prediction_layer)
        per_anchor = old_kernel.reshape(*old_kernel.shape[:-1], classifier.anchors, counts[0])
        kernel = np.repeat(per_anchor.mean(axis=-1), count, axis=-1).astype("float32")
    branch.prediction_layer.kernel.assign(kernel)
    branch.prediction_layer.bias.assign(np.tile(bias_values, classifier.anchors))
    new_model.refresh_frozen_snapshots()
    return new_model


def require_one_class_head(model: keras.Model, classifier: Classifier, operation: str) -> None:
    """Raises for operations that do not apply to RetinaNet's class branches."""
    if classifier.layout == ANCHOR_BRANCHED:
        raise ValueError(
            f"{operation} needs one class head, but RetinaNet {model.name!r} has "
            f"{len(classifier.layers)} class branches; apply it before "
            "expand_classes(separate_branch=True), or add classes with separate_branch=True."
        )


def _rebuild(model, classifier: Classifier, **arguments) -> keras.Model:
    """The KerasCV task `model` rebuilt with `rebuild_detector` or `rebuild_segmenter`."""
    if classifier.layout == PER_PIXEL:
        from tfx_transfer.segmentation.build import rebuild_segmenter

        arguments.pop("classification_head", None)
        return rebuild_segmenter(model, **arguments)
    from tfx_transfer.detection import rebuild_detector

    return rebuild_detector(model, **arguments)


def _copy_layers(source: keras.Model, target: keras.Model, skip=None) -> None:
    """Copies the weights of `source`'s layers into `target`'s, in order (`skip`: a layer of
    `source` left out, with its counterpart)."""
    if len(source.layers) != len(target.layers):
        raise ValueError(
            f"The rebuilt detector has {len(target.layers)} layers, not {len(source.layers)}."
        )
    for old, new in zip(source.layers, target.layers):
        if old is not skip and old.weights:
            new.set_weights(old.get_weights())


def _conv_kernel_and_bias_of(layer) -> tuple[np.ndarray, np.ndarray]:
    return keras.ops.convert_to_numpy(layer.kernel), keras.ops.convert_to_numpy(layer.bias)


def copy_detector_weights(
    old_model,
    new_model,
    old,
    new,
    *,
    sources=None,
    init=None,
    bias_values=None,
    added_columns=None,
) -> None:
    """Copies every weight of `old_model` into the rebuilt `new_model`.

    Weights that keep their shape are copied as they are; the class layers get
    old class `sources[j]`'s channels as class `j` (default: the old classes
    first, in order), their leading columns (Faster R-CNN's background) as
    they are, and for added classes (`None`) `init`/`bias_values`, or
    `added_columns` (imprinting) in the first class layer; box-delta layers
    give added classes the mean of the kept classes' columns. Other resized
    weights (YOLOv8's inner class convs, max(classes, P3 width) wide) get their
    old slice, with zero weights from new input channels to old output
    channels. Frozen-channel snapshots are taken afterwards.
    """
    if sources is None:
        sources = [*range(old.num_classes), *[None] * (new.num_classes - old.num_classes)]
    class_variables = {id(v) for layer in old.layers for v in layer.weights}
    old_layers, new_layers = old_model.layers, new_model.layers
    if [type(a) for a in old_layers] != [type(b) for b in new_layers]:
        raise ValueError(
            f"The rebuilt detector's layers do not match {old_model.name!r}'s; cannot copy weights."
        )
    for old_layer, new_layer in zip(old_layers, new_layers):
        if len(old_layer.weights) != len(new_layer.weights):
            raise ValueError(
                f"Layer {old_layer.name!r} has {len(old_layer.weights)} weights but its rebuilt "
                f"copy {new_layer.name!r} has {len(new_layer.weights)}; cannot copy weights."
            )
        for o, n in zip(old_layer.weights, new_layer.weights):
            if id(o) in class_variables:
                continue
            value = keras.ops.convert_to_numpy(o)
            if tuple(o.shape) != tuple(n.shape):
                value = _carried(value, keras.ops.convert_to_numpy(n), o.path)
            n.assign(value)
    kept = [j for j, source in enumerate(sources) if source is not None]
    added_classes = [j for j, source in enumerate(sources) if source is None]
    weights = []
    for index, ((old_kernel, old_bias), layer) in enumerate(zip(old.level_weights(), new.layers)):
        old_channels = old.channels([sources[j] for j in kept], layer=index)
        new_channels = new.channels(kept, layer=index)
        added = new.channels(added_classes, layer=index)
        boxes = new.widths[index] > 1
        kernel = _initial_kernel(
            None if boxes else init, tuple(layer.kernel.shape), old_kernel.dtype
        )
        bias = np.zeros(tuple(layer.bias.shape), old_bias.dtype)
        inputs = min(old_kernel.shape[-2], kernel.shape[-2])
        lead = new.leading[index]
        kernel[..., :lead] = 0
        kernel[..., :inputs, :lead] = old_kernel[..., :inputs, :lead]
        bias[:lead] = old_bias[:lead]
        kernel[..., new_channels] = 0
        kernel[..., :inputs, new_channels] = old_kernel[..., :inputs, old_channels]
        bias[new_channels] = old_bias[old_channels]
        if len(added):
            if init == "mean" or boxes:  # the mean of the kept classes, anchor by anchor
                shape = (*kernel.shape[:-1], new.anchors, len(kept), new.widths[index])
                mean = kernel[..., new_channels].reshape(shape).mean(axis=-2, keepdims=True)
                repeated = np.repeat(mean, len(added_classes), axis=-2)
                kernel[..., added] = repeated.reshape(*kernel.shape[:-1], -1)
            if boxes:
                per_class = bias[new_channels].reshape(new.anchors, len(kept), -1)
                bias[added] = np.repeat(
                    per_class.mean(axis=1, keepdims=True), len(added_classes), axis=1
                ).reshape(-1)
            else:
                bias[added] = np.tile(bias_values, new.anchors)
            if added_columns is not None and index == 0:
                kernel[..., added] = added_columns
        weights.append((kernel, bias))
    new.assign_levels(weights)
    new_model.refresh_frozen_snapshots()


def check_restorable(new_model, old_model, new: Classifier, old: Classifier) -> None:
    """Raises unless detector `new_model` can take `old_model`'s class channels back."""
    if (new.layout, new.anchors, len(new.layers)) != (old.layout, old.anchors, len(old.layers)):
        raise ValueError(
            f"{new_model.name!r} ({new.layout}, {len(new.layers)} class layers) and "
            f"{old_model.name!r} ({old.layout}, {len(old.layers)} class layers) are not the same "
            "kind of detector; restore_old_classes needs an expansion of the old detector."
        )
    if new.num_classes < old.num_classes:
        raise ValueError(
            f"{new_model.name!r} has {new.num_classes} classes, fewer than the "
            f"{old.num_classes} of {old_model.name!r}."
        )


def restore_detector(new_model, old_model, new: Classifier, old: Classifier) -> keras.Model:
    """`tt.restore_old_classes` for detectors: the old class channels copied back."""
    classes = range(old.num_classes)
    weights = []
    for index, ((old_kernel, old_bias), (kernel, bias)) in enumerate(
        zip(old.level_weights(), new.level_weights())
    ):
        old_channels = old.channels(classes, layer=index)
        new_channels = new.channels(classes, layer=index)
        inputs = old_kernel.shape[-2]
        if kernel.shape[:-2] != old_kernel.shape[:-2] or kernel.shape[-2] < inputs:
            raise ValueError(
                f"Class kernel {kernel.shape} of {new_model.name!r} cannot hold the "
                f"{old_kernel.shape} kernel of {old_model.name!r}."
            )
        lead = new.leading[index]
        kernel[..., :inputs, :lead], bias[:lead] = old_kernel[..., :lead], old_bias[:lead]
        kernel[..., new_channels] = 0
        kernel[..., :inputs, new_channels] = old_kernel[..., old_channels]
        bias[new_channels] = old_bias[old_channels]
        weights.append((kernel, bias))
    new.assign_levels(weights)
    if hasattr(new_model, "refresh_frozen_snapshots"):
        new_model.refresh_frozen_snapshots()
    return new_model


def _initial_kernel(init, shape: tuple[int, ...], dtype) -> np.ndarray:
    if init in (None, "zeros", "mean", "imprint"):  # "mean", "imprint": filled in by the caller
        return np.zeros(shape, dtype)
    return keras.ops.convert_to_numpy(keras.initializers.get(init)(shape)).astype(dtype)


def _carried(old: np.ndarray, fresh: np.ndarray, path: str) -> np.ndarray:
    """`fresh` with `old` in its leading corner; the new input channels of a conv
    kernel do not feed its old output channels."""
    if old.ndim != fresh.ndim or any(a > b for a, b in zip(old.shape, fresh.shape)):
        raise ValueError(
            f"Cannot carry weight {path!r} over from {old.shape} to {fresh.shape}: the class "
            "head's inner layers change width with the number of classes (YOLOv8: max(classes, "
            "P3 width)), so the kept classes' outputs could not stay exact."
        )
    value = fresh.copy()
    if old.ndim == 4:
        value[:, :, old.shape[2] :, : old.shape[3]] = 0
    value[tuple(slice(0, size) for size in old.shape)] = old
    return value

"""Growing a classifier by new classes while keeping the old ones bit for bit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.core.metadata import ClassMetadata, TransferModel, class_info, with_metadata
from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.locate import (
    ANCHOR_BRANCHED,
    ANCHOR_MAJOR,
    BRANCHED,
    TWO_STAGE,
    Classifier,
    locate_classifier,
)
from tfx_transfer.surgery.branch import add_class_branch
from tfx_transfer.surgery.columns import rebuild_classifier
from tfx_transfer.surgery.detectors import (
    add_retinanet_branch,
    check_restorable,
    detector_metadata,
    rebuild_with_classes,
    require_one_class_head,
    restore_detector,
    without_frozen_channels,
)
from tfx_transfer.surgery.initializers import (
    KERNEL_INITS,
    embed_box_examples,
    embed_examples,
    new_biases,
    new_columns,
)
from tfx_transfer.surgery.rebuild import clone_with_weights, features_before


def expand_classes(
    model: keras.Model,
    num_new_classes: int | None = None,
    *,
    new_class_names: Sequence[str] | None = None,
    layer: str | None = None,
    init: Any = "glorot_uniform",
    bias_init: Any = None,
    freeze_old: bool = False,
    examples: Mapping[str, Any] | None = None,
    separate_branch: bool = False,
) -> keras.Model:
    """Returns a new model with more classes; the old classes' logits are unchanged.

    The classification layer's kernel grows from features x N to features x
    (N + k) and its bias from N to N + k: columns 0..N-1 are the old ones, bit
    for bit, so before any training the new model's logits for the old classes
    equal the old model's exactly. Everything else (weights, trainable flags,
    BatchNorm statistics, class metadata) is copied; `model` is not modified.
    A classifier with a built-in activation (`Dense(90, activation="softmax")`)
    becomes a linear `predictions` layer followed by an `Activation` layer.
    Expanding again (90 -> 92 -> 95) appends again; the model's
    `class_info(model).history` records which classes came in which step.

    Args:
        model: a classifier (ours, or a functional/Sequential model ending in Dense).
        num_new_classes: int. How many classes to add (or give `new_class_names`).
        new_class_names: sequence of str. Names of the new classes, appended
            after the old ones; default `class_N`, `class_N+1`, ...
        layer: str. Name of the classification layer; found automatically by default.
        init: "glorot_uniform" (or any Keras initializer), "zeros", "mean" (mean
            of the old columns), or "imprint" (weight imprinting from `examples`).
        bias_init: "zeros", "mean", or a prior probability p: -log((1-p)/p).
            Defaults to "zeros", and to RetinaNet's focal-loss prior p=0.01 for
            RetinaNet detectors.
        freeze_old: bool. Put all old columns (those of earlier expansions too)
            in frozen blocks that training never changes (a `ColumnBlockDense`;
            `tt.merge_frozen` folds it back into a plain Dense for export).
            Detectors keep their plain class convs and hold the old channels
            fixed by a variable constraint that writes them back after every
            optimizer update (works with `fit`, any optimizer, and survives saving).
        examples: for `init="imprint"`: mapping new class name -> a few images
            (uint8 arrays or paths); for Faster R-CNN -> (images [n, H, W, 3],
            boxes [n, 4] in its box format, one example box per image), whose
            box-head features are imprinted into the box classifier.
        separate_branch: bool. Give the new classes their own copy of the class
            subnet (initialised from it) and a fresh classification layer; the
            old subnet and classes are frozen whatever `freeze_old` says, so the
            features the old classes use cannot move. Classifiers: a copy of the
            hidden Dense layers, outputs joined by a `class_logits` layer (see
            `surgery/branch.py`). RetinaNet: a `BranchedClassificationHead`
            (keep the feature pyramid frozen too: it feeds every class). Not
            for YOLOv8, whose class convs live inside KerasCV's fused head.

    Detectors (`tt.build_detector`) are rebuilt with N + k classes: every
    weight that keeps its shape is copied, the old classes' channels of the
    class convolution(s) go to their new places (RetinaNet: anchor-major,
    old channel a*N+c becomes a*(N+k)+c; YOLOv8: the first N channels of each
    level's class conv). When YOLOv8's inner class convs widen (N + k above the
    P3 width) their old slices are copied and the new inputs feed the old
    channels with zero weights. Faster R-CNN's box classifier grows from
    features x (N + 1) to features x (N + k + 1) (column 0 stays background)
    and its class-major box regressor from 4N to 4(N + k) columns; the new
    classes' box deltas start as the mean of the old classes'. Raw class
    outputs for the old classes (`detector(images)`) are unchanged.

    Example:

    >>> base = tt.demo.base_model()                      # 1024 x 90 kernel
    >>> model = tt.expand_classes(base, new_class_names=["blue_crescent", "red_arrow"])
    >>> model.get_layer("predictions").kernel.shape
    (1024, 92)
    >>> detector = tt.expand_classes(retinanet, new_class_names=["kite", "drone"],
    ...                              freeze_old=True)
    """
    classifier = locate_classifier(model, layer)
    if bias_init is None:
        bias_init = classifier.default_bias
    if init not in KERNEL_INITS and not isinstance(init, keras.initializers.Initializer):
        keras.initializers.get(init)  # raises a clear error for unknown names
    if classifier.rebuilds_model:
        return _expand_detector(
            model,
            classifier,
            num_new_classes,
            new_class_names,
            init,
            bias_init,
            freeze_old,
            examples,
            separate_branch,
        )
    metadata = _metadata_of(model, classifier)
    names = _new_names(metadata, num_new_classes, new_class_names)
    if init == "imprint" and not examples:
        raise ValueError('init="imprint" needs examples={new class name: [images, ...]}.')
    # Class branches: the new columns go to the last branch.
    target = classifier
    if classifier.layout == BRANCHED:
        target = locate_classifier(model, classifier.layer.name)
    old_kernel, old_bias = target.kernel_and_bias()
    embeddings = None
    if init == "imprint":
        embedder = features_before(model, target.layer.name)
        embeddings = embed_examples(embedder, examples, names)
    added_kernel = new_columns(init, old_kernel, len(names), embeddings=embeddings)
    added_bias = new_biases(bias_init, old_bias, len(names))
    if separate_branch:
        branch_metadata = _expanded_metadata(
            metadata, names, init, bias_init, True, layer=target.layer.name, separate_branch=True
        )
        return add_class_branch(model, classifier, added_kernel, added_bias, branch_metadata)

    name = target.layer.name
    trainable = [not freeze_old] * len(old_bias) + [True] * len(names)
    columns = {
        name: (
            np.concatenate([old_kernel, added_kernel], axis=1),
            np.concatenate([old_bias, added_bias]),
            trainable,
        )
    }
    if freeze_old and classifier.layout == BRANCHED:  # every earlier branch is frozen too
        for branch, (kernel, bias) in zip(classifier.layers[:-1], classifier.level_weights()):
            columns[branch.name] = (kernel, bias, [False] * len(bias))
    new_metadata = _expanded_metadata(metadata, names, init, bias_init, freeze_old, layer=name)
    return rebuild_classifier(model, target, columns, new_metadata)


def restore_old_classes(
    new_model: keras.Model, old_model: keras.Model, layer: str | None = None
) -> keras.Model:
    """Copies the original classes' kernel columns and biases back into `new_model`.

    The "restore slices" route: fine-tune the expanded model freely, then put
    the old classes' columns back exactly. Returns `new_model` (changed in place).

    Example:

    >>> model = tt.expand_classes(base, new_class_names=["blue_crescent", "red_arrow"])
    >>> model.fit(...)                     # everything trains
    >>> tt.restore_old_classes(model, base)
    """
    new = locate_classifier(new_model, layer)
    old = locate_classifier(old_model, layer)
    if new.rebuilds_model or old.rebuilds_model:
        require_one_class_head(new_model, new, "restore_old_classes")
        check_restorable(new_model, old_model, new, old)
        _check_label_maps(new_model, old_model)
        return restore_detector(new_model, old_model, new, old)
    new_kernel, new_bias = new.kernel_and_bias()
    old_kernel, old_bias = old.kernel_and_bias()
    if new_kernel.shape[0] != old_kernel.shape[0] or new_kernel.shape[1] < old_kernel.shape[1]:
        raise ValueError(
            f"Layer {new.layer.name!r} of {new_model.name!r} has kernel {new_kernel.shape}, which "
            f"cannot hold the {old_kernel.shape} kernel of {old.layer.name!r} in {old_model.name!r}."
        )
    _check_label_maps(new_model, old_model)
    count = old_kernel.shape[1]
    new_kernel[:, :count], new_bias[:count] = old_kernel, old_bias
    new.assign(new_kernel, new_bias)
    return new_model


def merge_frozen(model: keras.Model) -> TransferModel:
    """Folds every `ColumnBlockDense` layer into one plain `Dense` with the same name.

    The result computes the same outputs and is what export and plain Keras
    tooling expect. Models without column blocks are copied unchanged. A
    detector is copied without frozen channels (nor their snapshot weights).

    Example:

    >>> merged = tt.merge_frozen(tt.expand_classes(base, 2, freeze_old=True))
    >>> type(merged.get_layer("predictions")).__name__
    'Dense'
    """
    classifier = locate_classifier(model)
    if classifier.rebuilds_model:
        return without_frozen_channels(model, classifier)
    blocks = {layer.name: layer for layer in model.layers if isinstance(layer, ColumnBlockDense)}

    def make_dense(old: ColumnBlockDense) -> keras.layers.Dense:
        return keras.layers.Dense(
            old.units, activation=old.activation, name=old.name, dtype=old.dtype_policy
        )

    merged = clone_with_weights(model, {name: make_dense for name in blocks})
    for name, layer in blocks.items():
        kernel, bias = layer.full_kernel_and_bias()
        merged.get_layer(name).set_weights([kernel, bias])
    return with_metadata(merged.inputs[0], merged.outputs[0], class_info(model), name=model.name)


def _metadata_of(model: keras.Model, classifier: Classifier) -> ClassMetadata:
    metadata = class_info(model)
    if not isinstance(model, TransferModel) and classifier.output_activation:
        metadata = metadata.replace(
            activation=classifier.output_activation,
            multi_label=classifier.output_activation == "sigmoid",
        )
    return metadata


def _new_names(metadata: ClassMetadata, count, names) -> tuple[str, ...]:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count <= 0):
        raise ValueError(f"num_new_classes must be a positive integer; got {count!r}.")
    if names is None:
        if count is None:
            raise ValueError("Give num_new_classes or new_class_names.")
        start = metadata.num_classes
        return tuple(f"class_{i}" for i in range(start, start + count))
    names = tuple(str(n) for n in names)
    if not names:
        raise ValueError("new_class_names is empty; give at least one name.")
    if count is not None and count != len(names):
        raise ValueError(
            f"num_new_classes={count} but {len(names)} new_class_names were given: {list(names)}."
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"new_class_names has duplicates: {duplicated}.")
    existing = sorted(set(names) & set(metadata.class_names))
    if existing:
        raise ValueError(f"New class names already in the model: {existing}.")
    return names


def _check_label_maps(new_model: keras.Model, old_model: keras.Model) -> None:
    old_names = _names_of(old_model)
    new_names = _names_of(new_model)[: len(old_names)]
    mismatched = [(i, a, b) for i, (a, b) in enumerate(zip(old_names, new_names)) if a != b]
    if mismatched and not all(a.startswith("class_") for _, a, _ in mismatched):
        index, expected, found = mismatched[0]
        raise ValueError(
            f"Label maps disagree: column {index} is {found!r} in {new_model.name!r} but "
            f"{expected!r} in {old_model.name!r}; restore_old_classes needs the old classes first, "
            "in the same order."
        )


def _names_of(model: keras.Model) -> tuple[str, ...]:
    classifier = locate_classifier(model)
    if classifier.rebuilds_model:
        return detector_metadata(model, classifier).class_names
    return class_info(model).class_names


def _expand_detector(
    model, classifier, count, new_class_names, init, bias_init, freeze_old, examples, branch
) -> keras.Model:
    two_stage = classifier.layout == TWO_STAGE
    if (init == "imprint" or examples) and not two_stage:
        raise ValueError(
            'init="imprint" (and examples=) apply to classifiers and Faster R-CNN; for other '
            'detectors use "glorot_uniform" (or another Keras initializer), "zeros" or "mean".'
        )
    if init == "imprint" and not examples:
        raise ValueError(
            'init="imprint" needs examples={new class name: (images, boxes)}, one box per image.'
        )
    if branch and classifier.layout != ANCHOR_MAJOR and classifier.layout != ANCHOR_BRANCHED:
        raise ValueError(
            f"separate_branch=True applies to classifiers and RetinaNet; {model.name!r} has a "
            f"{classifier.layout} class layer (YOLOv8's class convs are part of KerasCV's fused "
            "head; a segmenter's logits conv has no class subnet of its own)."
        )
    if not branch:
        require_one_class_head(model, classifier, "expand_classes without separate_branch")
    metadata = detector_metadata(model, classifier)
    names = _new_names(metadata, count, new_class_names)
    old_count = metadata.num_classes
    level_weights = classifier.level_weights()
    old_bias = np.concatenate(
        [
            bias[lead:]
            for (_, bias), lead, width in zip(level_weights, classifier.leading, classifier.widths)
            if width == 1  # class scores, not box deltas
        ]
    )
    added_columns = None
    if init == "imprint":
        embeddings = embed_box_examples(model, examples, names)
        class_kernel = level_weights[0][0][:, classifier.leading[0] :]
        added_columns = new_columns("imprint", class_kernel, len(names), embeddings=embeddings)
    if branch:
        branch_metadata = _expanded_metadata(
            metadata, names, init, bias_init, True, layout=classifier.layout, separate_branch=True
        )
        return add_retinanet_branch(
            model,
            classifier,
            branch_metadata,
            len(names),
            init=init,
            bias_values=new_biases(bias_init, old_bias, len(names)),
        )
    new_metadata = _expanded_metadata(
        metadata,
        names,
        init,
        bias_init,
        freeze_old,
        layer=classifier.references[0],
        layers=list(classifier.references),
        layout=classifier.layout,
    )
    return rebuild_with_classes(
        model,
        classifier,
        new_metadata,
        [*range(old_count), *[None] * len(names)],
        frozen_classes=range(old_count) if freeze_old else (),
        init=init,
        bias_values=new_biases(bias_init, old_bias, len(names)),
        added_columns=added_columns,
    )


def _expanded_metadata(metadata, names, init, bias_init, freeze_old, **where: Any):
    """The metadata after adding `names`: new ids follow the largest old id, and
    the history records the expansion (`where`: which layer(s) grew)."""
    first_id = max(metadata.class_ids) + 1
    entry = {
        "operation": "expand_classes",
        **where,
        "old_classes": metadata.num_classes,
        "added": list(names),
        "init": init if isinstance(init, str) else type(init).__name__,
        "bias_init": bias_init,
        "freeze_old": bool(freeze_old),
    }
    return metadata.replace(
        class_names=metadata.class_names + tuple(names),
        class_ids=metadata.class_ids + tuple(range(first_id, first_id + len(names))),
        history=metadata.history + (entry,),
    )

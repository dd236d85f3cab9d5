"""Growing a classifier by new classes while keeping the old ones bit for bit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.metadata import ClassMetadata, TransferModel, class_info
from tfx_transfer.surgery.initializers import KERNEL_INITS, embed_examples, new_biases, new_columns
from tfx_transfer.surgery.layers import ColumnBlockDense
from tfx_transfer.surgery.locate import Classifier, locate_classifier
from tfx_transfer.surgery.rebuild import features_before, replace_layer

PROBABILITIES = "probabilities"


def expand_classes(
    model: keras.Model,
    num_new_classes: int | None = None,
    *,
    new_class_names: Sequence[str] | None = None,
    layer: str | None = None,
    init: Any = "glorot_uniform",
    bias_init: Any = "zeros",
    freeze_old: bool = False,
    examples: Mapping[str, Any] | None = None,
) -> TransferModel:
    """Returns a new model with more classes; the old classes' logits are unchanged.

    The classification layer's kernel grows from features x N to features x
    (N + k) and its bias from N to N + k: columns 0..N-1 are the old ones, bit
    for bit, so before any training the new model's logits for the old classes
    equal the old model's exactly. Everything else (weights, trainable flags,
    BatchNorm statistics, class metadata) is copied; `model` is not modified.
    A classifier with a built-in activation (`Dense(90, activation="softmax")`)
    becomes a linear `predictions` layer followed by an `Activation` layer.

    Args:
        model: a classifier (ours, or a functional/Sequential model ending in Dense).
        num_new_classes: int. How many classes to add (or give `new_class_names`).
        new_class_names: sequence of str. Names of the new classes, appended
            after the old ones; default `class_N`, `class_N+1`, ...
        layer: str. Name of the classification layer; found automatically by default.
        init: "glorot_uniform" (or any Keras initializer), "zeros", "mean" (mean
            of the old columns), or "imprint" (weight imprinting from `examples`).
        bias_init: "zeros", "mean", or a prior probability p: -log((1-p)/p).
        freeze_old: bool. Put the old columns in a frozen block that training
            never changes (a `ColumnBlockDense`; `tt.merge_frozen` folds it back
            into a plain Dense for export).
        examples: mapping new class name -> a few images (uint8 arrays or
            paths), needed by `init="imprint"`.

    Example:

    >>> base = tt.demo.base_model()                      # 1024 x 90 kernel
    >>> model = tt.expand_classes(base, new_class_names=["blue_crescent", "red_arrow"])
    >>> model.get_layer("predictions").kernel.shape
    (1024, 92)
    """
    classifier = locate_classifier(model, layer)
    metadata = _metadata_of(model, classifier)
    names = _new_names(metadata, num_new_classes, new_class_names)
    if init not in KERNEL_INITS and not isinstance(init, keras.initializers.Initializer):
        keras.initializers.get(init)  # raises a clear error for unknown names
    if init == "imprint" and not examples:
        raise ValueError('init="imprint" needs examples={new class name: [images, ...]}.')

    old_kernel, old_bias = classifier.kernel_and_bias()
    embeddings = None
    if init == "imprint":
        embedder = features_before(model, classifier.layer.name)
        embeddings = embed_examples(embedder, examples, names)
    kernel = np.concatenate(
        [old_kernel, new_columns(init, old_kernel, len(names), embeddings=embeddings)], axis=1
    )
    bias = np.concatenate([old_bias, new_biases(bias_init, old_bias, len(names))])

    old_layer = classifier.layer
    if freeze_old:
        block_units = [*_blocks_of(old_layer), len(names)]
        trainable = [False] * (len(block_units) - 1) + [True]

        def make_layer(_):
            return ColumnBlockDense(
                block_units, trainable, name=old_layer.name, dtype=old_layer.dtype_policy
            )
    else:

        def make_layer(_):
            return _plain_dense(old_layer, kernel.shape[1])

    activation = classifier.builtin_activation
    new_metadata = metadata.replace(
        class_names=metadata.class_names + tuple(names),
        class_ids=metadata.class_ids
        + tuple(range(max(metadata.class_ids) + 1, max(metadata.class_ids) + 1 + len(names))),
        history=metadata.history
        + (
            {
                "operation": "expand_classes",
                "layer": old_layer.name,
                "old_classes": metadata.num_classes,
                "added": list(names),
                "init": init if isinstance(init, str) else type(init).__name__,
                "bias_init": bias_init,
                "freeze_old": bool(freeze_old),
            },
        ),
    )
    new_model = replace_layer(
        model,
        old_layer.name,
        make_layer,
        new_metadata,
        append=(lambda: keras.layers.Activation(activation, name=PROBABILITIES))
        if activation
        else None,
    )
    locate_classifier(new_model, old_layer.name).assign(kernel, bias)
    return new_model


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
    new_kernel, new_bias = new.kernel_and_bias()
    old_kernel, old_bias = old.kernel_and_bias()
    if new_kernel.shape[0] != old_kernel.shape[0] or new_kernel.shape[1] < old_kernel.shape[1]:
        raise ValueError(
            f"Layer {new.layer.name!r} of {new_model.name!r} has kernel {new_kernel.shape}, which "
            f"cannot hold the {old_kernel.shape} kernel of {old.layer.name!r} in {old_model.name!r}."
        )
    old_names = class_info(old_model).class_names
    new_names = class_info(new_model).class_names[: len(old_names)]
    mismatched = [(i, a, b) for i, (a, b) in enumerate(zip(old_names, new_names)) if a != b]
    if mismatched and not all(a.startswith("class_") for _, a, _ in mismatched):
        index, expected, found = mismatched[0]
        raise ValueError(
            f"Label maps disagree: column {index} is {found!r} in {new_model.name!r} but "
            f"{expected!r} in {old_model.name!r}; restore_old_classes needs the old classes first, "
            "in the same order."
        )
    count = old_kernel.shape[1]
    new_kernel[:, :count], new_bias[:count] = old_kernel, old_bias
    new.assign(new_kernel, new_bias)
    return new_model


def merge_frozen(model: keras.Model) -> TransferModel:
    """Folds a `ColumnBlockDense` classifier into one plain `Dense` with the same name.

    The result computes the same outputs and is what export and plain Keras
    tooling expect. Models without column blocks are copied unchanged.
    """
    classifier = locate_classifier(model)
    kernel, bias = classifier.kernel_and_bias()
    layer = classifier.layer
    merged = replace_layer(
        model, layer.name, lambda _: _plain_dense(layer, kernel.shape[1]), class_info(model)
    )
    locate_classifier(merged, layer.name).assign(kernel, bias)
    return merged


def _plain_dense(layer: keras.layers.Layer, units: int) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, name=layer.name, trainable=layer.trainable, dtype=layer.dtype_policy
    )


def _blocks_of(layer: keras.layers.Layer) -> list[int]:
    return list(layer.block_units) if isinstance(layer, ColumnBlockDense) else [int(layer.units)]


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

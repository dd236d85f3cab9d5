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
    bias_init: Any = None,
    freeze_old: bool = False,
    examples: Mapping[str, Any] | None = None,
) -> keras.Model:
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
            Defaults to "zeros", and to RetinaNet's focal-loss prior p=0.01 for
            RetinaNet detectors.
        freeze_old: bool. Put the old columns in a frozen block that training
            never changes (a `ColumnBlockDense`; `tt.merge_frozen` folds it back
            into a plain Dense for export). Detectors keep their plain class
            convs and hold the old channels fixed by a variable constraint that
            writes them back after every optimizer update (works with `fit`,
            any optimizer, and survives saving).
        examples: mapping new class name -> a few images (uint8 arrays or
            paths), needed by `init="imprint"` (classifiers only).

    Detectors (`tt.build_detector`) are rebuilt with N + k classes: every
    weight that keeps its shape is copied, the old classes' channels of the
    class convolution(s) go to their new places (RetinaNet: anchor-major,
    old channel a*N+c becomes a*(N+k)+c; YOLOv8: the first N channels of each
    level's class conv). When YOLOv8's inner class convs widen (N + k above the
    P3 width) their old slices are copied and the new inputs feed the old
    channels with zero weights. Raw class outputs for the old classes
    (`detector(images)`) are unchanged.

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
    if classifier.is_detector:
        return _expand_detector(
            model,
            classifier,
            num_new_classes,
            new_class_names,
            init,
            bias_init,
            freeze_old,
            examples,
        )
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
    new_metadata = _expanded_metadata(
        metadata, names, init, bias_init, freeze_old, layer=old_layer.name
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
    if new.is_detector or old.is_detector:
        return _restore_detector(new_model, old_model, new, old)
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
    """Folds a `ColumnBlockDense` classifier into one plain `Dense` with the same name.

    The result computes the same outputs and is what export and plain Keras
    tooling expect. Models without column blocks are copied unchanged. A
    detector is copied without frozen channels (nor their snapshot weights).
    """
    classifier = locate_classifier(model)
    if classifier.is_detector:
        from tfx_transfer.detection import rebuild_detector

        merged = rebuild_detector(model, class_metadata=_detector_metadata(model, classifier))
        _copy_detector_weights(model, merged, classifier, locate_classifier(merged))
        return merged
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
    if classifier.is_detector:
        return _detector_metadata(model, classifier).class_names
    return class_info(model).class_names


# --- Detectors: rebuilt with more classes; weights copied by layout (see locate.py) ---------


def _detector_metadata(model: keras.Model, classifier: Classifier) -> ClassMetadata:
    """Our detectors carry metadata; other KerasCV detectors get default names."""
    metadata = getattr(model, "class_metadata", None)
    if isinstance(metadata, ClassMetadata):
        return metadata
    names = ClassMetadata.default(classifier.num_classes).class_names
    return ClassMetadata(names, activation=classifier.output_activation, multi_label=True)


def _expand_detector(
    model, classifier, count, new_class_names, init, bias_init, freeze_old, examples
) -> keras.Model:
    from tfx_transfer.detection import FrozenChannels, rebuild_detector

    if init == "imprint" or examples:
        raise ValueError(
            'init="imprint" (and examples=) apply to classifiers; for detectors use '
            '"glorot_uniform" (or another Keras initializer), "zeros" or "mean".'
        )
    if init not in KERNEL_INITS and not isinstance(init, keras.initializers.Initializer):
        keras.initializers.get(init)  # raises a clear error for unknown names
    metadata = _detector_metadata(model, classifier)
    names = _new_names(metadata, count, new_class_names)
    old_count, total = metadata.num_classes, metadata.num_classes + len(names)
    old_bias = np.concatenate([bias for _, bias in classifier.level_weights()])
    bias_values = new_biases(bias_init, old_bias, len(names))
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
    frozen = (
        [FrozenChannels(reference, total, old_count) for reference in classifier.references]
        if freeze_old
        else []
    )
    new_model = rebuild_detector(model, class_metadata=new_metadata, frozen_channels=frozen)
    _copy_detector_weights(
        model,
        new_model,
        classifier,
        locate_classifier(new_model),
        init=init,
        bias_values=bias_values,
    )
    return new_model


def _copy_detector_weights(old_model, new_model, old, new, *, init=None, bias_values=None) -> None:
    """Copies every weight of `old_model` into the rebuilt `new_model`.

    Weights that keep their shape are copied as they are; the class convs get
    the old classes' channels at their new places and `init`/`bias_values` for
    the added classes; other grown weights (YOLOv8's widened inner class convs)
    get their old slice, with zero weights from new input channels to old
    output channels. Frozen-channel snapshots are taken afterwards.
    """
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
                value = _grown(value, keras.ops.convert_to_numpy(n), o.path)
            n.assign(value)
    classes = range(old.num_classes)
    old_channels, new_channels = old.channels(classes), new.channels(classes)
    added = new.channels(range(old.num_classes, new.num_classes))
    weights = []
    for (old_kernel, old_bias), layer in zip(old.level_weights(), new.layers):
        kernel = _initial_kernel(init, tuple(layer.kernel.shape), old_kernel.dtype)
        bias = np.zeros(tuple(layer.bias.shape), old_bias.dtype)
        inputs = old_kernel.shape[-2]
        kernel[..., new_channels] = 0
        kernel[..., :inputs, new_channels] = old_kernel[..., old_channels]
        bias[new_channels] = old_bias[old_channels]
        if len(added):
            if init == "mean":  # each anchor's new classes: the mean of its old classes
                per_anchor = kernel[..., new_channels].reshape(
                    *kernel.shape[:-1], new.anchors, old.num_classes
                )
                kernel[..., added] = np.repeat(
                    per_anchor.mean(axis=-1, keepdims=True), len(added) // new.anchors, axis=-1
                ).reshape(*kernel.shape[:-1], -1)
            bias[added] = np.tile(bias_values, new.anchors)
        weights.append((kernel, bias))
    new.assign_levels(weights)
    new_model.refresh_frozen_snapshots()


def _initial_kernel(init, shape: tuple[int, ...], dtype) -> np.ndarray:
    if init in (None, "zeros", "mean"):
        return np.zeros(shape, dtype)
    return keras.ops.convert_to_numpy(keras.initializers.get(init)(shape)).astype(dtype)


def _grown(old: np.ndarray, fresh: np.ndarray, path: str) -> np.ndarray:
    """`fresh` with `old` in its leading corner; the new input channels of a conv
    kernel do not feed its old output channels."""
    if old.ndim != fresh.ndim or any(a > b for a, b in zip(old.shape, fresh.shape)):
        raise ValueError(
            f"Cannot grow weight {path!r} from {old.shape} to {fresh.shape} while adding classes."
        )
    value = fresh.copy()
    if old.ndim == 4:
        value[:, :, old.shape[2] :, : old.shape[3]] = 0
    value[tuple(slice(0, size) for size in old.shape)] = old
    return value


def _restore_detector(new_model, old_model, new: Classifier, old: Classifier) -> keras.Model:
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
    _check_label_maps(new_model, old_model)
    classes = range(old.num_classes)
    old_channels, new_channels = old.channels(classes), new.channels(classes)
    weights = []
    for (old_kernel, old_bias), (kernel, bias) in zip(old.level_weights(), new.level_weights()):
        inputs = old_kernel.shape[-2]
        if kernel.shape[:-2] != old_kernel.shape[:-2] or kernel.shape[-2] < inputs:
            raise ValueError(
                f"Class kernel {kernel.shape} of {new_model.name!r} cannot hold the "
                f"{old_kernel.shape} kernel of {old_model.name!r}."
            )
        kernel[..., new_channels] = 0
        kernel[..., :inputs, new_channels] = old_kernel[..., old_channels]
        bias[new_channels] = old_bias[old_channels]
        weights.append((kernel, bias))
    new.assign_levels(weights)
    if hasattr(new_model, "refresh_frozen_snapshots"):
        new_model.refresh_frozen_snapshots()
    return new_model


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

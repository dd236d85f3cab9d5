"""`merge_heads`: two classifiers fine-tuned on the same frozen backbone become one."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from tfx_transfer.core.graph import input_layers
from tfx_transfer.core.metadata import TransferModel, class_info
from tfx_transfer.heads.locate import PLAIN, locate_classifier
from tfx_transfer.surgery.branch import attach_branch, hidden_layers
from tfx_transfer.surgery.columns import rebuild_classifier, trainable_columns
from tfx_transfer.surgery.rebuild import clone_with_weights


def merge_heads(
    model_a: keras.Model, model_b: keras.Model, *, rename: Mapping[str, str] | None = None
) -> TransferModel:
    """One classifier whose outputs are `model_a`'s classes followed by `model_b`'s.

    Both models must share their backbone weights exactly (e.g. two heads
    fine-tuned on the same frozen backbone); every output of the merged model
    is bit for bit the output of the model it came from. When their hidden
    head layers are identical too, the two classification layers are joined
    into one; otherwise `model_b`'s hidden layers and classification layer
    become a class branch (`branch_1_...`, concatenated in `class_logits`).

    Args:
        model_a, model_b: classifiers with one classification layer each.
        rename: mapping of `model_b` class name -> new name, to resolve
            class names both models have.

    Raises:
        ValueError: naming the first weight that differs between the two
            backbones, the classes both models name, or a layer `model_b`
            lacks.

    Example:

    >>> animals = tt.merge_heads(cats_and_dogs, birds)
    >>> tt.class_info(animals).class_names
    ('cat', 'dog', 'robin', 'wren')
    """
    a, b = locate_classifier(model_a), locate_classifier(model_b)
    for model, located in ((model_a, a), (model_b, b)):
        if located.layout != PLAIN:
            raise ValueError(
                f"merge_heads takes classifiers with one classification layer; {model.name!r} "
                f"has a {located.layout} classifier ({[layer.name for layer in located.layers]})."
            )
    if a.output_activation != b.output_activation:
        raise ValueError(
            f"{model_a.name!r} outputs {a.output_activation or 'logits'} but {model_b.name!r} "
            f"outputs {b.output_activation or 'logits'}; merge heads with the same activation."
        )
    hidden_a, hidden_b = hidden_layers(a.layer), hidden_layers(b.layer)
    head_names = {layer.name for layer in (*hidden_a, a.layer)}
    shared_hidden = _same_weights(hidden_a, hidden_b)
    trunk = [layer for layer in model_a.layers if layer.name not in head_names and layer.weights]
    if not shared_hidden:
        _check_branch_point(model_a, model_b, hidden_a or [a.layer], hidden_b or [b.layer])
    _check_identical(model_a, model_b, trunk + (hidden_a if shared_hidden else []))
    metadata = _merged_metadata(model_a, model_b, rename)
    kernel_a, bias_a = a.kernel_and_bias()
    kernel_b, bias_b = b.kernel_and_bias()
    if shared_hidden:
        columns = {
            a.layer.name: (
                np.concatenate([kernel_a, kernel_b], axis=1),
                np.concatenate([bias_a, bias_b]),
                trainable_columns(a.layer) + trainable_columns(b.layer),
            )
        }
        return rebuild_classifier(model_a, a, columns, metadata)
    clone = clone_with_weights(model_a, {})
    branch_input = clone.get_layer((hidden_a or [a.layer])[0].name).input
    return attach_branch(
        clone,
        [clone.get_layer(a.layer.name).output],
        branch_input,
        hidden_b,
        (kernel_b, bias_b),
        a,
        metadata,
        name=model_a.name,
    )


def _same_weights(layers_a, layers_b) -> bool:
    if len(layers_a) != len(layers_b) or not layers_a:
        return len(layers_a) == len(layers_b) == 0
    return all(
        len(x.weights) == len(y.weights) and all(_equal(v, w) for v, w in zip(x.weights, y.weights))
        for x, y in zip(layers_a, layers_b)
    )


def _check_identical(model_a, model_b, layers) -> None:
    """Raises naming the first weight of `layers` (of model_a) that model_b does not match."""
    for layer in layers:
        try:
            other = model_b.get_layer(layer.name)
        except ValueError:
            raise ValueError(
                f"{model_b.name!r} has no layer {layer.name!r}, which {model_a.name!r} has; "
                "merge_heads needs two heads on the same backbone."
            ) from None
        if len(layer.weights) != len(other.weights):
            raise ValueError(
                f"Layer {layer.name!r} has {len(layer.weights)} weights in {model_a.name!r} but "
                f"{len(other.weights)} in {model_b.name!r}; the backbones differ."
            )
        for v, w in zip(layer.weights, other.weights):
            if not _equal(v, w):
                detail = (
                    f"shape {tuple(v.shape)} vs {tuple(w.shape)}"
                    if tuple(v.shape) != tuple(w.shape)
                    else "max abs difference "
                    f"{np.max(np.abs(_numpy(v).astype('float64') - _numpy(w))):.3g}"
                )
                raise ValueError(
                    f"Weight {v.path!r} differs between model_a ({model_a.name!r}) and model_b "
                    f"({model_b.name!r}): {detail}. merge_heads needs identical backbone "
                    "weights (heads trained on the same frozen backbone)."
                )


def _check_branch_point(model_a, model_b, first_a, first_b) -> None:
    """Both heads must start from the same layer's output (e.g. the pooled features)."""
    source_a = input_layers(first_a[0])[0].name
    source_b = input_layers(first_b[0])[0].name
    if source_a != source_b:
        raise ValueError(
            f"The heads start from different layers: {first_a[0].name!r} of {model_a.name!r} "
            f"reads {source_a!r} but {first_b[0].name!r} of {model_b.name!r} reads {source_b!r}."
        )


def _merged_metadata(model_a, model_b, rename):
    meta_a, meta_b = class_info(model_a), class_info(model_b)
    rename = dict(rename or {})
    unknown = sorted(set(rename) - set(meta_b.class_names))
    if unknown:
        raise ValueError(f"rename names classes {model_b.name!r} does not have: {unknown}.")
    names_b = tuple(rename.get(name, name) for name in meta_b.class_names)
    clashes = sorted(set(meta_a.class_names) & set(names_b))
    if clashes:
        raise ValueError(
            f"Both models have classes {clashes}; pass rename={{name: new_name}} for "
            f"{model_b.name!r}'s classes, e.g. rename={{{clashes[0]!r}: {clashes[0] + '_b'!r}}}."
        )
    ids_b = meta_b.class_ids
    if set(ids_b) & set(meta_a.class_ids):  # renumber after model_a's ids
        first = max(meta_a.class_ids) + 1
        ids_b = tuple(range(first, first + len(names_b)))
    entry = {"operation": "merge_heads", "merged": model_b.name, "added": list(names_b)}
    return meta_a.replace(
        class_names=meta_a.class_names + names_b,
        class_ids=meta_a.class_ids + ids_b,
        history=meta_a.history + (entry,),
    )


def _equal(v, w) -> bool:
    return tuple(v.shape) == tuple(w.shape) and np.array_equal(_numpy(v), _numpy(w))


def _numpy(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable)

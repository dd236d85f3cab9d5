"""`model_cost` and `cost_table`: parameters and FLOPs of a model, and how variants compare.

FLOPs are those of one forward pass (`training=False`) on one image, counted by TensorFlow's
graph profiler on the model's frozen graph: a multiply-add counts 2, a bias add or another
elementwise add/multiply 1 per element; activations such as ReLU (which the profiler has no
statistics for) count 0.

Example:

>>> from tfx_transfer.core.cost import cost_table
>>> print(cost_table({"baseline": model, "expanded": expanded}))  # doctest: +SKIP
model     parameters  FLOPs  parameters change  FLOPs change
baseline      25.6 M  4.1 G  (reference)        (reference)
expanded      26.4 M  4.1 G  +3.12%             +0.40%
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from tfx_transfer.core.compat import frozen_graph, operation_flops, silenced_deprecations


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """What `model_cost` measured.

    Attributes:
        parameters: int. All weights (trainable and non-trainable), as `model.count_params()`.
        trainable_parameters: int.
        flops: int. Floating-point operations of one forward pass on one image
            (a multiply-add counts 2).
        input_shape: tuple of int. The shape of one input, e.g. (height, width, channels),
            the FLOPs were measured at.
    """

    parameters: int
    trainable_parameters: int
    flops: int
    input_shape: tuple[int, ...]

    def relative_to(self, other: ModelCost) -> dict[str, float]:
        """The fractional change from `other` to this cost: 0.031 means +3.1%.

        >>> ModelCost(103, 103, 1000, (8,)).relative_to(ModelCost(100, 100, 1000, (8,)))
        {'parameters': 0.03, 'flops': 0.0}
        """
        return {
            "parameters": _change(self.parameters, other.parameters),
            "flops": _change(self.flops, other.flops),
        }


def model_cost(model: keras.Model, input_shape: Sequence[int] | None = None) -> ModelCost:
    """Measures the parameters of `model` and the FLOPs of one forward pass on one image.

    Works for functional models and KerasCV detectors (whose call returns a dict).

    Args:
        model: keras.Model with one input.
        input_shape: sequence of int, the shape of one input without the batch axis, e.g.
            (224, 224, 3). Defaults to the model's input shape; required when that has
            an unknown height or width.

    Returns:
        A `ModelCost`.

    Raises:
        ValueError: if the input shape is not fully known and `input_shape` is not given.

    >>> inputs = keras.Input((8,))
    >>> model_cost(keras.Model(inputs, keras.layers.Dense(4, use_bias=False)(inputs)))
    ModelCost(parameters=32, trainable_parameters=32, flops=64, input_shape=(8,))
    """
    shape, dtype = _input_signature(model, input_shape)
    flops = _count_flops(model, shape, dtype)  # Tracing also builds an unbuilt model.
    trainable = {id(weight): weight for weight in model.trainable_weights}.values()
    return ModelCost(
        parameters=int(model.count_params()),
        trainable_parameters=int(sum(math.prod(weight.shape) for weight in trainable)),
        flops=flops,
        input_shape=shape,
    )


def cost_table(
    models: Mapping[str, keras.Model | ModelCost], input_shape: Sequence[int] | None = None
) -> str:
    """A text table of the parameters and FLOPs of `models`, each compared to the first.

    Args:
        models: mapping of name -> keras.Model (or an already measured `ModelCost`). The first
            entry is the reference the others are compared to.
        input_shape: passed to `model_cost` for every model.

    Returns:
        str. One row per model: name, parameters, FLOPs and, after the first row, the
        change in percent relative to the first row.

    >>> print(cost_table({"base": base, "wider": wider}))  # doctest: +SKIP
    model  parameters  FLOPs  parameters change  FLOPs change
    base        4.2 M  1.1 G  (reference)        (reference)
    wider       4.4 M  1.2 G  +4.76%             +9.09%
    """
    if not models:
        raise ValueError("cost_table needs at least one model.")
    costs = {
        name: value if isinstance(value, ModelCost) else model_cost(value, input_shape)
        for name, value in models.items()
    }
    reference = next(iter(costs.values()))
    header = ("model", "parameters", "FLOPs", "parameters change", "FLOPs change")
    rows = [header]
    for index, (name, cost) in enumerate(costs.items()):
        if index == 0:
            changes = ("(reference)", "(reference)")
        else:
            relative = cost.relative_to(reference)
            changes = (_percent(relative["parameters"]), _percent(relative["flops"]))
        rows.append((str(name), _human(cost.parameters), _human(cost.flops), *changes))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    right_aligned = {1, 2}
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _input_signature(
    model: keras.Model, input_shape: Sequence[int] | None
) -> tuple[tuple[int, ...], str]:
    """The shape of one input (without batch axis) and its dtype."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # A subclassed model that was never called.
        inputs = []
    if len(inputs) > 1:
        raise ValueError(
            f"model_cost measures single-input models; model {model.name!r} has "
            f"{len(inputs)} inputs."
        )
    dtype = str(inputs[0].dtype) if inputs else "float32"
    if input_shape is not None:
        shape = tuple(input_shape)
        if not all(isinstance(size, numbers.Integral) and size > 0 for size in shape):
            raise ValueError(
                f"input_shape must be positive integers without the batch axis, got {shape}."
            )
        return tuple(int(size) for size in shape), dtype
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no known input; pass input_shape=(h, w, c) to model_cost."
        )
    shape = tuple(inputs[0].shape[1:])
    if any(size is None for size in shape):
        raise ValueError(
            f"Model {model.name!r} has input shape {tuple(inputs[0].shape)} with unknown "
            "sizes; pass input_shape=(h, w, c) to model_cost to choose the size to measure at."
        )
    return tuple(int(size) for size in shape), dtype


def _count_flops(model: keras.Model, shape: tuple[int, ...], dtype: str) -> int:
    """FLOPs of `model(x, training=False)` on a batch of one, from the frozen graph."""
    function = tf.function(lambda images: model(images, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, *shape), dtype))
    graph = frozen_graph(concrete)
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    # The profiler's shape helper warns that it is deprecated; that is not the user's concern.
    with silenced_deprecations():
        profile = tf.compat.v1.profiler.profile(
            graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
        unknown = _ops_with_unknown_shapes(graph)
    if unknown:
        warnings.warn(
            f"model_cost: {len(unknown)} operation(s) of {model.name!r} have shapes unknown before "
            f"running (e.g. {unknown[0]!r}); the profiler counts them as 0 FLOPs.",
            stacklevel=3,
        )
    return int(profile.total_float_ops)


def _ops_with_unknown_shapes(graph: tf.Graph) -> list[str]:
    """Operations the profiler would count but cannot, as their shapes are not static."""
    unknown = []
    for operation in graph.get_operations():
        try:
            operation_flops(graph, operation.node_def)
        except ValueError:
            unknown.append(operation.name)
    return unknown


def _change(value: int, reference: int) -> float:
    """(value - reference) / reference; infinite when only the reference is 0."""
    if reference == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - reference) / reference


def _percent(fraction: float) -> str:
    return "n/a" if math.isinf(fraction) else f"{fraction * 100:+.2f}%"


def _human(count: int) -> str:
    """25_600_000 -> "25.6 M"; counts below 1000 as they are."""
    if abs(count) < 1000:
        return str(count)
    value = count / 1000
    for unit in ("k", "M", "G"):
        if abs(round(value, 1)) < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} T"

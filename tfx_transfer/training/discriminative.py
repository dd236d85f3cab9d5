"""Discriminative learning rates: earlier layer groups learn more slowly (fastai).

Keras 3 optimizers apply one learning rate to every variable; this module
scales it per variable inside the optimizer's `update_step`, so any standard
Keras optimizer keeps its own update rule (SGD, Adam, ...), in `fit` and under
a `tf.distribute` strategy.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from tfx_transfer.backbones.build import block_boundaries
from tfx_transfer.core.compat import variable_key
from tfx_transfer.training.unfreeze import find_backbone


def layer_groups(model: keras.Model, num_groups: int) -> list[list[keras.Variable]]:
    """The trainable variables of a classifier in `num_groups` groups, earliest first:
    the trainable backbone blocks (by the registry's block boundaries) split into
    `num_groups - 1` groups of consecutive blocks, then the head."""
    if num_groups < 2:
        raise ValueError(f"num_groups must be at least 2 (backbone and head); got {num_groups}.")
    backbone = find_backbone(model)
    boundaries = [backbone.layers.index(backbone.get_layer(b)) for b in block_boundaries(backbone)]
    blocks: list[list[keras.Variable]] = []
    start = 0
    for end in boundaries:
        variables = [
            v for layer in backbone.layers[start : end + 1] for v in layer.trainable_weights
        ]
        if variables:
            blocks.append(variables)
        start = end + 1
    trained = {id(v) for v in model.trainable_weights}
    backbone_ids = {id(v) for v in backbone.weights}
    head = [v for v in model.trainable_weights if id(v) not in backbone_ids]
    blocks = [[v for v in block if id(v) in trained] for block in blocks]
    blocks = [block for block in blocks if block]
    groups: list[list[keras.Variable]] = [[] for _ in range(num_groups - 1)]
    for index, block in enumerate(blocks):
        groups[index * (num_groups - 1) // max(len(blocks), 1)] += block
    return [group for group in groups if group] + [head]


def set_learning_rate_multipliers(
    optimizer: keras.optimizers.Optimizer, multipliers: Mapping[keras.Variable, float] | list
) -> keras.optimizers.Optimizer:
    """Makes `optimizer` use `learning_rate * multiplier` for the given variables.

    Args:
        optimizer: a Keras optimizer (before or after it was built).
        multipliers: a list of (variable, multiplier) pairs; other variables keep 1.

    Example:

    >>> groups = tt.training.layer_groups(model, 3)
    >>> pairs = [(v, 0.5 ** (2 - i)) for i, g in enumerate(groups) for v in g]
    >>> model.compile(tt.training.set_learning_rate_multipliers(keras.optimizers.Adam(1e-3), pairs), ...)
    """
    pairs = multipliers.items() if isinstance(multipliers, Mapping) else multipliers
    table = {variable_key(optimizer, variable): float(value) for variable, value in pairs}
    update_step = optimizer.update_step

    def scaled_update_step(gradient, variable, learning_rate):
        factor = table.get(variable_key(optimizer, variable), 1.0)
        return update_step(gradient, variable, learning_rate * factor)

    optimizer.update_step = scaled_update_step
    return optimizer


def discriminative_multipliers(
    model: keras.Model, num_groups: int = 3, factor: float = 0.3
) -> list[tuple[keras.Variable, float]]:
    """(variable, multiplier) pairs: the head at 1, each earlier group `factor` times
    the next one."""
    groups = layer_groups(model, num_groups)
    last = len(groups) - 1
    return [(v, factor ** (last - i)) for i, group in enumerate(groups) for v in group]

"""Frozen class channels in a detector's class convolutions.

A detector's class convolutions are stock KerasCV `Conv2D` layers inside its
graph, which cannot be swapped for a column-block layer the way a classifier's
`predictions` Dense can. Old classes are frozen instead by a variable
constraint: the optimizer applies a variable's constraint right after every
update (`optimizer.apply`, used by `fit`, custom loops and distillation alike),
and `KeepChannels` writes the frozen output channels back from a snapshot. So
the old channels stay bit for bit whatever the optimizer (momentum, Adam,
weight decay), while the new channels and the input gradients train normally.

The snapshots are non-trainable weights of the detector (saved with it); the
frozen channels are described in the detector's config by `FrozenChannels`
records, so a loaded detector freezes the same channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops


@dataclasses.dataclass(frozen=True)
class FrozenChannels:
    """Which output channels of one class convolution are frozen.

    Output channel `j` (last axis of kernel and bias) is frozen when
    `j % period` is one of `classes`: `period` is the number of classes of the
    layer, so this covers plain layouts (one block of classes) and anchor-major
    ones (channel = anchor * period + class). Layers with `leading` columns
    before the classes (Faster R-CNN's background column, always frozen with
    them) or `width` columns per class (its 4 box deltas) count
    `(j - leading) // width` instead of `j`.

    Args:
        layer: str. The layer: a layer name of the model, or an attribute path
            from the model such as "classification_head.prediction_layer".
        period: int. Classes per anchor block.
        classes: tuple of int. The frozen classes (e.g. the 90 old ones after
            an expansion to 92, or all but the refined ones).
        width: int. Columns per class.
        leading: int. Columns before the first class's, frozen too.

    Example:

    >>> FrozenChannels("classification_head.prediction_layer", period=92, classes=range(90))
    >>> FrozenChannels("box_regressor", period=92, classes=range(90), width=4)
    """

    layer: str
    period: int
    classes: tuple[int, ...]
    width: int = 1
    leading: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    def frozen_mask(self, channels: int) -> list[bool]:
        """Whether each of a layer's `channels` output channels is frozen.

        >>> FrozenChannels("box_classifier", period=3, classes=(0,), leading=1).frozen_mask(4)
        [True, True, False, False]
        """
        frozen = set(self.classes)
        return [
            j < self.leading or ((j - self.leading) // self.width) % self.period in frozen
            for j in range(channels)
        ]

    def get_config(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "period": self.period,
            "classes": list(self.classes),
            "width": self.width,
            "leading": self.leading,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FrozenChannels:
        return cls(
            str(config["layer"]),
            int(config["period"]),
            tuple(config["classes"]),
            int(config.get("width", 1)),
            int(config.get("leading", 0)),
        )


class KeepChannels(keras.constraints.Constraint):
    """Constraint writing the frozen channels of a variable back from a snapshot.

    Example:

    >>> kernel.constraint = KeepChannels(snapshot, [True, True, True, False, False])
    """

    def __init__(self, snapshot: keras.Variable, mask: list[bool]) -> None:
        self.snapshot = snapshot
        self.mask = list(mask)

    def __call__(self, w):
        if all(self.mask):
            # A whole frozen layer (a RetinaNet class branch): the snapshot itself. An all-true
            # `where` is rewritten by TF's graph optimizer in compiled `fit` and lets updates through.
            return ops.cast(self.snapshot, w.dtype)
        mask = ops.convert_to_tensor(self.mask)
        return ops.where(mask, ops.cast(self.snapshot, w.dtype), w)

    def get_config(self) -> dict[str, Any]:
        # Not serialised: the detector re-creates it from its `frozen_channels` config.
        return {}


def resolve_layer(model: keras.Model, reference: str) -> keras.layers.Layer:
    """The layer named `reference`, or reached by the attribute path `reference`
    (whose numeric parts index lists, e.g. "classification_head.conv_layers.0").

    Example:

    >>> resolve_layer(retinanet, "classification_head.prediction_layer").filters
    45
    """
    if "." not in reference:
        return model.get_layer(reference)
    target: Any = model
    for part in reference.split("."):
        target = target[int(part)] if part.isdigit() else getattr(target, part)
    return target


def install(model: keras.Model, records: list[FrozenChannels]) -> list[keras.Variable]:
    """Adds snapshot weights to `model` and constraints to the records' kernels and biases.

    Returns the snapshot variables (refreshed from the current weights by `refresh`).
    Called by the detectors' constructors with their `frozen_channels`.

    Example:

    >>> install(detector, [FrozenChannels("yolo_v8_head_1_class_3_conv", 5, (0, 1, 2))])
    """
    snapshots = []
    for index, record in enumerate(records):
        layer = resolve_layer(model, record.layer)
        for variable in _class_variables(layer):
            snapshot = model.add_weight(
                shape=variable.shape,
                initializer="zeros",
                trainable=False,
                name=f"frozen_{index}_{variable.name}",
                dtype=variable.dtype,
            )
            snapshot.assign(variable)
            variable.constraint = KeepChannels(snapshot, record.frozen_mask(variable.shape[-1]))
            snapshots.append(snapshot)
    return snapshots


def refresh(model: keras.Model, records: list[FrozenChannels]) -> None:
    """Takes new snapshots of the frozen channels (after weights were set from outside).

    Example:

    >>> refresh(detector, detector.frozen_channels)
    """
    for record in records:
        for variable in _class_variables(resolve_layer(model, record.layer)):
            variable.constraint.snapshot.assign(variable)


def _class_variables(layer: keras.layers.Layer) -> list[keras.Variable]:
    return [layer.kernel] + ([layer.bias] if getattr(layer, "use_bias", False) else [])

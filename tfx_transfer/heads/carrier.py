"""What our Keras task subclasses (KerasCV detectors and segmenters, Faster R-CNN) add
to their parent: class metadata, frozen class channels and per-layer trainable
flags kept through `get_config`, and the compile arguments kept for reloading.

KerasCV's own backbones and heads are rebuilt from constructor arguments on
loading, which loses per-layer trainable flags (a frozen `ResNetBackbone` would
come back trainable); the flags are recorded as indices into the model's layers
(depth first, see `core.graph.all_layers`) and set again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from tfx_transfer.core.graph import all_layers
from tfx_transfer.core.metadata import ClassMetadata
from tfx_transfer.heads import frozen_channels as freezing
from tfx_transfer.heads.frozen_channels import FrozenChannels


class ClassCarrier:
    """What our KerasCV task subclasses (detectors, segmenters) add to their parent:
    class metadata, frozen class channels and per-layer trainable flags, kept
    through `get_config`. A subclass calls `_setup_transfer` after its parent's
    constructor."""

    logits_activation: str | None = None  # activation of the raw class output
    multi_label: bool = True  # classes scored independently (sigmoid), not by one softmax

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._transfer_config()}

    def _setup_transfer(self, class_metadata, frozen_channels, frozen_layers) -> None:
        if isinstance(class_metadata, Mapping):
            class_metadata = ClassMetadata.from_config(dict(class_metadata))
        if class_metadata is None:
            class_metadata = default_metadata(
                self.num_classes, self.logits_activation, multi_label=self.multi_label
            )
        if class_metadata.num_classes != self.num_classes:
            raise ValueError(
                f"Model {self.name!r} has {self.num_classes} classes but its class metadata "
                f"names {class_metadata.num_classes}: {list(class_metadata.class_names)[:10]}."
            )
        self._class_metadata = class_metadata
        records = [
            r if isinstance(r, FrozenChannels) else FrozenChannels.from_config(r)
            for r in frozen_channels or ()
        ]
        self._frozen_channel_configs = [r.get_config() for r in records]
        freezing.install(self, records)
        if frozen_layers is not None:
            frozen = set(frozen_layers)
            for index, layer in enumerate(all_layers(self)):
                if index in frozen:
                    layer.trainable = False
        extractor = self._feature_extractor()
        if extractor is not None and self.backbone is not None:
            # `tt.training.find_backbone` / `block_boundaries` look it up by registry name.
            extractor.name = self.backbone.name

    @property
    def class_metadata(self) -> ClassMetadata:
        return self._class_metadata

    @property
    def frozen_channels(self) -> list[FrozenChannels]:
        """The frozen class channels (empty unless expanded with freeze_old=True).

        Example:

        >>> tt.expand_classes(detector_of_3_classes, 2, freeze_old=True).frozen_channels[0].classes
        (0, 1, 2)
        """
        return [FrozenChannels.from_config(c) for c in self._frozen_channel_configs]

    def refresh_frozen_snapshots(self) -> None:
        """Holds the frozen channels at their current values (after setting weights).

        Example:

        >>> detector.set_weights(weights); detector.refresh_frozen_snapshots()
        """
        freezing.refresh(self, self.frozen_channels)

    def _feature_extractor(self) -> keras.Model | None:
        nested = [layer for layer in self.layers if isinstance(layer, keras.Model)]
        return nested[0] if nested else None

    def _transfer_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class_metadata": self._class_metadata.get_config(),
            "frozen_channels": [dict(c) for c in self._frozen_channel_configs],
            "frozen_layers": [i for i, layer in enumerate(all_layers(self)) if not layer.trainable],
        }


class CompileMemory:
    """Keeps `compile`'s arguments (the live optimizer included) so that a saved
    detector reloads compiled as it was (`get_compile_config` /
    `compile_from_config`); `compile` calls `_remember_compile`."""

    def _remember_compile(self, **arguments) -> None:
        """Keeps `compile`'s arguments (the live optimizer) for `get_compile_config`."""
        arguments["optimizer"] = self.optimizer
        object.__setattr__(self, "_detector_compile_arguments", arguments)  # untracked

    def get_compile_config(self) -> dict[str, Any] | None:
        arguments = getattr(self, "_detector_compile_arguments", None)
        if not self.compiled or arguments is None:
            return None
        return keras.saving.serialize_keras_object(arguments)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Compiles a loaded detector as it was compiled when saved (optimizer state follows)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)


def default_metadata(
    num_classes: int, activation: str | None, *, multi_label: bool = True
) -> ClassMetadata:
    """class_0, class_1, ...: independent (multi-label) classes, as one-stage detectors
    score them, or one softmax (`multi_label=False`, Faster R-CNN).

    Example:

    >>> default_metadata(2, "sigmoid").class_names
    ('class_0', 'class_1')
    """
    names = ClassMetadata.default(num_classes).class_names
    return ClassMetadata(names, activation=activation, multi_label=multi_label)

"""ImageNet backbones: the registry (`registry`, readable without Keras), building
them (`build`) and their feature pyramids for detectors and segmenters (`pyramid`,
which needs KerasCV). Each name loads its module on first use (PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.backbones.build import block_boundaries, build_backbone, freeze_batchnorm
    from tfx_transfer.backbones.registry import (
        FEATURE_LEVELS,
        BackboneSpec,
        describe,
        feature_layer_names,
        get_backbone_spec,
        list_backbones,
    )

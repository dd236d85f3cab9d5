"""Semantic segmentation: KerasCV DeepLabV3+ on registry backbones (`build_segmenter`),
its metrics (mean IoU, pixel accuracy) and serving outputs.

Example:

>>> segmenter = tt.build_segmenter("deeplab_v3_plus", "mobilenet_v3_small", 3, weights=None,
...                                input_shape=(64, 64, 3))

Each name loads its module on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.segmentation.build import (
        TransferDeepLabV3Plus,
        build_segmenter,
        rebuild_segmenter,
    )
    from tfx_transfer.segmentation.metrics import SegmentationReport, evaluate_segmenter

"""Semantic segmentation: KerasCV DeepLabV3+ on registry backbones (`build_segmenter`),
its metrics (mean IoU, pixel accuracy) and serving outputs.

Example:

>>> segmenter = tt.build_segmenter("deeplab_v3_plus", "mobilenet_v3_small", 3, weights=None,
...                                input_shape=(64, 64, 3))
"""

from tfx_transfer.segmentation.build import (
    TransferDeepLabV3Plus,
    build_segmenter,
    rebuild_segmenter,
)
from tfx_transfer.segmentation.metrics import SegmentationReport, evaluate_segmenter

__all__ = [
    "SegmentationReport",
    "TransferDeepLabV3Plus",
    "build_segmenter",
    "evaluate_segmenter",
    "rebuild_segmenter",
]

"""Object detection: KerasCV RetinaNet and YOLOv8, and our two-stage Faster R-CNN
(built from KerasCV's anchor, proposal and box utilities), on registry or KerasCV
backbones.

KerasCV is imported only here, in `segmentation/`, `backbones/pyramid` and
`data/detection` (box utilities), and only when one of them is first used.

Example:

>>> detector = tt.build_detector("yolov8", "mobilenet_v3_small", 3, weights=None,
...                              input_shape=(128, 128, 3))
>>> tt.class_info(detector).class_names
('class_0', 'class_1', 'class_2')

Each name loads its module on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.backbones.pyramid import PyramidBackbone, aligned_backbones
    from tfx_transfer.detection.branch_head import BranchedClassificationHead
    from tfx_transfer.detection.build import ARCHITECTURES, build_detector, rebuild_detector
    from tfx_transfer.detection.class_nms import PerClassNonMaxSuppression
    from tfx_transfer.detection.faster_rcnn import TransferFasterRCNN
    from tfx_transfer.detection.models import TransferRetinaNet, TransferYOLOV8Detector
    from tfx_transfer.detection.roi_align import ROIAlign
    from tfx_transfer.heads.frozen_channels import FrozenChannels

"""Object detection: KerasCV RetinaNet and YOLOv8 on registry or KerasCV backbones.

Every KerasCV import of the toolkit lives in this package, so that KerasHub's
detectors can replace KerasCV's without touching the rest.

Example:

>>> detector = tt.build_detector("yolov8", "mobilenet_v3_small", 3, weights=None,
...                              input_shape=(128, 128, 3))
>>> tt.class_info(detector).class_names
('class_0', 'class_1', 'class_2')
"""

from tfx_transfer.detection.backbone_adapter import PyramidBackbone, aligned_backbones
from tfx_transfer.detection.build import ARCHITECTURES, build_detector, rebuild_detector
from tfx_transfer.detection.freezing import FrozenChannels
from tfx_transfer.detection.models import TransferRetinaNet, TransferYOLOV8Detector

__all__ = [
    "ARCHITECTURES",
    "FrozenChannels",
    "PyramidBackbone",
    "TransferRetinaNet",
    "TransferYOLOV8Detector",
    "aligned_backbones",
    "build_detector",
    "rebuild_detector",
]

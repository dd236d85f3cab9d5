"""Detection data: COCO JSON, Pascal VOC XML, TFDS and the embedded synthetic shapes,
as `tf.data` batches of KerasCV dicts, with box-aware augmentation.

Example:

>>> data = tt.data.synthetic_detection(32, image_size=128, test_images=8)
>>> batch = next(iter(data.train))
>>> batch["images"].shape, batch["bounding_boxes"]["boxes"].shape
(TensorShape([8, 128, 128, 3]), TensorShape([8, 3, 4]))
"""

from tfx_transfer.data.common import AnnotationError
from tfx_transfer.data.detection.augment import (
    DETECTION_AUGMENTATIONS,
    DroppedBoxes,
    augment_detection,
)
from tfx_transfer.data.detection.batching import DetectionData
from tfx_transfer.data.detection.boxes import count_degenerate
from tfx_transfer.data.detection.coco import coco_detection
from tfx_transfer.data.detection.synthetic import synthetic_detection, synthetic_detection_arrays
from tfx_transfer.data.detection.tfds_detection import tfds_detection
from tfx_transfer.data.detection.voc import voc_detection

__all__ = [
    "DETECTION_AUGMENTATIONS",
    "AnnotationError",
    "DetectionData",
    "DroppedBoxes",
    "augment_detection",
    "coco_detection",
    "count_degenerate",
    "synthetic_detection",
    "synthetic_detection_arrays",
    "tfds_detection",
    "voc_detection",
]

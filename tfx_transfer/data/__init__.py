"""Data sources that return plain `tf.data` pipelines of (images, labels).

Each name loads its module on first use (PEP 562): reading image folders does not
import KerasCV (box utilities) or TensorFlow Datasets (and its matplotlib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.data import shapes
    from tfx_transfer.data.classification.arrays import arrays
    from tfx_transfer.data.classification.augment import augment, augmentation_layers
    from tfx_transfer.data.classification.balance import (
        ClassStatistics,
        class_statistics,
        class_weights,
        resample,
    )
    from tfx_transfer.data.classification.image_folder import image_folder
    from tfx_transfer.data.classification.manifest import manifest
    from tfx_transfer.data.classification.relabel import align_labels
    from tfx_transfer.data.classification.replay import select_exemplars
    from tfx_transfer.data.classification.tfds_source import tfds
    from tfx_transfer.data.common import ImageData, UnusableImagesError, to_one_hot
    from tfx_transfer.data.detection import (
        AnnotationError,
        DetectionData,
        DroppedBoxes,
        augment_detection,
        coco_detection,
        count_degenerate,
        synthetic_detection,
        synthetic_detection_arrays,
        tfds_detection,
        voc_detection,
    )
    from tfx_transfer.data.segmentation import (
        SegmentationData,
        augment_segmentation,
        mask_folder,
        synthetic_segmentation,
        synthetic_segmentation_arrays,
        tfds_segmentation,
    )
    from tfx_transfer.data.tfds_prepare import DatasetUnavailableError

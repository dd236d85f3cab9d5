"""Class surgery: growing, restoring and merging classification layers."""

from tfx_transfer.surgery.expand import expand_classes, merge_frozen, restore_old_classes
from tfx_transfer.surgery.layers import ColumnBlockDense
from tfx_transfer.surgery.locate import Classifier, locate_classifier

__all__ = [
    "Classifier",
    "ColumnBlockDense",
    "expand_classes",
    "locate_classifier",
    "merge_frozen",
    "restore_old_classes",
]

"""Class surgery: growing, refining, dropping, reordering and merging classes."""

from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.locate import Classifier, locate_classifier
from tfx_transfer.surgery.classes import drop_classes, refine_classes, reorder_classes, train_only
from tfx_transfer.surgery.expand import expand_classes, merge_frozen, restore_old_classes
from tfx_transfer.surgery.merge import merge_heads

__all__ = [
    "Classifier",
    "ColumnBlockDense",
    "drop_classes",
    "expand_classes",
    "locate_classifier",
    "merge_frozen",
    "merge_heads",
    "refine_classes",
    "reorder_classes",
    "restore_old_classes",
    "train_only",
]

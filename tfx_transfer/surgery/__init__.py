"""Class surgery: growing, refining, dropping, reordering and merging classes.

Each name loads its module on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.heads.column_blocks import ColumnBlockDense
    from tfx_transfer.heads.locate import Classifier, locate_classifier
    from tfx_transfer.surgery.classes import (
        drop_classes,
        refine_classes,
        reorder_classes,
        train_only,
    )
    from tfx_transfer.surgery.expand import expand_classes, merge_frozen, restore_old_classes
    from tfx_transfer.surgery.merge import merge_heads

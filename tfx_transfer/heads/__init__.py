"""What every model kind's classification head shares: where the class columns are
(`locate`), column blocks with frozen columns (`column_blocks`), frozen channels of
class convolutions (`frozen_channels`), the class-metadata carrier of our Keras task
subclasses (`carrier`) and class probabilities (`probabilities`).

Each name loads its module on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.heads.column_blocks import ColumnBlockDense
    from tfx_transfer.heads.frozen_channels import FrozenChannels
    from tfx_transfer.heads.locate import Classifier, locate_classifier

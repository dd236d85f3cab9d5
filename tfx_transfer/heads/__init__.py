"""What every model kind's classification head shares: where the class columns are
(`locate`), column blocks with frozen columns (`column_blocks`), frozen channels of
class convolutions (`frozen_channels`), the class-metadata carrier of our Keras task
subclasses (`carrier`) and class probabilities (`probabilities`)."""

from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.frozen_channels import FrozenChannels
from tfx_transfer.heads.locate import Classifier, locate_classifier

__all__ = ["Classifier", "ColumnBlockDense", "FrozenChannels", "locate_classifier"]

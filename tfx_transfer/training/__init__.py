"""Fine-tuning: stages, unfreezing, learning-rate schedules.

Each name loads its module on first use (PEP 562), so reading a fine-tuning config
(`FineTuneConfig`, `Stage`) does not import TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.training import resume
    from tfx_transfer.training.anti_forgetting import (
        DistillationLoss,
        align_weights,
        with_class_weights,
        with_teacher_logits,
    )
    from tfx_transfer.training.config import FineTuneConfig, Stage, default_stages
    from tfx_transfer.training.discriminative import (
        discriminative_multipliers,
        layer_groups,
        set_learning_rate_multipliers,
    )
    from tfx_transfer.training.fine_tune import fine_tune
    from tfx_transfer.training.lr_find import LRFinderResult, lr_find
    from tfx_transfer.training.resume import fit_resumable, load_state, save_state
    from tfx_transfer.training.schedules import (
        CyclicalLearningRate,
        OneCycle,
        step_decay,
        warmup_cosine,
    )
    from tfx_transfer.training.unfreeze import find_backbone, set_trainable

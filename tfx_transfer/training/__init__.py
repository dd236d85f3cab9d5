"""Fine-tuning: stages, unfreezing, learning-rate schedules."""

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

__all__ = [
    "CyclicalLearningRate",
    "DistillationLoss",
    "LRFinderResult",
    "OneCycle",
    "align_weights",
    "FineTuneConfig",
    "Stage",
    "default_stages",
    "discriminative_multipliers",
    "find_backbone",
    "fine_tune",
    "fit_resumable",
    "layer_groups",
    "load_state",
    "lr_find",
    "resume",
    "save_state",
    "set_learning_rate_multipliers",
    "set_trainable",
    "step_decay",
    "warmup_cosine",
    "with_class_weights",
    "with_teacher_logits",
]

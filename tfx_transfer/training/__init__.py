"""Fine-tuning: learning-rate schedules, unfreezing, staged training."""

from tfx_transfer.training.schedules import (
    CyclicalLearningRate,
    OneCycle,
    step_decay,
    warmup_cosine,
)

__all__ = ["CyclicalLearningRate", "OneCycle", "step_decay", "warmup_cosine"]

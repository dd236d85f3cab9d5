"""Compiling one stage: optimizer and schedule, loss, metrics, callbacks, head L2."""

from __future__ import annotations

import keras

from tfx_transfer.core.metadata import class_info
from tfx_transfer.training.anti_forgetting import DistillationLoss, label_accuracy
from tfx_transfer.training.config import Stage, is_detector
from tfx_transfer.training.discriminative import (
    discriminative_multipliers,
    set_learning_rate_multipliers,
)
from tfx_transfer.training.feature_cache import CACHED_STEPS_PER_EXECUTION
from tfx_transfer.training.schedules import OneCycle, warmup_cosine


def compile_stage(
    trained: keras.Model, stage: Stage, steps: int, *, model: keras.Model, teacher
) -> None:
    """Compiles `trained` (the model, or its head on cached features) for `stage`;
    a detector keeps its own KerasCV losses."""
    if is_detector(trained):
        trained.compile(optimizer=_optimizer(stage, steps), jit_compile=stage.jit_compile is True)
        return
    if stage.distillation_weight:
        loss = DistillationLoss(
            class_info(teacher).num_classes, stage.temperature, stage.distillation_weight
        )
        metrics = [keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")]
    else:
        loss, metrics = _loss(model, stage), ["accuracy"]
    optimizer = _optimizer(stage, steps)
    if stage.discriminative_factor is not None:
        set_learning_rate_multipliers(
            optimizer,
            discriminative_multipliers(
                model, stage.discriminative_groups, stage.discriminative_factor
            ),
        )
    trained.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=CACHED_STEPS_PER_EXECUTION if stage.cache_features else 1,
        jit_compile=stage.jit_compile,
    )


def stage_callbacks(stage: Stage, monitor: str) -> list[keras.callbacks.Callback]:
    """Early stopping and reduce-on-plateau, as the stage asks."""
    callbacks = []
    if stage.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=stage.early_stopping_patience, restore_best_weights=True
            )
        )
    if stage.reduce_on_plateau_patience is not None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=stage.reduce_on_plateau_patience
            )
        )
    return callbacks


def _optimizer(stage: Stage, steps: int) -> keras.optimizers.Optimizer:
    if stage.schedule == "warmup_cosine":
        rate = warmup_cosine(stage.learning_rate, max(steps, 2), warmup_steps=max(steps // 10, 1))
    elif stage.schedule == "one_cycle":
        rate = OneCycle(stage.learning_rate, max(steps, 2))
    else:
        rate = stage.learning_rate
    clipping = {"global_clipnorm": stage.global_clipnorm}
    if stage.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, **clipping)
    if stage.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=stage.weight_decay, **clipping)
    return keras.optimizers.Adam(rate, **clipping)


def _loss(model: keras.Model, stage: Stage) -> keras.losses.Loss:
    metadata = class_info(model)
    from_logits = metadata.activation is None
    if metadata.multi_label:
        return keras.losses.BinaryCrossentropy(from_logits=from_logits)
    if stage.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            from_logits=from_logits, label_smoothing=stage.label_smoothing
        )
    if stage.label_smoothing:
        return keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=stage.label_smoothing
        )
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def set_head_l2(model: keras.Model, l2: float) -> None:
    """An L2 penalty (or none) on the kernels of the Dense layers after the backbone."""
    regularizer = keras.regularizers.L2(l2) if l2 else None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.regularizer = regularizer

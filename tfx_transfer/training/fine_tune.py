"""`fine_tune`: staged fine-tuning with plain `model.compile` / `model.fit`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.data.pipeline import ImageData, to_one_hot
from tfx_transfer.metadata import class_info
from tfx_transfer.training.anti_forgetting import (
    DistillationLoss,
    label_accuracy,
    with_class_weights,
    with_teacher_logits,
)
from tfx_transfer.training.config import Stage, default_stages
from tfx_transfer.training.discriminative import (
    discriminative_multipliers,
    set_learning_rate_multipliers,
)
from tfx_transfer.training.distribute import build_in_scope, resolve_strategy
from tfx_transfer.training.feature_cache import (
    CACHED_STEPS_PER_EXECUTION,
    cache_features,
    split_at_backbone,
)
from tfx_transfer.training.precision import resolve_precision
from tfx_transfer.training.schedules import OneCycle, warmup_cosine
from tfx_transfer.training.unfreeze import set_trainable


def fine_tune(
    model_or_builder: keras.Model | Callable[[], keras.Model],
    train: tf.data.Dataset | ImageData,
    validation: tf.data.Dataset | None = None,
    *,
    stages: Sequence[Stage] | None = None,
    teacher: keras.Model | None = None,
    strategy: str | tf.distribute.Strategy | None = None,
    mixed_precision: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = "auto",
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Fine-tunes a classifier stage by stage and returns (model, history).

    Each stage sets what trains (`tt.training.set_trainable`), compiles a fresh
    optimizer with its learning-rate schedule (recompiling between stages, not
    inside a callback) and calls `model.fit`. The history holds every stage's
    metrics with keys prefixed `stage1_`, `stage2_`, ...

    Args:
        model_or_builder: a classifier, or a function that builds one.
        train: `tf.data` batches of (images, labels), or a `tt.data.ImageData`
            (its `validation` split is then used unless `validation` is given).
        validation: `tf.data` batches for validation.
        stages: sequence of `Stage`; default `default_stages()`.
        teacher: keras.Model. The original model, for stages with
            `distillation_weight` (its classes are the student's first columns).
        strategy: None, "auto" or a `tf.distribute.Strategy`. The model is built
            (or rebuilt from its config and weights) and compiled in its scope;
            the pipeline's batch size is the global batch.
        mixed_precision: None, "auto" (mixed_float16 on a GPU, float32 on CPU),
            "float32", "mixed_float16" or "mixed_bfloat16". A mixed policy needs a
            builder, called under that policy; logits stay float32 and
            mixed_float16 gets Keras' loss scaling.
        callbacks: extra Keras callbacks for every stage.
        verbose: passed to `fit`.

    Example:

    >>> model, history = tt.fine_tune(model, data, stages=[tt.training.Stage(epochs=3)])
    >>> history["stage1_loss"]
    """
    strategy = resolve_strategy(strategy)
    model = build_in_scope(model_or_builder, strategy, resolve_precision(mixed_precision))
    counts = None
    if isinstance(train, ImageData):
        validation = validation if validation is not None else train.validation
        counts = train.class_counts
        train = train.train
    history: dict[str, list[float]] = {}
    for number, stage in enumerate(stages or default_stages(), start=1):
        set_trainable(
            model, stage.train, top_blocks=stage.top_blocks, train_batchnorm=stage.train_batchnorm
        )
        stage_train, stage_validation, class_weight = _stage_data(
            stage, model, train, validation, counts, teacher
        )
        trained = model
        if stage.cache_features:
            extractor, trained = split_at_backbone(model)
            stage_train = cache_features(extractor, stage_train, shuffle_seed=number)
            if stage_validation is not None:
                stage_validation = cache_features(extractor, stage_validation)
        _set_head_l2(model, stage.head_l2)
        steps = _steps_per_epoch(stage_train) * stage.epochs
        with strategy.scope():
            _compile(trained, stage, steps, model=model, teacher=teacher)
        monitor = "val_loss" if stage_validation is not None else "loss"
        result = trained.fit(
            stage_train,
            validation_data=stage_validation,
            epochs=stage.epochs,
            class_weight=class_weight,
            callbacks=[*callbacks, *_stage_callbacks(stage, monitor)],
            verbose=verbose,
        )
        for key, values in result.history.items():
            history[f"stage{number}_{key}"] = [float(v) for v in values]
    return model, history


def _stage_data(stage: Stage, model, train, validation, counts, teacher):
    """The stage's (train, validation, class_weight): labels one-hot for label
    smoothing and focal loss; teacher logits (and class weights as sample
    weights) for distillation."""
    width = class_info(model).num_classes
    class_weight = _class_weight(stage, counts, train, model)
    if stage.distillation_weight:
        if teacher is None:
            raise ValueError("A stage with distillation_weight needs fine_tune(..., teacher=).")
        if class_weight is not None:
            train = with_class_weights(train, class_weight)
        train = with_teacher_logits(train, teacher, width)
        if validation is not None:
            validation = with_teacher_logits(validation, teacher, width)
        return train, validation, None
    if stage.label_smoothing or stage.loss == "focal":
        train = to_one_hot(train, width)
        validation = to_one_hot(validation, width) if validation is not None else None
    return train, validation, class_weight


def _compile(trained, stage: Stage, steps: int, *, model, teacher) -> None:
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


def _stage_callbacks(stage: Stage, monitor: str) -> list[keras.callbacks.Callback]:
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
    if stage.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9)
    if stage.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=stage.weight_decay)
    return keras.optimizers.Adam(rate)


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


def _set_head_l2(model: keras.Model, l2: float) -> None:
    """An L2 penalty (or none) on the kernels of the Dense layers after the backbone."""
    regularizer = keras.regularizers.L2(l2) if l2 else None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.regularizer = regularizer


def _steps_per_epoch(data: tf.data.Dataset) -> int:
    cardinality = int(data.cardinality())
    return cardinality if cardinality > 0 else 100


def _class_weight(stage: Stage, counts, data: tf.data.Dataset, model: keras.Model):
    if stage.class_weight is None:
        return None
    if counts is None:
        labels = np.concatenate([np.asarray(y) for _, y in data])
        labels = labels.argmax(axis=1) if labels.ndim == 2 else labels
        totals = np.bincount(labels, minlength=class_info(model).num_classes)
    else:
        totals = np.array(list(counts.values()))
    present = totals > 0
    weights = totals.sum() / (present.sum() * np.maximum(totals, 1))
    return {index: float(w) for index, w in enumerate(weights)}

"""`fine_tune`: staged fine-tuning with plain `model.compile` / `model.fit`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.classification.metrics import evaluate_classifier
from tfx_transfer.core.metadata import class_info
from tfx_transfer.data.classification.augment import augmentation_layers
from tfx_transfer.data.common import ImageData, to_one_hot
from tfx_transfer.data.detection import DetectionData
from tfx_transfer.detection.metrics import evaluate_detector
from tfx_transfer.training import resume
from tfx_transfer.training.anti_forgetting import (
    align_weights,
    with_class_weights,
    with_teacher_logits,
)
from tfx_transfer.training.compiling import compile_stage, set_head_l2, stage_callbacks
from tfx_transfer.training.config import FineTuneConfig, Stage, check_detector_stages, is_detector
from tfx_transfer.training.distribute import build_in_scope, resolve_strategy
from tfx_transfer.training.feature_cache import cache_features, split_at_backbone
from tfx_transfer.training.precision import resolve_precision
from tfx_transfer.training.unfreeze import set_trainable


def fine_tune(
    model_or_builder: keras.Model | Callable[[], keras.Model],
    train: tf.data.Dataset | ImageData,
    validation: tf.data.Dataset | None = None,
    *,
    config: FineTuneConfig | None = None,
    stages: Sequence[Stage] | None = None,
    augmentation: Mapping[str, float] | None = None,
    teacher: keras.Model | None = None,
    strategy: str | tf.distribute.Strategy | None = None,
    mixed_precision: str | None = None,
    checkpoint_dir: str | None = None,
    seed: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = "auto",
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Fine-tunes a classifier stage by stage and returns (model, history).

    Each stage sets what trains (`tt.training.set_trainable`), compiles a fresh
    optimizer with its learning-rate schedule (recompiling between stages, not
    inside a callback) and calls `model.fit`. The history holds every stage's
    metrics with keys prefixed `stage1_`, `stage2_`, ...; for an expanded model
    (or with a `teacher`) and validation data, it also holds each stage's
    `old_accuracy`, `new_accuracy` and `old_accuracy_change` (`tt.evaluate`;
    for detectors `old_map`, `new_map` and `old_map_change`).

    Args:
        model_or_builder: a classifier, or a function that builds one.
        train: `tf.data` batches of (images, labels), or a `tt.data.ImageData`
            (its `validation` split is then used unless `validation` is given);
            for a detector (`tt.build_detector`), KerasCV batches
            `{"images", "bounding_boxes"}` or a `tt.data.DetectionData`.
        validation: `tf.data` batches for validation.
        config: `FineTuneConfig`. Its fields are the defaults of the keyword
            arguments below (arguments given here win).
        stages: sequence of `Stage`; default `default_stages()`.
        augmentation: {name: strength} of per-image augmentations applied on the
            fly during training (their random state is saved with checkpoints).
        teacher: keras.Model. The original model, for stages with
            `distillation_weight` or `align_new_classes` and for the old-class
            change (its classes are the student's first columns).
        strategy: None, "auto" or a `tf.distribute.Strategy`. The model is built
            (or rebuilt from its config and weights) and compiled in its scope;
            the pipeline's batch size is the global batch.
        mixed_precision: None, "auto" (mixed_float16 on a GPU, float32 on CPU),
            "float32", "mixed_float16" or "mixed_bfloat16". A mixed policy needs a
            builder, called under that policy; logits stay float32 and
            mixed_float16 gets Keras' loss scaling.
        checkpoint_dir: str. Saves the training state after every epoch; running
            the same call again resumes from the last completed epoch and ends
            with the same weights as an uninterrupted run. This needs `train` of
            known length whose only randomness is seeded (e.g. `shuffle(n,
            seed=...)`, as `tt.data` pipelines do); early stopping and
            reduce-on-plateau restart their patience on resume.
        seed: int. Seeds the augmentation (default 0).
        callbacks: extra Keras callbacks for every stage.
        verbose: passed to `fit`; 0 also hides the feature-caching progress bar.

    Example:

    >>> model, history = tt.fine_tune(model, data, stages=[tt.training.Stage(epochs=3)])
    >>> history["stage1_loss"]
    """
    config = _merge_config(
        config,
        stages=tuple(stages) if stages is not None else None,
        augmentation=augmentation,
        mixed_precision=mixed_precision,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
    )
    strategy = resolve_strategy(strategy if strategy is not None else config.strategy)
    model = build_in_scope(model_or_builder, strategy, resolve_precision(config.mixed_precision))
    counts = None
    if isinstance(train, (ImageData, DetectionData)):
        validation = validation if validation is not None else train.validation
        counts = getattr(train, "class_counts", None)
        train = train.train
    if is_detector(model):
        check_detector_stages(config)
    run = _Run(model, train, config)
    for number, stage in enumerate(config.stages, start=1):
        if run.resumed_past(number):
            continue
        run.start_stage(number)
        set_trainable(
            model, stage.train, top_blocks=stage.top_blocks, train_batchnorm=stage.train_batchnorm
        )
        stage_train, stage_validation, class_weight = _stage_data(
            stage, model, run, validation, counts, teacher
        )
        trained = model
        if stage.cache_features:
            extractor, trained = split_at_backbone(model)
            progress = verbose != 0
            stage_train = cache_features(
                extractor, stage_train, shuffle_seed=number, progress=progress
            )
            if stage_validation is not None:
                stage_validation = cache_features(extractor, stage_validation, progress=progress)
        elif config.augmentation:
            with strategy.scope():  # the layers' random state is a variable
                trained = _with_augmentation(model, config.augmentation, config.seed + number)
        set_head_l2(model, stage.head_l2)
        steps = _steps_per_epoch(stage_train)
        with strategy.scope():
            compile_stage(trained, stage, steps * stage.epochs, model=model, teacher=teacher)
        monitor = "val_loss" if stage_validation is not None else "loss"
        with _synchronized_batchnorm(model, stage.sync_batchnorm):
            result = run.fit(
                trained,
                stage_train,
                steps,
                from_train=not stage.cache_features,
                epochs=stage.epochs,
                validation_data=stage_validation,
                class_weight=class_weight,
                callbacks=[*callbacks, *stage_callbacks(stage, monitor)],
                verbose=verbose,
            )
        if stage.align_new_classes:
            _align_new_classes(model, teacher)
        run.finish_stage(number, result, _old_new_accuracy(model, validation, teacher))
    return model, run.history


def _merge_config(config: FineTuneConfig | None, **overrides: Any) -> FineTuneConfig:
    config = config or FineTuneConfig()
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(config, **given)


def _stage_data(stage: Stage, model, run: _Run, validation, counts, teacher):
    """The stage's (train, validation, class_weight): labels one-hot for label
    smoothing and focal loss; teacher logits (and class weights as sample
    weights) for distillation. Detection batches go as they are."""
    train = run.train
    if is_detector(model):
        return train, validation, None
    width = class_info(model).num_classes
    class_weight = _class_weight(stage, counts, run, model)
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


def _steps_per_epoch(data: tf.data.Dataset) -> int:
    cardinality = int(data.cardinality())
    if cardinality < 0:
        raise ValueError(
            "fine_tune needs training data of known length (tf.data reports "
            f"cardinality {cardinality}); add "
            "`.apply(tf.data.experimental.assert_cardinality(batches))`."
        )
    return cardinality


def _class_weight(stage: Stage, counts, run: _Run, model: keras.Model):
    if stage.class_weight is None:
        return None
    if counts is None:
        labels = np.concatenate([np.asarray(y) for _, y in run.train])
        labels = labels.argmax(axis=1) if labels.ndim == 2 else labels
        totals = np.bincount(labels, minlength=class_info(model).num_classes)
    else:
        totals = np.array(list(counts.values()))
    present = totals > 0
    weights = totals.sum() / (present.sum() * np.maximum(totals, 1))
    return {index: float(w) for index, w in enumerate(weights)}


def _with_augmentation(model: keras.Model, spec: Mapping[str, float], seed: int) -> keras.Model:
    """The model behind augmentation layers, for training only: both share the
    model's weights, and the layers' random state is part of the trained
    model's variables (so checkpoints hold it)."""
    inputs = keras.Input(model.input_shape[1:], name="images")
    augmented = augmentation_layers(spec, seed=seed)(inputs)
    return keras.Model(inputs, model(augmented), name=f"{model.name}_augmented")


class _synchronized_batchnorm:
    """Context: BatchNorm layers that train compute their statistics over the
    global batch of a tf.distribute strategy."""

    def __init__(self, model: keras.Model, enabled: bool) -> None:
        self.layers = list(_training_batchnorm(model)) if enabled else []

    def __enter__(self) -> None:
        for layer in self.layers:
            layer.synchronized = True

    def __exit__(self, *exc_info) -> None:
        for layer in self.layers:
            layer.synchronized = False


def _training_batchnorm(layer: keras.layers.Layer):
    """The BatchNormalization layers that train, nested models included."""
    for inner in getattr(layer, "layers", ()):
        if isinstance(inner, keras.layers.BatchNormalization) and inner.trainable:
            yield inner
        yield from _training_batchnorm(inner)


def _align_new_classes(model: keras.Model, teacher: keras.Model | None) -> None:
    if teacher is None:
        raise ValueError("A stage with align_new_classes needs fine_tune(..., teacher=original).")
    align_weights(model, class_info(teacher).num_classes)


def _old_new_accuracy(model, validation, teacher) -> dict[str, float]:
    """Old/new-class accuracy (mAP for a detector) on the validation data for an
    expanded model."""
    metadata = class_info(model)
    expanded = any(h.get("operation") == "expand_classes" for h in metadata.history)
    if is_detector(model):
        if validation is None or not (expanded or teacher is not None):
            return {}
        report = evaluate_detector(model, validation, reference=teacher)
        keys = ("old_map", "new_map", "old_map_change")
        return {key: getattr(report, key) for key in keys if getattr(report, key) is not None}
    if validation is None or metadata.multi_label or not (expanded or teacher is not None):
        return {}
    report = evaluate_classifier(model, validation, reference=teacher)
    keys = ("old_accuracy", "new_accuracy", "old_accuracy_change")
    return {key: getattr(report, key) for key in keys if getattr(report, key) is not None}


class _Run:
    """The run's bookkeeping: history, checkpoints and the data position.

    Exact resume replays the order of the training data. With a checkpoint
    directory, `train` is read through a wrapper that counts the passes made
    over it (by `fit`, feature caching or label scans); a resumed run first
    creates that many iterators of `train`, which advances its seeded shuffle
    to where the interrupted run was without reading any data.
    """

    def __init__(self, model, train: tf.data.Dataset, config: FineTuneConfig) -> None:
        self.model, self.source, self.config = model, train, config
        self.history: dict[str, list[float]] = {}
        self.stage = 0
        self.state = None
        self.train = train
        if config.checkpoint_dir:
            self.passes = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.train = _counted(train, self.passes)
            self.state = resume.read_state(config.checkpoint_dir)
        if self.state is not None:
            self.history = self.state["info"]["history"]

    def resumed_past(self, number: int) -> bool:
        return self.state is not None and number < self.state["info"]["stage"]

    def start_stage(self, number: int) -> None:
        self.stage = number
        if self.state is not None and number == self.state["info"]["stage"]:
            self._advance(self.state["info"]["passes_at_stage_start"])
            resume.assign_state(self.state, "model", self.model.variables)
        if self.config.checkpoint_dir:
            self.passes_at_stage_start = int(self.passes.numpy())

    def _advance(self, passes: int) -> None:
        for _ in range(passes):
            iter(self.source)
        self.passes.assign_add(passes)

    def fit(self, trained, data, steps, *, from_train, epochs, callbacks, **kwargs):
        """`trained.fit` over the stage's epochs, resuming inside the stage; each
        epoch is one pass over `data` (which derives from `train` if `from_train`)."""
        done, stage_history = 0, {}
        if self.state is not None and self.stage == self.state["info"]["stage"]:
            trained.optimizer.build(trained.trainable_variables)
            resume.assign_state(self.state, "optimizer", trained.optimizer.variables)
            resume.assign_state(self.state, "extra", _extra_variables(self.model, trained))
            done = self.state["info"]["epochs_done"]
            stage_history = self.state["info"]["stage_history"]
            if from_train:
                self._advance(done)
            else:
                for _ in range(done):
                    iter(data)
            self.state = None
        record = _EpochRecord(self, trained, stage_history)
        if done < epochs:
            trained.fit(
                data.repeat(epochs - done),
                epochs=epochs,
                initial_epoch=done,
                steps_per_epoch=steps,
                shuffle=False,  # the data shuffles itself, with its seed
                callbacks=[*callbacks, record],
                **kwargs,
            )
        return record.history

    def finish_stage(self, number: int, history, evaluation: dict[str, float]) -> None:
        for key, values in history.items():
            self.history[f"stage{number}_{key}"] = [float(v) for v in values]
        for key, value in evaluation.items():
            self.history[f"stage{number}_{key}"] = [float(value)]

    def save(self, trained, epochs_done: int, stage_history) -> None:
        if not self.config.checkpoint_dir:
            return
        info = {
            "stage": self.stage,
            "epochs_done": epochs_done,
            "passes_at_stage_start": self.passes_at_stage_start,
            "stage_history": stage_history,
            "history": self.history,
        }
        resume.write_state(
            self.config.checkpoint_dir,
            info,
            model=self.model.variables,
            extra=_extra_variables(self.model, trained),
            optimizer=trained.optimizer.variables,
        )


class _EpochRecord(keras.callbacks.Callback):
    """Collects the stage's epoch logs and checkpoints after every epoch."""

    def __init__(self, run: _Run, trained, history: dict[str, list[float]]) -> None:
        super().__init__()
        self.run, self.trained, self.history = run, trained, history

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.run.save(self.trained, epoch + 1, self.history)


def _counted(data: tf.data.Dataset, passes: tf.Variable) -> tf.data.Dataset:
    """`data`, adding one to `passes` each time a pass over it begins."""
    counted = tf.data.Dataset.range(1).map(lambda _: passes.assign_add(1))
    counted = counted.flat_map(lambda _: data)
    return counted.apply(tf.data.experimental.assert_cardinality(data.cardinality()))


def _extra_variables(model, trained) -> list:
    """Variables of the trained wrapper that are not the model's (augmentation state)."""
    own = {id(v) for v in model.variables}
    return [v for v in trained.variables if id(v) not in own]

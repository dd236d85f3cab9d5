"""`Stage` and `FineTuneConfig`: what one fine-tuning run does, stage by stage.

They are also the schema of the YAML configs: `FineTuneConfig.from_dict` reads
the mapping `yaml.safe_load` returns and rejects unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from tfx_transfer.data.classification.augment_options import IMAGE_AUGMENTATIONS

PARTS = ("head", "top_blocks", "all", "classifier")
SCHEDULES = ("constant", "warmup_cosine", "one_cycle")
OPTIMIZERS = ("adam", "adamw", "sgd")
LOSSES = ("crossentropy", "focal")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of fine-tuning: what trains, how fast, for how long.

    Args:
        train: str. "head", "top_blocks", "all" or "classifier" (see
            `tt.training.set_trainable`).
        top_blocks: int. Backbone blocks to unfreeze with train="top_blocks".
        epochs: int.
        learning_rate: float. Peak learning rate.
        schedule: str. "constant", "warmup_cosine" (10% warm-up) or "one_cycle".
        optimizer: str. "adam", "adamw" or "sgd" (momentum 0.9).
        weight_decay: float. For "adamw".
        global_clipnorm: float or None. Clip the gradients to this global norm
            (the optimizer's `global_clipnorm`; KerasCV's detection guides use
            10.0). Detector heads trained from scratch at a high rate can
            diverge without it.
        label_smoothing: float. For single-label classifiers.
        class_weight: None or "balanced".
        early_stopping_patience: int or None. Stop when validation loss stops
            improving and restore the best weights.
        train_batchnorm: bool. Let unfrozen BatchNorm layers train.
        cache_features: bool. With train="head" or "classifier": compute the
            frozen backbone's features once and train the head on them (many
            times faster; only for data without random augmentation).
        loss: str. "crossentropy", or "focal" (categorical focal loss).
        reduce_on_plateau_patience: int or None. Halve the learning rate when
            the validation loss stalls (schedule="constant" only).
        head_l2: float. L2 penalty on the head's Dense kernels.
        distillation_weight: float. With `fine_tune(..., teacher=original)`:
            weight of distilling the original model's old-class logits
            (Learning without Forgetting); 0 disables.
        temperature: float. Distillation temperature.
        discriminative_factor: float or None. Discriminative learning rates:
            the trained layers fall into `discriminative_groups` groups (backbone
            blocks, then the head); each group learns `factor` times as fast as
            the next, the head at the stage's rate.
        discriminative_groups: int.
        jit_compile: bool or "auto". XLA compilation, as in `model.compile`
            ("auto": Keras decides; it stays off under a tf.distribute strategy).
        sync_batchnorm: bool. With train_batchnorm under a tf.distribute strategy:
            batch statistics over the global batch instead of each replica's.
        align_new_classes: bool. After the stage, weight aligning of the new
            classes (`align_weights`; needs `fine_tune(..., teacher=original)`).

    Example:

    >>> Stage(train="top_blocks", top_blocks=2, epochs=3, learning_rate=1e-4,
    ...       schedule="warmup_cosine")
    """

    train: str = "head"
    top_blocks: int = 0
    epochs: int = 1
    learning_rate: float = 1e-3
    schedule: str = "constant"
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    global_clipnorm: float | None = None
    label_smoothing: float = 0.0
    class_weight: str | None = None
    early_stopping_patience: int | None = None
    train_batchnorm: bool = False
    cache_features: bool = False
    loss: str = "crossentropy"
    reduce_on_plateau_patience: int | None = None
    head_l2: float = 0.0
    distillation_weight: float = 0.0
    temperature: float = 2.0
    discriminative_factor: float | None = None
    discriminative_groups: int = 3
    jit_compile: bool | str = "auto"
    sync_batchnorm: bool = False
    align_new_classes: bool = False

    def __post_init__(self) -> None:
        for field, allowed in (
            ("train", PARTS),
            ("schedule", SCHEDULES),
            ("optimizer", OPTIMIZERS),
        ):
            if getattr(self, field) not in allowed:
                raise ValueError(f"Stage {field}={getattr(self, field)!r} is not one of {allowed}.")
        if self.epochs < 1 or self.learning_rate <= 0:
            raise ValueError(f"Stage needs epochs >= 1 and learning_rate > 0; got {self}.")
        if self.global_clipnorm is not None and self.global_clipnorm <= 0:
            raise ValueError(f"Stage global_clipnorm must be > 0; got {self.global_clipnorm}.")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced'; got {self.class_weight!r}.")
        if self.cache_features and self.train not in ("head", "classifier"):
            raise ValueError(
                f"cache_features needs a frozen backbone (train='head' or 'classifier'); "
                f"got train={self.train!r}."
            )
        if self.loss not in LOSSES:
            raise ValueError(f"Stage loss={self.loss!r} is not one of {LOSSES}.")
        if self.reduce_on_plateau_patience is not None and self.schedule != "constant":
            raise ValueError("reduce_on_plateau_patience needs schedule='constant'.")
        if self.distillation_weight and (self.cache_features or self.loss != "crossentropy"):
            raise ValueError(
                "Distillation works with loss='crossentropy' and without cache_features."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}.")
        if self.sync_batchnorm and not self.train_batchnorm:
            raise ValueError(
                "sync_batchnorm needs train_batchnorm=True (frozen BatchNorm has no "
                "batch statistics to synchronise)."
            )


def default_stages(epochs: int = 5, top_blocks: int = 2) -> tuple[Stage, ...]:
    """The usual recipe: the head on a frozen backbone at 1e-3, then the top
    blocks at 1e-4 with warm-up and cosine decay."""
    return (
        Stage(train="head", epochs=epochs, learning_rate=1e-3),
        Stage(
            train="top_blocks",
            top_blocks=top_blocks,
            epochs=epochs,
            learning_rate=1e-4,
            schedule="warmup_cosine",
        ),
    )


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """A whole fine-tuning run: its stages and what applies to all of them.

    Args:
        stages: tuple of `Stage`; default `default_stages()`.
        augmentation: {name: strength} of per-image augmentations
            (`tt.data.augmentation_layers`), applied on the fly in training only;
            the returned model has no augmentation layers.
        seed: int. Seeds the augmentation.
        strategy: None or "auto" (see `tt.fine_tune`).
        mixed_precision: None, "auto", "float32", "mixed_float16" or "mixed_bfloat16".
        checkpoint_dir: str or None. Save the training state there after every
            epoch; a run started again with the same config and data continues
            from the last completed epoch and ends with the same weights.

    Example:

    >>> config = FineTuneConfig.from_dict(yaml.safe_load(open("fine_tune.yaml")))
    >>> model, history = tt.fine_tune(model, data, config=config)
    """

    stages: tuple[Stage, ...] = dataclasses.field(default_factory=lambda: default_stages())
    augmentation: Mapping[str, float] | None = None
    seed: int = 0
    strategy: str | None = None
    mixed_precision: str | None = None
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages or not all(isinstance(stage, Stage) for stage in stages):
            raise ValueError(f"FineTuneConfig needs at least one Stage; got {self.stages!r}.")
        object.__setattr__(self, "stages", stages)
        if self.augmentation:
            unknown = sorted(set(self.augmentation) - set(IMAGE_AUGMENTATIONS))
            if unknown:
                raise ValueError(
                    f"Unknown augmentations {unknown} in FineTuneConfig; expected some of "
                    f"{list(IMAGE_AUGMENTATIONS)} (mixup and cutmix mix labels: apply "
                    "tt.data.augment to the training data instead)."
                )
            object.__setattr__(self, "augmentation", dict(self.augmentation))
            cached = [n for n, stage in enumerate(stages, start=1) if stage.cache_features]
            if cached:
                raise ValueError(
                    f"Stages {cached} cache features, which needs data without augmentation; "
                    "drop cache_features there or the augmentation."
                )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> FineTuneConfig:
        """Builds a config from plain data (e.g. `yaml.safe_load`); unknown keys
        raise a ValueError naming them."""
        config = dict(config)
        _check_keys(config, cls, "fine_tune")
        stages = config.pop("stages", None)
        if stages is not None:
            for number, stage in enumerate(stages, start=1):
                _check_keys(stage, Stage, f"stage {number}")
            config["stages"] = tuple(Stage(**stage) for stage in stages)
        return cls(**config)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> FineTuneConfig:
        """Reads a config from a YAML file (with `yaml.safe_load`)."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(yaml.safe_load(handle) or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back (and `yaml.safe_dump` writes)."""
        config = dataclasses.asdict(self)
        config["stages"] = [dataclasses.asdict(stage) for stage in self.stages]
        return config


def _check_keys(config: Mapping[str, Any], schema: type, where: str) -> None:
    if not isinstance(config, Mapping):
        raise ValueError(f"The {where} config must be a mapping; got {config!r}.")
    known = {field.name for field in dataclasses.fields(schema)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"Unknown keys {unknown} in the {where} config; known: {sorted(known)}.")


DETECTOR_UNSUPPORTED = {
    "label_smoothing": 0.0,
    "class_weight": None,
    "loss": "crossentropy",
    "cache_features": False,
    "head_l2": 0.0,
    "distillation_weight": 0.0,
    "discriminative_factor": None,
    "align_new_classes": False,
}


def is_detector(model: Any) -> bool:
    """Whether `model` is a KerasCV detector (it decodes boxes in `predict`)."""
    return hasattr(model, "prediction_decoder") and hasattr(model, "bounding_box_format")


def check_detector_stages(config: FineTuneConfig) -> None:
    """Detectors train with their own KerasCV losses: refuses classifier-only options."""
    if config.augmentation:
        raise ValueError(
            "FineTuneConfig.augmentation moves pixels but not boxes; augment detection data "
            "with tt.data.augment_detection instead."
        )
    for number, stage in enumerate(config.stages, start=1):
        for option, default in DETECTOR_UNSUPPORTED.items():
            if getattr(stage, option) != default:
                raise ValueError(
                    f"Stage {number}: {option}={getattr(stage, option)!r} is for classifiers; "
                    "a detector trains with its own KerasCV losses."
                )

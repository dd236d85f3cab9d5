"""Runs a `RunConfig`: data, model, optional expansion, fine-tuning, evaluation,
run directory (config, history, checkpoints, report, plots) and export.

This is what `tfx-transfer train CONFIG.yaml` does; every step is a public
`tt` function, so a script can do the same with its own changes.

Example:

>>> result = run_training(load_run_config("examples/configs/expand_90_to_92.yaml"))
>>> result["report"]
'runs/.../report.json'
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras

from tfx_transfer.app.plots import plot_lr_find
from tfx_transfer.app.run_config import DataConfig, ModelConfig, RunConfig
from tfx_transfer.app.run_dir import RunDirectory
from tfx_transfer.classification.build import build_classifier
from tfx_transfer.core.metadata import class_info
from tfx_transfer.core.saving import load_model
from tfx_transfer.data import shapes
from tfx_transfer.data.classification.arrays import arrays
from tfx_transfer.data.classification.image_folder import image_folder
from tfx_transfer.data.classification.manifest import manifest
from tfx_transfer.data.classification.relabel import align_labels
from tfx_transfer.data.classification.tfds_source import tfds
from tfx_transfer.data.detection import (
    coco_detection,
    synthetic_detection,
    tfds_detection,
    voc_detection,
)
from tfx_transfer.evaluation import evaluate
from tfx_transfer.export import export_saved_model
from tfx_transfer.surgery import expand_classes, merge_frozen
from tfx_transfer.training.fine_tune import fine_tune
from tfx_transfer.training.lr_find import lr_find

LR_FIND_STEPS = 50


def run_training(config: RunConfig, *, verbose: Any = "auto") -> dict[str, Any]:
    """Runs `config` end to end; returns the paths of what it wrote and the
    headline numbers."""
    timings: dict[str, float] = {}
    started = time.time()
    run = RunDirectory(config.run.root, config.run.name)
    run.write_config(config.to_dict())

    data = load_seeded_data(config)
    timings["data_s"] = round(time.time() - started, 1)
    clock = time.time()
    trained = train_model(
        config,
        data,
        callbacks=lambda model: run.callbacks(validation=data.validation is not None, model=model),
        checkpoint_dir=str(run.path / "state"),
        lr_find_plot=run.plots_dir / "lr_find.png",
        verbose=verbose,
    )
    model, history, teacher, data = trained.model, trained.history, trained.teacher, trained.data
    timings["fine_tune_s"] = round(time.time() - clock, 1)

    clock = time.time()
    held_out = data.test if data.test is not None else data.validation
    report = None
    if held_out is not None:
        report = evaluate(model, split_data(data, held_out), reference=teacher)
    timings["evaluate_s"] = round(time.time() - clock, 1)

    final = merge_frozen(model) if not config.data.detection else model
    model_path = run.path / "model.keras"
    final.save(model_path)
    export_path = None
    if config.export is not None:
        clock = time.time()
        export_path = export_saved_model(
            final, config.export.directory, version=config.export.version
        )
        timings["export_s"] = round(time.time() - clock, 1)
    timings["total_s"] = round(time.time() - started, 1)

    run.history_csv(history)
    run.plots(history=history, evaluation=report)
    extra = {
        "model": str(model_path),
        "export": str(export_path) if export_path else None,
        "skipped_images": [list(entry) for entry in data.skipped],
        "lr_find_suggestion": trained.lr_find_suggestion,
    }
    report_path = run.write_report(evaluation=report, history=history, timings=timings, extra=extra)
    return {
        "run_dir": str(run.path),
        "report": str(report_path),
        "model": str(model_path),
        "export": str(export_path) if export_path else None,
        "summary": report.summary() if report is not None else {},
        "seconds": timings["total_s"],
    }


@dataclasses.dataclass
class TrainedModel:
    """What `train_model` returns: the fine-tuned model, its history, the teacher
    (the model before expansion, if any) and the data (labels aligned to the model)."""

    model: keras.Model
    history: dict[str, list[float]]
    teacher: keras.Model | None
    data: Any
    lr_find_suggestion: float | None = None


def train_model(
    config: RunConfig,
    data: Any,
    *,
    callbacks: Callable[[keras.Model], Sequence[keras.callbacks.Callback]] = lambda model: (),
    checkpoint_dir: str | None = None,
    lr_find_plot: Path | None = None,
    verbose: Any = "auto",
) -> TrainedModel:
    """The model of `config` built (or loaded, and expanded) and fine-tuned on `data`.

    The random seed is set from `config.data.seed` before the model is built;
    with data from `load_seeded_data`, the same config trains the same model, in
    `tfx-transfer train` as in a `tt.tune` trial.

    Example:

    >>> trained = train_model(config, load_seeded_data(config), verbose=0)
    >>> trained.history["stage1_val_accuracy"]
    """
    keras.utils.set_random_seed(config.data.seed)
    model = load_or_build_model(config.model, data)
    teacher = None
    if config.expand is not None:
        original = model
        model = _expand(model, data, config)
        teacher = original if config.expand.teacher else None
    if not config.data.detection:
        data = align_labels(data, class_info(model).class_names)
    suggestion = None
    if config.run.lr_find:
        curve = lr_find(model, data.train, steps=LR_FIND_STEPS)  # restores the weights
        if lr_find_plot is not None:
            plot_lr_find(curve, lr_find_plot)
        suggestion = curve.suggestion
    fine_tune_config = config.fine_tune
    if fine_tune_config.checkpoint_dir is None and checkpoint_dir is not None:
        fine_tune_config = dataclasses.replace(fine_tune_config, checkpoint_dir=checkpoint_dir)
    model, history = fine_tune(
        model,
        data,
        config=fine_tune_config,
        teacher=teacher,
        callbacks=callbacks(model),
        verbose=verbose,
    )
    return TrainedModel(model, history, teacher, data, suggestion)


def load_seeded_data(config: RunConfig):
    """`load_data` after setting the random seed from `config.data.seed`: a data set's
    seeded shuffling depends on TensorFlow's global seed when it is made.

    Example:

    >>> data = load_seeded_data(load_run_config("examples/configs/expand_90_to_92.yaml"))
    """
    keras.utils.set_random_seed(config.data.seed)
    return load_data(config.data)


def load_data(config: DataConfig):
    """The `ImageData` / `DetectionData` a data section describes."""
    size = config.image_size
    splits = {
        "validation_split": config.validation_split,
        "test_split": config.test_split,
        "seed": config.seed,
    }
    common = {"image_size": size, "batch_size": config.batch_size, **splits}
    if config.source == "image_folder":
        return image_folder(config.path, strict=config.strict, **common)
    if config.source == "manifest":
        return manifest(config.path, class_names=config.classes, strict=config.strict, **common)
    if config.source == "tfds":
        return tfds(config.path, **common)
    if config.source == "shapes":
        names = config.classes or shapes.BASE_CLASSES
        images, labels = shapes.arrays(names, config.images_per_class, image_size=size)
        return arrays(
            images, labels, class_names=list(names), batch_size=config.batch_size, **splits
        )
    if config.source == "coco":
        return coco_detection(config.path, config.images, strict=config.strict, **common)
    if config.source == "voc":
        return voc_detection(
            config.path, config.images, class_names=config.classes, strict=config.strict, **common
        )
    if config.source == "tfds_detection":
        return tfds_detection(config.path, **common)
    held_out = _held_out_count(config)
    return synthetic_detection(
        config.num_images,
        image_size=size,
        classes=config.classes,
        validation_images=held_out,
        test_images=held_out,
        batch_size=config.batch_size,
        seed=config.seed,
    )


def load_or_build_model(config: ModelConfig, data) -> keras.Model:
    """The model a model section describes: loaded, or built for the data's classes."""
    if config.load is not None:
        if config.load == "base":
            from tfx_transfer.app.demo import base_model_path

            return load_model(base_model_path())
        return load_model(config.load)
    weights = config.weights
    input_shape = (config.input_size,) * 2 + (3,) if config.input_size else None
    if config.detector is not None:
        from tfx_transfer.detection import build_detector

        return build_detector(
            config.detector,
            config.backbone,
            data.num_classes,
            bounding_box_format=data.bounding_box_format,
            weights=weights,
            input_shape=input_shape,
            class_names=data.class_names,
        )
    return build_classifier(
        config.backbone,
        len(data.class_names),
        hidden_units=config.hidden_units,
        dropout=config.dropout,
        weights=weights,
        input_shape=input_shape,
        class_names=data.class_names,
    )


def _expand(model: keras.Model, data, config: RunConfig) -> keras.Model:
    old_names = class_info(model).class_names
    new_names = config.expand.new_class_names or tuple(
        name for name in data.class_names if name not in old_names
    )
    if not new_names:
        raise ValueError(
            "expand: the data has no classes the model lacks; name them in expand.new_class_names."
        )
    examples = None
    if config.expand.init == "imprint" and not config.data.detection:
        examples = _examples(data, new_names)
    return expand_classes(
        model,
        new_class_names=list(new_names),
        init=config.expand.init,
        freeze_old=config.expand.freeze_old,
        examples=examples,
    )


def _examples(data, names) -> dict[str, Any]:
    """Up to 16 training images of each named class, for imprinting."""
    import numpy as np

    wanted = {data.class_names.index(name): name for name in names if name in data.class_names}
    missing = [name for name in names if name not in data.class_names]
    if missing:
        raise ValueError(f"expand.init='imprint' needs training images of {missing}.")
    found: dict[str, list] = {name: [] for name in wanted.values()}
    for images, labels in data.train:
        for image, label in zip(np.asarray(images), np.asarray(labels)):
            name = wanted.get(int(label))
            if name is not None and len(found[name]) < 16:
                found[name].append(image)
    return {name: np.stack(images) for name, images in found.items()}


def split_data(data, split):
    """A split in the form `tt.evaluate` expects (detection keeps its DetectionData).

    Example:

    >>> tt.evaluate(model, split_data(data, data.validation))
    """
    if hasattr(data, "bounding_box_format"):
        return dataclasses.replace(data, test=split)
    return split


def _held_out_count(config: DataConfig) -> int:
    fraction = config.validation_split or 0.0
    return max(int(round(config.num_images * fraction)), 1 if fraction else 0)

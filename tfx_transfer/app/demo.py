"""The offline demo: the shipped 90-class base model learns 2 new classes without
forgetting the 90 old ones, on the embedded shapes data.

Example:

>>> base = tt.demo.base_model()
>>> base.get_layer("predictions").kernel.shape
(1024, 90)
>>> report = tt.demo.run_demo("runs/demo")
"""

from __future__ import annotations

import dataclasses
import time
from importlib import resources
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.app.run_dir import RunDirectory
from tfx_transfer.classification.predict import predict_images
from tfx_transfer.core.metadata import class_info
from tfx_transfer.core.saving import load_model
from tfx_transfer.data import shapes
from tfx_transfer.data.classification.image_folder import image_folder
from tfx_transfer.evaluation import evaluate
from tfx_transfer.export import export_saved_model
from tfx_transfer.surgery import expand_classes, merge_frozen
from tfx_transfer.training import fine_tune
from tfx_transfer.training.config import Stage

BASE_MODEL_FILE = "shapes90_mobilenet_v3_small.keras"


def base_model_path() -> Path:
    """Path of the shipped base model (package data)."""
    return Path(str(resources.files("tfx_transfer") / "resources" / BASE_MODEL_FILE))


def base_model() -> keras.Model:
    """The shipped pre-trained model: 90 shape classes, 64x64 RGB input, logits.

    mobilenet_v3_small trained from scratch + Dense(1024) + `predictions`
    (kernel 1024x90); `tt.class_info(model).class_names` are the 90 base classes.
    """
    path = base_model_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"The base model file is missing: {path}. Reinstall the package, or recreate it "
            "with `python scripts/train_base_model.py`."
        )
    return load_model(path)


@dataclasses.dataclass
class DemoSettings:
    """Sizes of the demo run; `tiny()` is for smoke tests."""

    new_per_class: int = 50
    exemplars_per_old_class: int = 5
    test_per_class: int = 50
    epochs: int = 40
    learning_rate: float = 3e-3
    batch_size: int = 32

    @classmethod
    def tiny(cls) -> DemoSettings:
        return cls(new_per_class=6, exemplars_per_old_class=1, test_per_class=2, epochs=1)


def run_demo(
    workdir: str | Path = "runs/demo",
    settings: DemoSettings | None = None,
    export_dir: str | Path = "saved_models/shapes92",
) -> dict:
    """90 -> 92 classes, offline, end to end.

    1. writes the images of the 2 new classes as an image folder (the user's new
       data) and loads it with `tt.data.image_folder`;
    2. expands the base model's 1024x90 kernel to 1024x92 with the old columns
       frozen (`freeze_old=True`);
    3. trains only the new columns (`tt.fine_tune`) on the new images plus a few
       exemplars of each old class (class-balanced);
    4. evaluates old and new classes against the base model on held-out images;
    5. saves the 92-class model (frozen blocks merged) as `.keras` and exports
       the next SavedModel version under `export_dir` for TF Serving;
    6. writes the run directory `workdir`: config.yaml, history.csv,
       report.json / report.md and plots/ (curves, confusion, old/new per class).

    Returns the headline numbers and paths (also under "extra" in report.json).
    """
    settings = settings or DemoSettings()
    workdir = Path(workdir)
    run = RunDirectory(workdir.parent, workdir.name)
    run.write_config({**dataclasses.asdict(settings), "export_dir": str(export_dir)})
    started = time.time()
    keras.utils.set_random_seed(0)
    base = base_model()
    size = base.input_shape[1]

    folder = shapes.write_image_folder(
        workdir / "data" / "new_classes",
        shapes.NOVEL_CLASSES,
        settings.new_per_class,
        image_size=size,
    )
    new_data = image_folder(folder, image_size=size, batch_size=settings.batch_size, seed=0)

    model = expand_classes(base, new_class_names=new_data.class_names, freeze_old=True)
    train = _training_data(model, new_data, settings)
    stage = Stage(
        train="classifier",
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        class_weight="balanced",
    )
    model, history = fine_tune(model, train, stages=[stage], verbose=0)
    trained = time.time()

    names = class_info(model).class_names
    test = shapes.arrays(names, settings.test_per_class, split="test", image_size=size)
    report = evaluate(model, test, reference=base)
    merged = merge_frozen(model)
    model_path = workdir / "shapes92.keras"
    merged.save(model_path)
    export_path = export_saved_model(merged, export_dir)
    sample = sorted((folder / new_data.class_names[0]).iterdir())[0]
    result = {
        "base_model": str(base_model_path()),
        "classes": {"old": len(names) - len(new_data.class_names), "new": new_data.class_names},
        "kernel": list(merged.get_layer("predictions").kernel.shape),
        "test_images_per_class": settings.test_per_class,
        **report.summary(),
        "model": str(model_path),
        "export": str(export_path),
        "example_prediction": {"file": str(sample), "top2": predict_images(merged, [sample], 2)[0]},
        "seconds": round(time.time() - started, 1),
    }
    run.history_csv(history)
    run.plots(history=history, evaluation=report)
    timings = {"fine_tune_s": round(trained - started, 1), "total_s": result["seconds"]}
    result["report"] = str(
        run.write_report(evaluation=report, history=history, timings=timings, extra=result)
    )
    return result


def _training_data(model, new_data, settings) -> tf.data.Dataset:
    """New-class images from the folder plus exemplars of each old class, shuffled."""
    names = class_info(model).class_names
    old_names = names[: len(names) - len(new_data.class_names)]
    old_x, old_y = shapes.arrays(
        old_names, settings.exemplars_per_old_class, split="train", image_size=model.input_shape[1]
    )
    offset = len(old_names)
    new = new_data.train.unbatch().map(lambda x, y: (x, y + offset))
    replay = tf.data.Dataset.from_tensor_slices((old_x.astype(np.float32), old_y))
    total = settings.exemplars_per_old_class * len(old_names) + sum(new_data.class_counts.values())
    return (
        replay.concatenate(new)
        .apply(tf.data.experimental.assert_cardinality(total))
        .shuffle(total, seed=0)
        .batch(settings.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )

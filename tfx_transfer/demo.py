"""The offline demo: the shipped 90-class base model and transfer learning on the
embedded shapes data.

Example:

>>> base = tt.demo.base_model()
>>> base.get_layer("predictions").kernel.shape
(1024, 90)
"""

from __future__ import annotations

import dataclasses
import json
import time
from importlib import resources
from pathlib import Path

import keras
import numpy as np

from tfx_transfer.classifier import build_classifier
from tfx_transfer.data import shapes
from tfx_transfer.data.image_folder import image_folder
from tfx_transfer.metadata import class_info
from tfx_transfer.prediction import predict_images
from tfx_transfer.saving import load_model

BASE_MODEL_FILE = "shapes90_mobilenet_v3_small.keras"
BACKBONE_LAYER = "mobilenet_v3_small"
# The transfer task: the two novel classes and two base classes that share a colour or shape.
TRANSFER_CLASSES = (*shapes.NOVEL_CLASSES, "orange_hexagon", "cyan_star")


def base_model_path() -> Path:
    """Path of the shipped base model (package data)."""
    path = resources.files("tfx_transfer") / "resources" / BASE_MODEL_FILE
    return Path(str(path))


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
    """Sizes of the demo run; `tiny()` is for tests."""

    train_per_class: int = 60
    test_per_class: int = 50
    base_test_per_class: int = 20
    epochs: int = 8
    batch_size: int = 32

    @classmethod
    def tiny(cls) -> DemoSettings:
        return cls(train_per_class=6, test_per_class=4, base_test_per_class=2, epochs=1)


def run_demo(workdir: str | Path = "runs/demo", settings: DemoSettings | None = None) -> dict:
    """Transfer learning on the embedded data, end to end, offline.

    1. evaluates the base model on its 90 classes;
    2. writes a 4-class image folder (the 2 novel classes and 2 look-alike base
       classes) and loads it with `tt.data.image_folder`;
    3. builds a new classifier on the base model's frozen backbone, trains its
       head, evaluates it on held-out images and saves it as `.keras`.

    Returns the report (also written to `workdir/report.json`).
    """
    settings = settings or DemoSettings()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = base_model()
    size = base.input_shape[1]

    base_test = shapes.dataset(
        shapes.BASE_CLASSES,
        settings.base_test_per_class,
        split="test",
        image_size=size,
        batch_size=128,
    )
    base_accuracy = _accuracy(base, base_test)

    data_dir = shapes.write_image_folder(
        workdir / "data" / "train", TRANSFER_CLASSES, settings.train_per_class, image_size=size
    )
    data = image_folder(
        data_dir, image_size=size, batch_size=settings.batch_size, validation_split=0.2, seed=0
    )

    model = build_classifier(
        base.get_layer(BACKBONE_LAYER), len(data.class_names), class_names=data.class_names
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        data.train, validation_data=data.validation, epochs=settings.epochs, verbose=2
    )

    test = shapes.dataset(
        data.class_names, settings.test_per_class, split="test", image_size=size, batch_size=128
    )
    transfer_accuracy = _accuracy(model, test)
    model_path = workdir / "shapes4_transfer.keras"
    model.save(model_path)
    sample = next(iter(sorted((data_dir / data.class_names[0]).iterdir())))
    report = {
        "base_model": str(base_model_path()),
        "base_classes": class_info(base).num_classes,
        "base_test_accuracy": base_accuracy,
        "transfer_classes": list(data.class_names),
        "train_images": sum(data.class_counts.values()),
        "transfer_test_accuracy": transfer_accuracy,
        "final_train_accuracy": float(history.history["accuracy"][-1]),
        "model": str(model_path),
        "example_prediction": {"file": str(sample), "top2": predict_images(model, [sample], 2)[0]},
        "seconds": round(time.time() - started, 1),
    }
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _accuracy(model: keras.Model, data) -> float:
    correct = total = 0
    for images, labels in data:
        predicted = np.argmax(model.predict_on_batch(images), axis=-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += int(labels.shape[0])
    return correct / total

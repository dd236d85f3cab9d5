"""Class expansion on the shipped base model and the embedded data."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_bit_exact_old

import tfx_transfer as tt
from tfx_transfer.data import shapes


@pytest.fixture(scope="module")
def base():
    return tt.demo.base_model()


def new_class_accuracy(model, per_class=50):
    images, labels = shapes.arrays(shapes.NOVEL_CLASSES, per_class, split="test")
    predicted = model.predict(images.astype("float32"), verbose=0).argmax(axis=1)
    return float(np.mean(predicted == labels + len(shapes.BASE_CLASSES)))


def test_base_model_grows_from_1024x90_to_1024x92_bit_exactly(base):
    expanded = tt.expand_classes(base, new_class_names=shapes.NOVEL_CLASSES)
    assert expanded.get_layer("predictions").kernel.shape == (1024, 92)
    images, _ = shapes.arrays(shapes.BASE_CLASSES[:10], 3, split="test")
    assert_bit_exact_old(base, expanded, images.astype("float32"))
    assert tt.class_info(expanded).class_names == shapes.ALL_ORDERED


def test_imprinting_five_examples_recognises_new_classes_without_training(base):
    images, labels = shapes.arrays(shapes.NOVEL_CLASSES, 5, split="train")
    examples = {name: images[labels == i] for i, name in enumerate(shapes.NOVEL_CLASSES)}
    imprinted = tt.expand_classes(
        base, new_class_names=shapes.NOVEL_CLASSES, init="imprint", examples=examples
    )
    mean = tt.expand_classes(base, new_class_names=shapes.NOVEL_CLASSES, init="mean")
    imprint_accuracy, mean_accuracy = new_class_accuracy(imprinted), new_class_accuracy(mean)
    print(f"new-class accuracy: imprint {imprint_accuracy:.3f}, mean {mean_accuracy:.3f}")
    assert imprint_accuracy >= 0.6
    assert imprint_accuracy >= mean_accuracy + 0.2


@pytest.mark.slow
def test_expansion_example_runs_with_tiny_settings():
    script = Path(__file__).resolve().parents[1] / "examples" / "expand_90_to_92.py"
    result = subprocess.run(
        [sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| (a)")]
    assert len(rows) == 1
    old_accuracy, new_accuracy = (float(cell) for cell in rows[0].split("|")[2:4])
    assert 0.0 <= old_accuracy <= 1.0 and 0.0 <= new_accuracy <= 1.0

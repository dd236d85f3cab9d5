import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.core.metadata import ClassMetadata, TransferModel


def fixed_model(kernel, names, history=()):
    """A model whose logits are inputs @ kernel (inputs are one-hot rows)."""
    inputs = keras.Input((kernel.shape[0],))
    layer = keras.layers.Dense(kernel.shape[1], use_bias=False, name="predictions")
    outputs = layer(inputs)
    layer.set_weights([kernel.astype("float32")])
    return TransferModel(
        inputs, outputs, class_metadata=ClassMetadata(tuple(names), history=history)
    )


def test_accuracy_per_class_confusion_and_old_vs_new():
    # 4 samples: identity kernel predicts the argmax of the one-hot input.
    x = np.eye(3, dtype="float32")[[0, 1, 2, 2]]
    y = np.array([0, 1, 2, 0])  # the last sample is wrong (predicted 2)
    history = ({"operation": "expand_classes", "old_classes": 2, "added": ["c"]},)
    model = fixed_model(np.eye(3), ["a", "b", "c"], history)
    reference = fixed_model(np.eye(3)[:, :2], ["a", "b"])  # predicts sample 3 as class 0
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)

    report = tt.evaluate(model, data, reference=reference)
    assert report.num_images == 4
    assert report.top1 == pytest.approx(0.75)
    assert report.top5 == 1.0
    assert report.confusion == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert report.per_class["c"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert report.per_class["a"]["recall"] == 0.5
    assert report.old_classes == 2
    assert report.old_accuracy == pytest.approx(2 / 3)
    assert report.new_accuracy == 1.0
    assert report.reference_old_accuracy == 1.0
    assert report.old_accuracy_change == pytest.approx(-1 / 3)
    assert json.loads(report.to_json())["old_accuracy"] == pytest.approx(2 / 3)
    assert "old_accuracy_change" in str(report) and "-0.3333" in str(report)
    # arrays work as well as tf.data
    assert tt.evaluate(model, (x, y), reference=reference).to_dict() == report.to_dict()


def test_old_classes_by_name_and_errors():
    model = fixed_model(np.eye(3), ["a", "b", "c"])
    x, y = np.eye(3, dtype="float32"), np.array([0, 1, 2])
    assert tt.evaluate(model, (x, y)).old_accuracy is None
    assert tt.evaluate(model, (x, y), old_classes=["a"]).old_classes == 1
    with pytest.raises(ValueError, match="must be the first class names, in order"):
        tt.evaluate(model, (x, y), old_classes=["b"])
    with pytest.raises(ValueError, match=r"index the model's 3 classes; found labels \[5\]"):
        tt.evaluate(model, (x, np.array([0, 1, 5])))

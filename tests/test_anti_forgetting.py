import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import conv_classifier, random_images

import tfx_transfer as tt
from tfx_transfer.data import shapes
from tfx_transfer.surgery import locate_classifier
from tfx_transfer.training import DistillationLoss, Stage


def test_distillation_loss_closed_form():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(4, 5)).astype("float32")
    teacher = rng.normal(size=(4, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[[0, 4, 2, 3]]
    loss = DistillationLoss(3, temperature=2.0, weight=0.5, reduction=None)
    got = loss(np.concatenate([labels, teacher], axis=1), student).numpy()

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    cross_entropy = -(labels * log_softmax(student)).sum(axis=1)
    target = np.exp(log_softmax(teacher / 2))
    kl = (target * (log_softmax(teacher / 2) - log_softmax(student[:, :3] / 2))).sum(axis=1)
    np.testing.assert_allclose(got, cross_entropy + 0.5 * 4 * kl, rtol=1e-5)


def test_weight_aligning_equalises_mean_norms():
    model = tt.expand_classes(conv_classifier(4), 2)
    kernel, bias = locate_classifier(model).kernel_and_bias()
    kernel[:, 4:] *= 7.0
    bias[4:] = 1.0
    locate_classifier(model).assign(kernel, bias)
    factor = tt.training.align_weights(model, 4)
    kernel, bias = locate_classifier(model).kernel_and_bias()
    norms = np.linalg.norm(kernel, axis=0)
    assert norms[4:].mean() == pytest.approx(norms[:4].mean(), rel=1e-5)
    np.testing.assert_allclose(bias[4:], factor, rtol=1e-6)
    with pytest.raises(ValueError, match="num_old_classes must be between 1 and 5"):
        tt.training.align_weights(model, 6)


def test_focal_loss_head_l2_and_plateau_stage():
    model = conv_classifier(3)
    data = tf.data.Dataset.from_tensor_slices((random_images(16), np.arange(16) % 3)).batch(8)
    stage = Stage(epochs=2, loss="focal", head_l2=1e-2, reduce_on_plateau_patience=1)
    model, history = tt.fine_tune(model, data, data, stages=[stage], verbose=0)
    assert isinstance(model.loss, keras.losses.CategoricalFocalCrossentropy)
    assert len(model.losses) == 2  # the L2 penalties of the two head kernels
    assert np.isfinite(history["stage1_val_loss"]).all()
    with pytest.raises(ValueError, match="needs schedule='constant'"):
        Stage(reduce_on_plateau_patience=1, schedule="one_cycle")
    with pytest.raises(ValueError, match="needs fine_tune\\(..., teacher=\\)"):
        tt.fine_tune(model, data, stages=[Stage(distillation_weight=1.0)], verbose=0)


@pytest.mark.slow
def test_distillation_reduces_forgetting_on_the_embedded_data():
    base = tt.demo.base_model()
    old_x, old_y = shapes.arrays(shapes.BASE_CLASSES, 5, split="train")
    new_x, new_y = shapes.arrays(shapes.NOVEL_CLASSES, 50, split="train")
    x = np.concatenate([old_x, new_x]).astype("float32")
    y = np.concatenate([old_y, new_y + 90])
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=0).batch(32)
    test = shapes.arrays(shapes.ALL_ORDERED, 20, split="test")
    changes = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(0)
        model = tt.expand_classes(base, new_class_names=shapes.NOVEL_CLASSES)
        stage = Stage(train="all", epochs=5, class_weight="balanced", distillation_weight=weight)
        model, _ = tt.fine_tune(model, train, stages=[stage], teacher=base, verbose=0)
        changes[weight] = tt.evaluate(model, test, reference=base).old_accuracy_change
    print(f"change on old classes: plain {changes[0.0]:+.3f}, distillation {changes[5.0]:+.3f}")
    assert changes[0.0] < 0  # plain fine-tuning of everything forgets
    assert changes[5.0] > changes[0.0]  # measured here: -0.042 vs -0.058


def test_a_model_compiled_for_distillation_loads_in_safe_mode(tmp_path):
    from tfx_transfer.training.anti_forgetting import label_accuracy

    model = conv_classifier(3)
    model.compile(
        optimizer="adam",
        loss=DistillationLoss(num_old_classes=2),
        metrics=[keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")],
    )
    targets = np.concatenate([np.eye(3)[[0, 1]], np.zeros((2, 2))], axis=1).astype("float32")
    model.fit(random_images(2), targets, epochs=1, verbose=0)
    model.save(tmp_path / "checkpoint.keras")
    loaded = tt.load_model(tmp_path / "checkpoint.keras")
    assert loaded.evaluate(random_images(2), targets, verbose=0, return_dict=True).keys() >= {
        "accuracy",
        "loss",
    }

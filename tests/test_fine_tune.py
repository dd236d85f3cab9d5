import numpy as np
import pytest
from helpers import random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.training import Stage


@pytest.fixture
def data():
    images, labels = random_images(24), np.arange(24) % 3
    return tt.data.arrays(
        images, labels, class_names=["a", "b", "c"], batch_size=8, validation_split=0.25, seed=0
    )


def weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


def changed(before, layer):
    return [not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.weights)]


def test_two_stages_train_what_they_say_and_prefix_the_history(data):
    model = tiny_classifier(3, class_names=["a", "b", "c"])
    backbone = model.get_layer("mobilenet_v3_small")
    top, early = backbone.get_layer("conv_1"), backbone.get_layer("expanded_conv_10_project")
    bn = backbone.get_layer("conv_1_bn")
    top_before, early_before, bn_before = weights_of(top), weights_of(early), weights_of(bn)
    stages = [
        Stage(train="head", epochs=1, learning_rate=1e-2),
        Stage(
            train="top_blocks", top_blocks=1, epochs=2, learning_rate=1e-2, schedule="warmup_cosine"
        ),
    ]
    _, history = tt.fine_tune(model, data, stages=stages[:1], verbose=0)
    assert not any(changed(top_before, top))  # the backbone stayed frozen in stage 1
    model, history = tt.fine_tune(model, data, stages=stages, verbose=0)
    assert set(history) >= {"stage1_loss", "stage1_val_loss", "stage2_loss", "stage2_val_accuracy"}
    assert len(history["stage1_loss"]) == 1 and len(history["stage2_loss"]) == 2
    assert all(changed(top_before, top))  # the top block trained in stage 2
    assert not any(changed(early_before, early))  # earlier blocks did not
    assert not any(changed(bn_before, bn))  # BatchNorm stayed frozen


def test_builder_label_smoothing_class_weight_and_sgd(data):
    built = []

    def builder():
        built.append(tiny_classifier(3))
        return built[-1]

    stage = Stage(
        epochs=1,
        label_smoothing=0.1,
        class_weight="balanced",
        optimizer="sgd",
        schedule="one_cycle",
    )
    model, history = tt.fine_tune(builder, data.train, data.validation, stages=[stage], verbose=0)
    assert model is built[0]
    assert np.isfinite(history["stage1_loss"][0]) and np.isfinite(history["stage1_val_loss"][0])
    assert model.loss.label_smoothing == 0.1


def test_default_stages_and_bad_stage_arguments():
    first, second = tt.training.default_stages()
    assert (first.train, first.learning_rate) == ("head", 1e-3)
    assert (second.train, second.top_blocks, second.schedule) == ("top_blocks", 2, "warmup_cosine")
    with pytest.raises(ValueError, match="Stage train='body' is not one of"):
        Stage(train="body")
    with pytest.raises(ValueError, match="class_weight must be None or 'balanced'"):
        Stage(class_weight="inverse")
    with pytest.raises(ValueError, match="epochs >= 1"):
        Stage(epochs=0)
    with pytest.raises(ValueError, match="global_clipnorm must be > 0; got 0"):
        Stage(global_clipnorm=0)


def test_global_clipnorm_bounds_the_first_update(data):
    """SGD's first step moves the weights by learning_rate x the clipped gradient."""
    model = tiny_classifier(3, class_names=["a", "b", "c"])
    before = [w.numpy().copy() for w in model.trainable_weights]
    stage = Stage(optimizer="sgd", learning_rate=1.0, global_clipnorm=1e-3)
    model, _ = tt.fine_tune(model, data.train.take(1), stages=[stage], verbose=0)
    assert model.optimizer.global_clipnorm == 1e-3
    step = np.sqrt(
        sum(np.sum((w.numpy() - b) ** 2) for w, b in zip(model.trainable_weights, before))
    )
    np.testing.assert_allclose(step, 1e-3, rtol=1e-3)

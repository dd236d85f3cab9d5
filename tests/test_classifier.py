import keras
import numpy as np
import pytest
from helpers import TINY, random_images, tiny_classifier

import tfx_transfer as tt


@pytest.mark.parametrize("num_classes", [1, 90, 92])
def test_predictions_kernel_is_hidden_by_classes(num_classes):
    model = tt.build_classifier("mobilenet_v3_small", num_classes, weights=None, input_shape=TINY)
    predictions = model.get_layer("predictions")
    assert predictions.kernel.shape == (1024, num_classes)
    assert predictions.bias.shape == (num_classes,)
    assert model.output_shape == (None, num_classes)
    assert model.layers[-1] is predictions  # logits by default


def test_head_layers_have_stable_names():
    model = tt.build_classifier(
        "resnet50", 3, weights=None, input_shape=TINY, hidden_units=(64, 32), dropout=0.5
    )
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["images", "resnet50"]
    assert names[2:] == ["head_pool", "head_dropout", "head_dense_1", "head_dense_2", "predictions"]
    assert model.get_layer("predictions").kernel.shape == (32, 3)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_activation_is_a_separate_layer_after_the_logits(activation):
    model = tiny_classifier(4, activation=activation)
    predictions = model.get_layer("predictions")
    assert predictions.activation is keras.activations.linear
    assert model.layers[-1].name == "probabilities"
    assert isinstance(model.layers[-1], keras.layers.Activation)
    images = random_images(3)
    logits = keras.Model(model.input, predictions.output).predict(images, verbose=0)
    expected = keras.ops.softmax(logits) if activation == "softmax" else keras.ops.sigmoid(logits)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    meta = tt.class_info(model)
    assert meta.activation == activation and meta.multi_label == (activation == "sigmoid")


def test_backbone_is_frozen_and_in_inference_mode():
    model = tiny_classifier(3)
    backbone = model.get_layer("mobilenet_v3_small")
    assert not backbone.trainable
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"head_dense_1", "predictions"}


def test_unfrozen_backbone_keeps_batchnorm_in_inference_mode():
    model = tiny_classifier(3, dropout=0.0, freeze_backbone=False)
    backbone = model.get_layer("mobilenet_v3_small")
    batchnorms = [x for x in backbone.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert batchnorms and not any(x.trainable for x in batchnorms)
    assert backbone.get_layer("conv").trainable
    # fit's training=True does not switch BatchNorm to batch statistics (dropout off here).
    images = random_images(4)
    np.testing.assert_allclose(
        model(images, training=True).numpy(), model(images, training=False).numpy(), atol=1e-5
    )


def test_fit_one_step_changes_only_the_head():
    model = tiny_classifier(3)
    backbone_before = [w.numpy().copy() for w in model.get_layer("mobilenet_v3_small").weights]
    head_before = model.get_layer("predictions").kernel.numpy().copy()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(random_images(8), np.arange(8) % 3, epochs=1, batch_size=8, verbose=0)
    for before, after in zip(backbone_before, model.get_layer("mobilenet_v3_small").weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert not np.array_equal(head_before, model.get_layer("predictions").kernel.numpy())


def test_class_names_travel_with_the_model():
    model = tiny_classifier(3, class_names=["cat", "dog", "fox"])
    assert tt.class_info(model).class_names == ("cat", "dog", "fox")
    with pytest.raises(ValueError, match="Got 2 class_names for num_classes=3"):
        tiny_classifier(3, class_names=["cat", "dog"])
    with pytest.raises(ValueError, match="unique; duplicated: \\['cat'\\]"):
        tiny_classifier(2, class_names=["cat", "cat"])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        tiny_classifier(bad)


def test_existing_model_as_backbone_needs_its_preprocessing():
    own = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=TINY)
    with pytest.raises(ValueError, match="preprocessing= one of"):
        tt.build_classifier(own, 3)
    model = tt.build_classifier(own, 3, preprocessing="tf")
    assert model.get_layer("preprocessing").mode == "tf"
    images = random_images(2)
    expected_features = own.predict(images / 127.5 - 1.0, verbose=0).mean(axis=(1, 2))
    features = keras.Model(model.input, model.get_layer("head_pool").output).predict(
        images, verbose=0
    )
    np.testing.assert_allclose(features, expected_features, atol=1e-5)


def test_backbone_from_build_backbone_keeps_its_own_preprocessing():
    backbone = tt.build_backbone("resnet50", weights=None, input_shape=TINY)
    model = tt.build_classifier(backbone, 2)
    assert "preprocessing" not in [layer.name for layer in model.layers]
    with pytest.raises(ValueError, match="comes from the registry"):
        tt.build_classifier("resnet50", 2, weights=None, input_shape=TINY, preprocessing="tf")


def test_headed_model_is_rejected_as_backbone():
    headed = keras.applications.MobileNetV2(weights=None, input_shape=TINY, classes=3)
    with pytest.raises(ValueError, match="one 4D feature-map output"):
        tt.build_classifier(headed, 3, preprocessing="tf")


def test_train_batchnorm_lets_batchnorm_follow_the_training_flag():
    model = tiny_classifier(3, dropout=0.0, freeze_backbone=False, train_batchnorm=True)
    images = random_images(4)
    assert not np.allclose(
        model(images, training=True).numpy(), model(images, training=False).numpy()
    )

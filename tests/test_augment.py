import keras
import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.data import shapes

AUGMENTATIONS = {
    "flip": 1.0,
    "rotation": 0.1,
    "translation": 0.2,
    "zoom": 0.2,
    "contrast": 0.5,
    "brightness": 0.3,
    "randaugment": 0.5,
}


@pytest.fixture(scope="module")
def batch():
    images, labels = shapes.arrays(shapes.BASE_CLASSES[:4], 2, split="test", image_size=32)
    return images.astype("float32"), labels


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_changes_training_batches_only(batch, name):
    images, labels = batch
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    augmented = tt.data.augment(data, {name: AUGMENTATIONS[name]}, seed=1)
    x, y = next(iter(augmented))
    assert x.shape == images.shape and x.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255.0 + 1e-3
    assert not np.allclose(x.numpy(), images)
    np.testing.assert_array_equal(y.numpy(), labels)
    # as model layers: inactive at inference, so evaluation and export see the images as they are
    layers = tt.data.augmentation_layers({name: AUGMENTATIONS[name]}, seed=1)
    np.testing.assert_array_equal(layers(images, training=False).numpy(), images)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_augmentations_mix_images_and_one_hot_labels(batch, name):
    images, labels = batch
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    x, y = next(iter(tt.data.augment(data, {name: 1.0}, num_classes=4, seed=3)))
    assert x.shape == images.shape and y.shape == (8, 4)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(x.numpy(), images)
    assert (y.numpy().max(axis=1) < 1.0).any()  # some labels are mixtures
    with pytest.raises(ValueError, match="pass num_classes="):
        tt.data.augment(data, {name: 1.0})


def test_augmentation_layers_inside_a_model_are_off_at_inference(batch):
    images, _ = batch
    inputs = keras.Input((32, 32, 3))
    x = tt.data.augmentation_layers({"flip": 1, "rotation": 0.2}, seed=0)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    np.testing.assert_allclose(
        model.predict(images, verbose=0), images.mean(axis=(1, 2)), rtol=1e-5
    )
    assert not np.allclose(model(images, training=True).numpy(), images.mean(axis=(1, 2)))


def test_unknown_augmentation_and_negative_strength_are_errors():
    with pytest.raises(ValueError, match=r"Unknown augmentations \['blur'\]"):
        tt.data.augmentation_layers({"blur": 1})
    with pytest.raises(ValueError, match="strength must be >= 0; got zoom=-0.1"):
        tt.data.augmentation_layers({"zoom": -0.1})

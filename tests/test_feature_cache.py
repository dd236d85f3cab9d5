import keras
import numpy as np
import tensorflow as tf
from helpers import random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.training import Stage
from tfx_transfer.training.feature_cache import cache_features, split_at_backbone


def build():
    keras.utils.set_random_seed(7)
    model = tiny_classifier(3, dropout=0.0, hidden_units=(16,))
    # a backbone with informative features: the random init gives near-zero ones
    model.get_layer("head_dense_1").kernel.assign(
        np.random.default_rng(0).normal(0, 1e3, model.get_layer("head_dense_1").kernel.shape)
    )
    return model


def compile_(model):
    model.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )


def test_cached_head_training_matches_uncached():
    data = tf.data.Dataset.from_tensor_slices((random_images(24), np.arange(24) % 3)).batch(8)
    uncached = build()
    compile_(uncached)
    uncached.fit(data, epochs=3, verbose=0)

    cached = build()
    extractor, head = split_at_backbone(cached)
    assert [layer.name for layer in head.layers[1:]] == ["head_pool", "head_dense_1", "predictions"]
    compile_(head)
    head.fit(cache_features(extractor, data), epochs=3, verbose=0)
    for name in ("head_dense_1", "predictions"):
        for a, b in zip(uncached.get_layer(name).weights, cached.get_layer(name).weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    images = random_images(4, seed=9)
    np.testing.assert_allclose(
        uncached.predict(images, verbose=0), cached.predict(images, verbose=0), atol=1e-5
    )


def test_fine_tune_stage_with_cached_features_trains_the_head_only():
    model = build()
    data = tt.data.arrays(random_images(24), np.arange(24) % 3, batch_size=8, validation_split=0.25)
    backbone_before = [w.numpy().copy() for w in model.get_layer("mobilenet_v3_small").weights]
    head_before = model.get_layer("predictions").kernel.numpy().copy()
    model, history = tt.fine_tune(
        model, data, stages=[Stage(epochs=2, cache_features=True)], verbose=0
    )
    assert len(history["stage1_loss"]) == 2 and "stage1_val_loss" in history
    for before, after in zip(backbone_before, model.get_layer("mobilenet_v3_small").weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert not np.array_equal(head_before, model.get_layer("predictions").kernel.numpy())


def test_the_caching_progress_bar_follows_fine_tune_verbose(capsys):
    data = tf.data.Dataset.from_tensor_slices((random_images(16), np.arange(16) % 3)).batch(8)
    for verbose, shown in ((0, False), (2, True)):
        stages = [Stage(epochs=1, cache_features=True)]
        tt.fine_tune(build(), data, stages=stages, verbose=verbose)
        assert ("caching features" in capsys.readouterr().err) is shown

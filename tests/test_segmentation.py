"""build_segmenter (KerasCV DeepLabV3+), its class expansion and its SavedModel export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.surgery import locate_classifier

SHAPE = (64, 64, 3)
NAMES = ["background", "circle", "square"]


def images(count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, *SHAPE)).astype("float32")


def masks(count=2, classes=3, seed=1):
    result = np.random.default_rng(seed).integers(0, classes, (count, *SHAPE[:2])).astype("int32")
    result[:, :4] = 255  # an ignored band
    return result


def logits(model, x):
    """The output of the `segmentation_logits` conv (before the softmax)."""
    features = keras.Model(model.input, model.layers[-2].output)(x)
    for layer in model.segmentation_head.layers[:-1]:
        features = layer(features, training=False)
    return keras.ops.convert_to_numpy(features)


def compile_and_fit(model, y, x=None):
    # Adam with weight decay moves every trainable weight: gradient masking alone would not do.
    model.compile(
        optimizer=keras.optimizers.Adam(0.01, weight_decay=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=255),
    )
    return model.fit(images() if x is None else x, y, epochs=1, verbose=0)


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(0)
    model = tt.build_segmenter(
        "deeplab_v3_plus",
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=SHAPE,
        class_names=NAMES,
    )
    head = locate_classifier(model).layer
    head.bias.assign(np.array([0.3, -0.2, 0.1], "float32"))  # distinct biases to compare
    return model


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "resnet50"])
def test_builds_and_fits_one_step_with_sparse_masks_and_an_ignore_index(backbone):
    model = tt.build_segmenter("deeplab_v3_plus", backbone, 3, weights=None, input_shape=SHAPE)
    assert model.output_shape == (None, 64, 64, 3)
    backbone_model = tt.training.find_backbone(model)
    assert backbone_model.name == backbone
    trained = {id(w) for w in model.trainable_weights}
    assert not trained & {id(w) for w in backbone_model.weights}
    frozen = [keras.ops.convert_to_numpy(w).copy() for w in backbone_model.weights]
    history = compile_and_fit(model, masks())
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(frozen, backbone_model.weights):
        np.testing.assert_array_equal(before, keras.ops.convert_to_numpy(after))
    probabilities = model.predict(images(1), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    info = tt.class_info(model)
    assert info.class_names == ("class_0", "class_1", "class_2") and info.activation == "softmax"


def test_backbones_whose_levels_do_not_align_and_unknown_archs_are_refused_by_name():
    with pytest.raises(ValueError, match="'xception' cannot be used by a segmenter.*resnet50"):
        tt.build_segmenter("deeplab_v3_plus", "xception", 3, weights=None)
    with pytest.raises(ValueError, match="Unknown segmenter arch 'unet'"):
        tt.build_segmenter("unet", "resnet50", 3, weights=None)
    with pytest.raises(ValueError, match="multiples of 32"):
        tt.build_segmenter("deeplab_v3_plus", "resnet50", 3, weights=None, input_shape=(50, 64, 3))


def test_expansion_keeps_old_logits_bit_exact_and_freeze_old_keeps_them_through_fit(base):
    x = images()
    before = logits(base, x)
    located = locate_classifier(base)
    assert located.layout == "per_pixel" and located.layer.name == "segmentation_logits"
    expanded = tt.expand_classes(base, new_class_names=["kite", "drone"], freeze_old=True)
    assert expanded.output_shape == (None, 64, 64, 5)
    assert tt.class_info(expanded).class_names == (*NAMES, "kite", "drone")
    assert np.array_equal(logits(expanded, x)[..., :3], before)
    assert [r.classes for r in expanded.frozen_channels] == [(0, 1, 2)]

    kernel = keras.ops.convert_to_numpy(locate_classifier(expanded).layer.kernel).copy()
    compile_and_fit(expanded, masks(classes=5))
    now = keras.ops.convert_to_numpy(locate_classifier(expanded).layer.kernel)
    np.testing.assert_array_equal(now[..., :3], kernel[..., :3])
    assert not np.array_equal(now[..., 3:], kernel[..., 3:])


def test_restore_route_copies_the_old_slices_back(base):
    expanded = tt.expand_classes(base, new_class_names=["kite"])
    compile_and_fit(expanded, masks(classes=4))
    old_kernel, old_bias = locate_classifier(base).kernel_and_bias()
    moved, _ = locate_classifier(expanded).kernel_and_bias()
    assert not np.array_equal(moved[..., :3], old_kernel)
    tt.restore_old_classes(expanded, base)
    kernel, bias = locate_classifier(expanded).kernel_and_bias()
    np.testing.assert_array_equal(kernel[..., :3], old_kernel)
    np.testing.assert_array_equal(bias[:3], old_bias)


def test_save_load_and_export_round_trip(tmp_path, base):
    expanded = tt.expand_classes(base, new_class_names=["kite"], freeze_old=True)
    x = images()
    expected = expanded.predict(x, verbose=0)
    expanded.save(tmp_path / "segmenter.keras")
    loaded = tt.load_model(tmp_path / "segmenter.keras")
    assert tt.class_info(loaded).class_names == (*NAMES, "kite")
    assert [r.classes for r in loaded.frozen_channels] == [(0, 1, 2)]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)

    path = tt.export_saved_model(loaded, tmp_path / "export", version=1)
    exported = tf.saved_model.load(str(path))
    outputs = exported.signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["class_ids"].numpy(), expected.argmax(axis=-1))
    png = tf.io.encode_png(x[0].astype("uint8"))
    from_bytes = exported.signatures["serving_bytes"](image_bytes=tf.stack([png]))
    assert from_bytes["class_ids"].shape == (1, 64, 64)
    assert (path / "assets" / "labels.txt").read_text().split() == [*NAMES, "kite"]


def test_evaluate_reports_iou_of_old_and_new_classes_against_the_reference(base):
    expanded = tt.expand_classes(base, new_class_names=["kite"], freeze_old=True)
    x, y = images(2), masks(classes=4)
    report = tt.evaluate(expanded, (x, y), reference=base)
    assert isinstance(report, tt.SegmentationReport)
    assert report.old_classes == 3 and report.class_names == [*NAMES, "kite"]
    assert report.num_pixels == int((y != 255).sum())
    assert report.old_mean_iou is not None and report.reference_old_mean_iou is not None
    assert report.old_mean_iou_change == pytest.approx(
        report.old_mean_iou - report.reference_old_mean_iou
    )
    assert "mean_iou" in str(report)

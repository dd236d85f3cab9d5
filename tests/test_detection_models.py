"""build_detector (KerasCV RetinaNet / YOLOv8) and class expansion of detectors."""

import math

import keras
import keras_cv
import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.detection import (
    TransferRetinaNet,
    TransferYOLOV8Detector,
    aligned_backbones,
    build_detector,
)
from tfx_transfer.surgery import locate_classifier

SIZE = 64
SHAPE = (SIZE, SIZE, 3)
# Anchors at 64 px: RetinaNet 9 per position on P3..P7 (8x8, 4x4, 2x2, 1x1, 1x1);
# YOLOv8 one per position on P3..P5.
ANCHORS = {"retinanet": 9 * (64 + 16 + 4 + 1 + 1), "yolov8": 64 + 16 + 4}
# Tracing a detector's train step takes 7 s (RetinaNet) to 16 s (YOLOv8) on 2 cores, one eager
# step 1-2 s: tests run eagerly except where the compiled graph is the point. (YOLOv8's compiled
# train step is traced and trained in test_detection_overfit.py.)
GRAPH_AND_EAGER = [("retinanet", False), ("yolov8", True)]
CLASS_OUTPUT = {"retinanet": "classification", "yolov8": "classes"}
BOX_OUTPUT = {"retinanet": "box", "yolov8": "boxes"}


def detector(arch, num_classes=3, **kwargs):
    options = {"weights": None, "input_shape": SHAPE}
    options.update(kwargs)
    return build_detector(arch, "mobilenet_v3_small", num_classes, **options)


def images(count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, *SHAPE)).astype("float32")


def batch(first, second):
    """Two images with up to two boxes each, given by their classes; padded with -1."""
    places = [[[4, 4, 20, 20], [30, 28, 24, 30]], [[10, 10, 30, 30], [36, 6, 20, 40]]]
    boxes = np.full((2, 2, 4), -1, "float32")
    labels = np.full((2, 2), -1, "float32")
    for image, classes in enumerate((first, second)):
        boxes[image, : len(classes)] = np.reshape(places[image][: len(classes)], (-1, 4))
        labels[image, : len(classes)] = classes
    return {"images": images(2), "bounding_boxes": {"boxes": boxes, "classes": labels}}


def ragged(data):
    """The same batch as a tf.data batch with ragged boxes (no -1 padding)."""
    keep = data["bounding_boxes"]["classes"] >= 0
    boxes = tf.ragged.boolean_mask(tf.constant(data["bounding_boxes"]["boxes"]), keep)
    classes = tf.ragged.boolean_mask(tf.constant(data["bounding_boxes"]["classes"]), keep)
    element = {"images": data["images"], "bounding_boxes": {"boxes": boxes, "classes": classes}}
    return tf.data.Dataset.from_tensors(element)


def randomise_class_biases(model, seed=1):
    """Distinct class biases, so that equality checks compare something."""
    for layer in locate_classifier(model).layers:
        noise = np.random.default_rng(seed).normal(0, 1, layer.bias.shape).astype("float32")
        layer.bias.assign(noise)


def values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def backbone_weights(model):
    return values(tt.training.find_backbone(model).weights)


@pytest.fixture(scope="module")
def old_detector():
    """old_detector(arch, num_classes=3): a detector with distinct class biases (classes cat,
    dog, owl when 3), built once per module. The tests expand it and restore from it, which
    never changes it (test_retinanet_expansion_inserts_new_classes_after_each_anchor_block
    checks that), so sharing it is safe."""
    built = {}

    def get(arch, num_classes=3):
        if (arch, num_classes) not in built:
            names = ["cat", "dog", "owl"] if num_classes == 3 else None
            keras.utils.set_random_seed(0)
            model = detector(arch, num_classes, class_names=names)
            randomise_class_biases(model)
            built[arch, num_classes] = model
        return built[arch, num_classes]

    return get


# --- building and training -------------------------------------------------------------------


@pytest.mark.parametrize("arch, eager", GRAPH_AND_EAGER)
def test_detector_builds_and_fits_one_step_with_frozen_backbone_and_an_empty_image(arch, eager):
    model = detector(arch, class_names=["cat", "dog", "owl"])
    assert isinstance(
        model, {"retinanet": TransferRetinaNet, "yolov8": TransferYOLOV8Detector}[arch]
    )
    info = tt.class_info(model)
    assert info.class_names == ("cat", "dog", "owl") and info.multi_label
    assert info.activation == {"retinanet": None, "yolov8": "sigmoid"}[arch]
    outputs = model(images(), training=False)
    assert tuple(outputs[CLASS_OUTPUT[arch]].shape) == (2, ANCHORS[arch], 3)
    assert tuple(outputs[BOX_OUTPUT[arch]].shape)[:2] == (2, ANCHORS[arch])
    backbone = tt.training.find_backbone(model)
    assert backbone.name == "mobilenet_v3_small"
    assert not backbone.trainable_weights  # frozen, BatchNorm included
    frozen, head = backbone_weights(model), values(locate_classifier(model).layer.weights)

    model.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=eager)
    # keras-cv #845: an image without boxes (all -1 padding) must not make the loss NaN.
    data = batch([0, 2], [])
    history = model.fit(data if arch == "retinanet" else ragged(data), epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    empty = model.fit(batch([], []), epochs=1, verbose=0).history["loss"][0]
    assert math.isfinite(empty)  # (RetinaNet: 0.0, KerasCV zeroes a batch without boxes)
    for before, after in zip(frozen, backbone_weights(model)):
        np.testing.assert_array_equal(before, after)  # BatchNorm statistics too
    after_head = values(locate_classifier(model).layer.weights)
    assert any(not np.array_equal(a, b) for a, b in zip(head, after_head))


@pytest.mark.parametrize(
    "arch, make_backbone",
    [
        (
            "yolov8",
            lambda: keras_cv.models.YOLOV8Backbone(
                stackwise_channels=[8, 16, 32, 32],
                stackwise_depth=[1, 1, 1, 1],
                include_rescaling=True,
                input_shape=SHAPE,
            ),
        ),
        (
            "retinanet",
            lambda: keras_cv.models.ResNetBackbone(
                stackwise_filters=[8, 16, 16, 32],
                stackwise_blocks=[1, 1, 1, 1],
                stackwise_strides=[1, 2, 2, 2],
                include_rescaling=True,
                input_shape=SHAPE,
            ),
        ),
    ],
    ids=["yolov8_backbone", "resnet_backbone"],
)
def test_kerascv_backbones_build_fit_and_stay_frozen_after_loading(tmp_path, arch, make_backbone):
    backbone = make_backbone()
    model = build_detector(arch, backbone, 2, class_names=["a", "b"])
    assert tt.training.find_backbone(model).name == backbone.name
    trainable = len(model.trainable_weights)
    assert trainable < len(model.weights) and not backbone.trainable_weights
    model.compile(optimizer="adam", run_eagerly=True)
    loss = model.fit(batch([0, 1], [1]), epochs=1, verbose=0).history["loss"][0]
    assert math.isfinite(loss)
    model.save(tmp_path / "model.keras")
    loaded = tt.load_model(tmp_path / "model.keras")
    # KerasCV rebuilds its backbones from constructor arguments; the frozen flags come back.
    assert len(loaded.trainable_weights) == trainable
    assert tt.class_info(loaded).class_names == ("a", "b")


def test_errors_name_the_backbone_the_arch_and_what_works():
    with pytest.raises(
        ValueError, match="Backbone 'inception_v3' cannot be used by a detector"
    ) as e:
        build_detector("retinanet", "inception_v3", 3, weights=None)
    message = str(e.value)
    assert "resnet50" in message and "mobilenet_v3_small" in message
    assert "xception" not in message and "inception_resnet_v2" not in message
    assert "inception_v3" not in aligned_backbones() and "resnet50" in aligned_backbones()
    with pytest.raises(
        ValueError,
        match=r"Unknown detector arch 'ssd'; choose one of \['retinanet', 'yolov8', 'faster_rcnn'\]",
    ):
        build_detector("ssd", "resnet50", 3, weights=None)
    with pytest.raises(ValueError, match=r"multiples of 32 .* got \[100\]"):
        build_detector("yolov8", "mobilenet_v3_small", 3, weights=None, input_shape=(100, 64, 3))
    with pytest.raises(ValueError, match="Got 2 class_names for num_classes=3"):
        detector("yolov8", class_names=["a", "b"])
    with pytest.raises(TypeError, match="backbone must be a registry name"):
        build_detector("yolov8", keras.Sequential([keras.Input(SHAPE)]), 3)
    with pytest.raises(ValueError, match=r"Unknown arguments for yolov8: \['head_units'\]"):
        detector("yolov8", head_units=64)


@pytest.mark.parametrize("arch", ["retinanet", "yolov8"])
def test_metadata_weights_and_optimizer_survive_keras_save_and_safe_load(tmp_path, arch):
    model = detector(arch, class_names=["cat", "dog", "owl"])
    randomise_class_biases(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "detector.keras")
    loaded = tt.load_model(tmp_path / "detector.keras")  # safe_mode=True
    assert type(loaded) is type(model)
    assert tt.class_info(loaded) == tt.class_info(model)
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    expected, actual = model(images(), training=False), loaded(images(), training=False)
    for key in expected:
        np.testing.assert_array_equal(expected[key], actual[key])


def test_set_trainable_finds_the_registry_backbone_of_a_detector():
    model = detector("retinanet")
    head = len(model.trainable_weights)
    unfrozen = tt.training.set_trainable(model, "top_blocks", top_blocks=2)
    assert unfrozen[-1] == "conv_1" and "expanded_conv_10_expand" in unfrozen
    assert len(model.trainable_weights) > head
    assert tt.training.set_trainable(model, "head") == []
    assert len(model.trainable_weights) == head


# --- class expansion ---------------------------------------------------------------------------


def test_retinanet_expansion_inserts_new_classes_after_each_anchor_block(old_detector):
    old = old_detector("retinanet")
    before = values(old.weights)
    new = tt.expand_classes(old, 2, new_class_names=["kite", "drone"])

    old_kernel, old_bias = locate_classifier(old).kernel_and_bias()
    located = locate_classifier(new)
    kernel, bias = located.kernel_and_bias()
    assert located.layout == "anchor_major" and located.anchors == 9
    assert old_kernel.shape == (3, 3, 256, 27) and kernel.shape == (3, 3, 256, 45)
    for anchor in range(9):
        for c in range(3):  # old channel a*3+c is new channel a*5+c
            np.testing.assert_array_equal(
                kernel[..., anchor * 5 + c], old_kernel[..., anchor * 3 + c]
            )
            assert bias[anchor * 5 + c] == old_bias[anchor * 3 + c]
        # new classes get the focal-loss prior -log((1 - 0.01) / 0.01)
        np.testing.assert_allclose(bias[anchor * 5 + 3 : anchor * 5 + 5], -math.log(99), rtol=1e-6)
    np.testing.assert_array_equal(located.channels([0, 1, 2])[:6], [0, 1, 2, 5, 6, 7])

    x = images(2)
    expected, actual = old(x, training=False), new(x, training=False)
    # raw outputs are (batch, anchors, classes): the old classes are the first three columns
    assert np.array_equal(actual["classification"][..., :3], expected["classification"])
    assert np.array_equal(actual["box"], expected["box"])
    info = tt.class_info(new)
    assert info.class_names == ("cat", "dog", "owl", "kite", "drone")
    assert info.history[-1]["layer"] == "classification_head.prediction_layer"
    assert info.history[-1]["bias_init"] == 0.01
    # the input is untouched and shares nothing with the new detector
    assert old.num_classes == 3 and new.num_classes == 5
    for b, w in zip(before, old.weights):
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))
    assert not {id(w) for w in old.weights} & {id(w) for w in new.weights}
    assert tt.training.find_backbone(new).name == "mobilenet_v3_small"
    assert len(new.trainable_weights) == len(old.trainable_weights)


@pytest.mark.parametrize("old_classes", [3, 23], ids=["same_width", "inner_convs_widen"])
def test_yolov8_expansion_keeps_old_class_scores_bit_exact(old_detector, old_classes):
    old = old_detector("yolov8", old_classes)
    new = tt.expand_classes(old, 2, init="mean")
    widths = [new.get_layer(f"yolo_v8_head_{i}_class_3_conv").kernel.shape for i in (1, 2, 3)]
    p3 = 24  # mobilenet_v3_small's P3 channels: the class branch is max(classes, 24) wide
    inner = max(old_classes + 2, p3)
    assert widths == [(1, 1, inner, old_classes + 2)] * 3
    assert new.get_layer("yolo_v8_head_1_class_2_conv").kernel.shape[-1] == inner
    x = images(2)
    expected, actual = old(x, training=False), new(x, training=False)
    assert np.array_equal(actual["classes"][..., :old_classes], expected["classes"])
    assert np.array_equal(actual["boxes"], expected["boxes"])
    kernel, bias = locate_classifier(new).kernel_and_bias()
    old_kernel, _ = locate_classifier(old).kernel_and_bias()
    np.testing.assert_allclose(kernel[..., :24, -1], old_kernel.mean(axis=-1), rtol=1e-6)
    assert np.all(bias[-2:] == 0.0)


@pytest.mark.parametrize("arch, eager", [("retinanet", False), ("yolov8", True)])
def test_freeze_old_keeps_old_channels_through_fit_and_reloading(
    tmp_path, old_detector, arch, eager
):
    old = old_detector(arch)
    new = tt.expand_classes(old, new_class_names=["n1", "n2"], freeze_old=True)
    located = locate_classifier(new)
    old_channels, new_channels = located.channels(range(3)), located.channels([3, 4])
    start = [values([layer.kernel, layer.bias]) for layer in located.layers]

    def check(model):
        for layer, (kernel, bias) in zip(locate_classifier(model).layers, start):
            now_kernel, now_bias = values([layer.kernel, layer.bias])
            np.testing.assert_array_equal(now_kernel[..., old_channels], kernel[..., old_channels])
            np.testing.assert_array_equal(now_bias[old_channels], bias[old_channels])
            assert not np.array_equal(now_kernel[..., new_channels], kernel[..., new_channels])

    # Adam with weight decay moves every trainable weight: gradient masking alone would not do.
    new.compile(optimizer=keras.optimizers.Adam(0.01, weight_decay=0.5), run_eagerly=eager)
    new.fit(batch([0, 3], [4]), epochs=1, verbose=0)
    check(new)
    new.save(tmp_path / "frozen.keras")
    loaded = tt.load_model(tmp_path / "frozen.keras")
    assert [r.classes for r in loaded.frozen_channels] == [(0, 1, 2)] * len(located.layers)
    # The compiled step was checked above; here what loading restores (the constraints and
    # their snapshots) is checked without tracing the step a second time.
    loaded.run_eagerly = True
    loaded.fit(batch([1, 3], [4]), epochs=1, verbose=0)
    check(loaded)

    tt.restore_old_classes(loaded, old)  # a no-op for frozen channels: still exact
    check(loaded)


@pytest.mark.parametrize("arch", ["retinanet", "yolov8"])
def test_restore_old_classes_copies_the_old_slices_back_exactly(old_detector, arch):
    old = old_detector(arch)
    new = tt.expand_classes(old, new_class_names=["kite", "drone"])
    located, old_located = locate_classifier(new), locate_classifier(old)
    for layer in located.layers:  # stands for training that moved every channel
        layer.kernel.assign(layer.kernel + 0.5)
        layer.bias.assign(layer.bias + 0.5)
    added = located.channels([3, 4])
    trained_new = [(k[..., added], b[added]) for k, b in located.level_weights()]
    x = images(2)
    key = CLASS_OUTPUT[arch]
    assert not np.array_equal(new(x, training=False)[key][..., :3], old(x, training=False)[key])
    assert tt.restore_old_classes(new, old) is new
    channels, old_channels = located.channels(range(3)), old_located.channels(range(3))
    for (kernel, bias), (old_kernel, old_bias), (new_kernel, new_bias) in zip(
        located.level_weights(), old_located.level_weights(), trained_new
    ):
        np.testing.assert_array_equal(kernel[..., channels], old_kernel[..., old_channels])
        np.testing.assert_array_equal(bias[channels], old_bias[old_channels])
        np.testing.assert_array_equal(kernel[..., added], new_kernel)  # new classes untouched
        np.testing.assert_array_equal(bias[added], new_bias)
    actual = new(x, training=False)[key][..., :3]
    assert np.array_equal(actual, old(x, training=False)[key])
    other = detector(arch, class_names=["cat", "fox", "owl"])
    with pytest.raises(ValueError, match="Label maps disagree: column 1 is 'dog'"):
        tt.restore_old_classes(new, other)


def test_retinanet_anchors_shrink_for_small_inputs_and_survive_saving(tmp_path):
    def sizes(model):
        return model.anchor_generator.get_config()["sizes"]

    small = detector("retinanet", input_shape=(128, 128, 3))
    assert sizes(small) == [8.0, 16.0, 32.0, 64.0, 128.0]  # KerasCV's 32..512 made for 512 px
    small.save(tmp_path / "small.keras")
    assert sizes(tt.load_model(tmp_path / "small.keras")) == sizes(small)
    assert sizes(tt.expand_classes(small, 1)) == sizes(small)
    chosen = detector("retinanet", anchor_sizes=(4, 8, 16, 32, 64))
    assert sizes(chosen) == [4.0, 8.0, 16.0, 32.0, 64.0]
    with pytest.raises(ValueError, match="anchor_sizes needs 5 positive sizes"):
        detector("retinanet", anchor_sizes=(8, 16))
    with pytest.raises(ValueError, match="anchor_sizes is for RetinaNet"):
        detector("yolov8", anchor_sizes=(4, 8, 16, 32, 64))

"""Faster R-CNN (`tt.build_detector("faster_rcnn", ...)`): building and training, the raw and
decoded outputs, ROIAlign, the two-stage training targets, and the class lifecycle of its box
classifier (features -> classes + 1, background first) and class-major box regressor.

Detectors are tiny (64 px, 16 feature channels, 32-wide box head) and train eagerly, one step
(tracing a train step costs seconds; the compiled step is traced in test_detection_overfit.py,
the compiled predict in test_detection_export.py).
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_detection_models import batch, detector, images, ragged, randomise_class_biases, values

import tfx_transfer as tt
from tfx_transfer.detection import two_stage_targets as targets
from tfx_transfer.detection.faster_rcnn import LOSSES, TransferFasterRCNN
from tfx_transfer.detection.roi_align import ROIAlign
from tfx_transfer.heads.frozen_channels import FrozenChannels
from tfx_transfer.surgery import locate_classifier

SMALL = {
    "feature_channels": 16,
    "head_units": 32,
    "roi_samples": 16,
    "train_proposals": 32,
    "test_proposals": 16,
}
NAMES = ("cat", "dog", "owl")
X = images(2)
# Old columns of a 3-class detector: background + 3 class logits; 3 x 4 box deltas.
OLD_LOGITS, OLD_DELTAS = 4, 12


def frcnn(num_classes=3, **kwargs):
    return detector("faster_rcnn", num_classes, **{**SMALL, **kwargs})


def raw(model):
    return {
        key: keras.ops.convert_to_numpy(value) for key, value in model(X, training=False).items()
    }


def class_layers(model):
    return model.get_layer("box_classifier"), model.get_layer("box_regressor")


def fit_one_step(model, data):
    # AdamW with weight decay moves every trainable weight: gradient masking alone would not do.
    model.compile(optimizer=keras.optimizers.AdamW(0.01, weight_decay=0.5), run_eagerly=True)
    return model.fit(data, epochs=1, verbose=0).history


@pytest.fixture(scope="module")
def base():
    """A 3-class detector (cat, dog, owl) with distinct class biases, built once per module.
    Tests expand, drop, reorder and restore from it, which never changes it (checked in
    test_expansion_keeps_old_logits_and_deltas_bit_exact)."""
    keras.utils.set_random_seed(0)
    model = frcnn(class_names=list(NAMES))
    randomise_class_biases(model)
    return model


# --- building and training ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone, options, units",
    [("mobilenet_v3_small", SMALL, 32), ("resnet50", {"feature_channels": 16}, 1024)],
    ids=["mobilenet_v3_small", "resnet50_default_head"],
)
def test_builds_and_fits_one_step_with_a_frozen_backbone(backbone, options, units):
    model = tt.build_detector(
        "faster_rcnn",
        backbone,
        3,
        weights=None,
        input_shape=(64, 64, 3),
        class_names=list(NAMES),
        **options,
    )
    assert isinstance(model, TransferFasterRCNN) and model.backbone.name == backbone
    classifier, regressor = class_layers(model)
    assert tuple(classifier.kernel.shape) == (units, 3 + 1)  # background first
    assert tuple(regressor.kernel.shape) == (units, 4 * 3)
    located = locate_classifier(model)
    assert located.layout == "two_stage" and located.num_classes == 3
    assert [layer.name for layer in located.layers] == ["box_classifier", "box_regressor"]
    np.testing.assert_array_equal(located.channels([1]), [2])
    np.testing.assert_array_equal(located.channels([1], layer=1), [4, 5, 6, 7])
    info = tt.class_info(model)
    assert info.class_names == NAMES and info.activation == "softmax" and not info.multi_label
    assert not model.backbone.trainable_weights  # frozen, BatchNorm included
    frozen = values(model.backbone.weights)
    head = values([*classifier.weights, *model.get_layer("rpn_objectness").weights])

    model.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)
    history = model.fit(batch([0, 2], [1]), epochs=1, verbose=0).history
    assert set(history) == {"loss", *LOSSES}
    assert all(math.isfinite(history[key][0]) for key in history)
    assert history["loss"][0] > 0 and history["classification_loss"][0] > 0
    for before, after in zip(frozen, values(model.backbone.weights)):
        np.testing.assert_array_equal(before, after)  # BatchNorm statistics too
    after = values([*classifier.weights, *model.get_layer("rpn_objectness").weights])
    assert all(not np.array_equal(a, b) for a, b in zip(head, after))  # both stages trained
    with pytest.raises(ValueError, match="computes its own losses"):
        model.compile(optimizer="adam", loss="mse")


@pytest.mark.parametrize("form", ["dense", "ragged"])
def test_losses_stay_finite_for_images_and_batches_without_boxes(form):
    model = frcnn()
    model.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)

    def fit(data):
        history = model.fit(data if form == "dense" else ragged(data), epochs=1, verbose=0)
        losses = {key: value[0] for key, value in history.history.items()}
        assert all(math.isfinite(value) for value in losses.values()), losses
        return losses

    one_empty = fit(batch([0, 2], []))
    assert one_empty["classification_loss"] > 0 and one_empty["rpn_objectness_loss"] > 0
    assert one_empty["rpn_box_loss"] > 0  # the boxes' best anchors are positive
    none = fit(batch([], []))
    assert none["rpn_objectness_loss"] > 0  # every sampled anchor is a negative
    assert none["rpn_box_loss"] == 0.0 and none["box_loss"] == 0.0  # nothing to regress


# --- outputs -----------------------------------------------------------------------------------


def test_raw_outputs_and_predictions_in_the_kerascv_format():
    model = frcnn()
    outputs = model(X, training=False)
    assert tuple(outputs["rois"].shape) == (2, 16, 4)  # test_proposals
    assert tuple(outputs["classification"].shape) == (2, 16, 3 + 1)
    assert tuple(outputs["box"].shape) == (2, 16, 4 * 3)
    rois = keras.ops.convert_to_numpy(outputs["rois"])
    padding = np.all(rois == -1.0, axis=-1)
    inside = rois[~padding]
    assert len(inside) and np.all((inside >= 0) & (inside <= 64))  # pixels, clipped
    assert np.all(inside[:, :2] <= inside[:, 2:])  # (y1, x1, y2, x2)
    assert tuple(model(X, training=True)["rois"].shape) == (2, 32, 4)  # train_proposals

    # A box classifier that only sees its bias: class 1 everywhere with a known softmax score.
    classifier, _ = class_layers(model)
    classifier.kernel.assign(np.zeros(classifier.kernel.shape, "float32"))
    bias = np.array([0.0, -2.0, 5.0, -1.0], "float32")
    classifier.bias.assign(bias)
    score = np.exp(bias[2]) / np.exp(bias).sum()

    found = model.predict(X, verbose=0)
    assert set(found) == {"boxes", "confidence", "classes", "num_detections"}
    assert found["boxes"].shape == (2, 100, 4) and found["num_detections"].shape == (2,)
    assert found["confidence"].shape == found["classes"].shape == (2, 100)
    assert found["num_detections"].min() > 0  # something to check
    for image, count in enumerate(found["num_detections"]):
        boxes = found["boxes"][image]
        assert np.all(boxes[count:] == -1) and np.all(found["classes"][image, count:] == -1)
        assert np.all(found["confidence"][image, count:] == -1)
        x, y, w, h = boxes[:count].T  # "xywh", the default format
        assert np.all((x >= 0) & (y >= 0) & (w >= 0) & (h >= 0))
        assert np.all((x + w <= 64 + 1e-3) & (y + h <= 64 + 1e-3))
        np.testing.assert_array_equal(found["classes"][image, :count], 1)
        np.testing.assert_allclose(found["confidence"][image, :count], score, rtol=1e-5)

    # The same detector in another box format returns the same boxes in that format.
    corners = frcnn(bounding_box_format="xyxy")
    corners.set_weights(model.get_weights())
    other = corners.predict(X, verbose=0)
    np.testing.assert_array_equal(other["num_detections"], found["num_detections"])
    for image, count in enumerate(found["num_detections"]):
        x, y, w, h = found["boxes"][image, :count].T
        expected = np.stack([x, y, x + w, y + h], axis=-1)
        np.testing.assert_allclose(other["boxes"][image, :count], expected, atol=1e-4)


# --- ROIAlign ----------------------------------------------------------------------------------


def ramps(height=4, width=4):
    """[1, H, W, 2] features: channel 0 is the cell's row, channel 1 its column. Bilinear
    sampling reproduces a linear function exactly, so every average is known."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, columns], axis=-1)[None].astype("float32")


def test_roi_align_samples_the_cells_under_the_box():
    align = ROIAlign(output_size=1, stride=16)
    # A box covering exactly cell (1, 2) (pixels y 16..32, x 32..48) reads that cell.
    cell = align(ramps(), tf.constant([[[16.0, 32.0, 32.0, 48.0]]]))
    assert tuple(cell.shape) == (1, 1, 1, 1, 2)
    np.testing.assert_allclose(cell[0, 0, 0, 0], [1.0, 2.0], atol=1e-6)
    # Two by two cells: the average of the four.
    block = align(ramps(), tf.constant([[[16.0, 16.0, 48.0, 48.0]]]))
    np.testing.assert_allclose(block[0, 0, 0, 0], [1.5, 1.5], atol=1e-6)

    # 7 x 7 bins over a box inside the image: a constant map gives the constant everywhere,
    # and the bins of a ramp average to the box centre (in cells).
    align = ROIAlign(output_size=7, stride=16)
    constant = align(np.full((1, 4, 4, 3), 3.0, "float32"), tf.constant([[[12.0, 12, 52, 52]]]))
    np.testing.assert_allclose(constant, 3.0, atol=1e-6)
    box = np.array([10.0, 12.0, 34.0, 30.0], "float32")
    pooled = align(ramps(), tf.constant([[box]]))[0, 0].numpy()
    centre = (box[:2] + box[2:]) / 2 / 16 - 0.5
    np.testing.assert_allclose(pooled.mean(axis=(0, 1)), centre, atol=1e-5)
    assert np.all(np.diff(pooled[:, :, 0], axis=0) > 0)  # bins follow the box down
    assert np.all(np.diff(pooled[:, :, 1], axis=1) > 0)  # and across
    # Moving the box by one stride moves its features by one cell, exactly.
    moved = align(ramps(), tf.constant([[box + [16.0, 0, 16, 0]]]))[0, 0].numpy()
    np.testing.assert_allclose(moved[..., 0], pooled[..., 0] + 1.0, atol=1e-5)
    np.testing.assert_allclose(moved[..., 1], pooled[..., 1], atol=1e-5)


def test_roi_align_batches_boxes_per_image_and_refuses_bad_arguments():
    features = np.concatenate([ramps(), ramps() + 10.0])  # image 1 is image 0 plus 10
    boxes = tf.constant([[[16.0, 16.0, 32.0, 32.0]] * 3, [[16.0, 16.0, 32.0, 32.0]] * 3])
    align = ROIAlign(output_size=2, stride=16)
    pooled = align(features, boxes).numpy()
    assert pooled.shape == (2, 3, 2, 2, 2)
    assert align.compute_output_shape((2, 4, 4, 2), (2, 3, 4)) == (2, 3, 2, 2, 2)
    np.testing.assert_allclose(pooled[1], pooled[0] + 10.0, atol=1e-5)  # each image its own
    copy = ROIAlign.from_config(align.get_config())
    assert (copy.output_size, copy.stride) == (2, 16)

    with pytest.raises(ValueError, match="positive output_size and stride; got 0, 16"):
        ROIAlign(output_size=0, stride=16)
    with pytest.raises(ValueError, match="positive output_size and stride; got 7, -4"):
        ROIAlign(output_size=7, stride=-4)


# --- training targets --------------------------------------------------------------------------


def test_decode_inverts_encode():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 100, (2, 50, 2))
    anchors = np.concatenate([corner, corner + rng.uniform(4, 60, (2, 50, 2))], axis=-1)
    corner = rng.uniform(0, 100, (2, 50, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(4, 60, (2, 50, 2))], axis=-1)
    anchors, boxes = anchors.astype("float32"), boxes.astype("float32")
    deltas = targets.encode_boxes(boxes, anchors)
    np.testing.assert_allclose(targets.decode_boxes(deltas, anchors), boxes, atol=1e-3)
    np.testing.assert_allclose(targets.encode_boxes(anchors, anchors), 0.0, atol=1e-6)
    # Class-specific boxes of ROIs broadcast as in predict: deltas [B, R, C, 4], ROIs [B, R, 1, 4].
    decoded = targets.decode_boxes(tf.stack([deltas, deltas], axis=2), anchors[:, :, None])
    np.testing.assert_allclose(decoded[:, :, 1], boxes, atol=1e-3)


def test_anchor_labels_follow_the_faster_rcnn_rules():
    anchors = tf.constant(
        [
            [0, 0, 10, 10],  # IoU 1 with box 0: positive
            [0, 0, 20, 20],  # IoU 0.25 with box 0: negative
            [50, 50, 60, 60],  # box 1's best anchor, IoU 100/256 < 0.7: positive all the same
            [0, 0, 10, 20],  # IoU 0.5 with box 0, not its best: neither
            [100, 100, 110, 110],  # only a padding row's box is here: negative
        ],
        tf.float32,
    )
    boxes = tf.constant(
        [
            [[0, 0, 10, 10], [48, 48, 64, 64], [100, 100, 110, 110]],
            [[-1, -1, -1, -1]] * 3,  # an image without boxes
        ],
        tf.float32,
    )
    classes = tf.constant([[1, 0, -1], [-1, -1, -1]], tf.int32)
    positive, negative, deltas = targets.anchor_labels(anchors, boxes, classes)
    np.testing.assert_array_equal(positive[0], [True, False, True, False, False])
    np.testing.assert_array_equal(negative[0], [False, True, False, False, True])
    np.testing.assert_array_equal(positive[1], [False] * 5)  # no boxes: every anchor negative
    np.testing.assert_array_equal(negative[1], [True] * 5)
    decoded = targets.decode_boxes(deltas[0], anchors).numpy()
    np.testing.assert_allclose(decoded[[0, 2]], [[0, 0, 10, 10], [48, 48, 64, 64]], atol=1e-3)


def test_sample_respects_the_count_and_the_positive_fraction():
    count, rows = 16, [(40, 60), (3, 97), (2, 5)]  # (positives, negatives) per row of 100
    positive = np.zeros((3, 100), bool)
    negative = np.zeros((3, 100), bool)
    rng = np.random.default_rng(0)
    for row, (p, n) in enumerate(rows):
        order = rng.permutation(100)
        positive[row, order[:p]] = True
        negative[row, order[p : p + n]] = True
    chosen = targets.sample(
        tf.constant(positive), tf.constant(negative), count, 0.5, keras.random.SeedGenerator(0)
    ).numpy()
    assert not np.any(chosen & ~(positive | negative))
    taken = [(chosen & positive).sum(axis=1).tolist(), (chosen & negative).sum(axis=1).tolist()]
    # At most half positive, then negatives up to the count; rows short of candidates take all.
    assert taken == [[8, 3, 2], [8, 13, 5]]
    again = targets.sample(
        tf.constant(positive), tf.constant(negative), count, 0.5, keras.random.SeedGenerator(1)
    ).numpy()
    assert not np.array_equal(chosen[0], again[0])  # a random choice, not the first ones


def test_sample_rois_labels_class_k_as_k_plus_1_and_the_rest_background():
    proposals = tf.constant(
        [
            [[10, 10, 30, 31], [40, 40, 60, 61], [0, 0, 8, 8], [50, 0, 60, 8], [-1, -1, -1, -1]],
            [[10, 10, 30, 30]] + [[-1, -1, -1, -1]] * 4,
        ],
        tf.float32,
    )
    valid = tf.reduce_all(proposals >= 0, axis=-1)
    boxes = tf.constant(
        [[[10, 10, 30, 30], [40, 40, 60, 60], [-1] * 4], [[8, 8, 30, 30], [-1] * 4, [-1] * 4]],
        tf.float32,
    )
    classes = tf.constant([[2, 0, -1], [1, -1, -1]], tf.int32)
    rois, labels, deltas, weights = targets.sample_rois(
        proposals, valid, boxes, classes, 16, keras.random.SeedGenerator(0)
    )
    assert tuple(rois.shape) == (2, 16, 4) and tuple(labels.shape) == (2, 16)
    rois, labels, weights = rois.numpy(), labels.numpy(), weights.numpy()
    # Every usable candidate fits (fewer than 16): 4 valid proposals + 2 boxes, 1 + 1; the rest
    # is padding of weight 0.
    np.testing.assert_array_equal(weights.sum(axis=1), [6, 2])
    sampled = weights == 1
    expected = {  # each sampled ROI's label, from its IoU with the real boxes
        (10, 10, 30, 31): 3,  # class 2 box
        (10, 10, 30, 30): 3,
        (40, 40, 60, 61): 1,  # class 0 box
        (40, 40, 60, 60): 1,
        (0, 0, 8, 8): 0,
        (50, 0, 60, 8): 0,
    }
    found = {
        tuple(r): int(k) for r, k in zip(rois[0][sampled[0]].astype(int), labels[0][sampled[0]])
    }
    assert found == expected
    np.testing.assert_array_equal(sorted(labels[1][sampled[1]]), [2, 2])  # IoU 400/484 > 0.5
    # Foreground deltas move each ROI onto its box.
    foreground = sampled[0] & (labels[0] > 0)
    decoded = targets.decode_boxes(deltas[0], rois[0]).numpy()[foreground]
    matched = np.where((labels[0][foreground] == 3)[:, None], [10, 10, 30, 30], [40, 40, 60, 60])
    np.testing.assert_allclose(decoded, matched, atol=1e-3)


def test_sample_rois_caps_foreground_at_a_quarter():
    near = [[10, 10, 30, 30 + k] for k in range(10)]  # 10 foreground proposals
    far = [[40 + k, 40, 50 + k, 50] for k in range(10)]  # 10 background
    proposals = tf.constant([near + far], tf.float32)
    boxes, classes = tf.constant([[[10, 10, 30, 30]]], tf.float32), tf.constant([[1]])
    _, labels, _, weights = targets.sample_rois(
        proposals, tf.ones((1, 20), bool), boxes, classes, 8, keras.random.SeedGenerator(0)
    )
    labels, weights = labels.numpy()[0], weights.numpy()[0]
    assert weights.sum() == 8 and (labels[weights == 1] == 2).sum() == 2  # 8 / 4 foreground


# --- class lifecycle ---------------------------------------------------------------------------


def examples():
    """Imprinting examples: (images, one xywh box per image) per new class."""
    return {
        "kite": (X, np.array([[4, 4, 20, 20], [10, 10, 30, 30]], "float32")),
        "drone": (X[:1], np.array([[30, 28, 24, 30]], "float32")),
    }


def imprinted(model, kernel):
    """The box classifier columns weight imprinting should give the new classes: each the mean
    unit box-head feature of its examples, scaled to the old class columns' mean norm."""
    scale = np.linalg.norm(kernel[:, 1:], axis=0).mean()  # old classes, not background
    columns = []
    for name in ("kite", "drone"):
        pictures, boxes = examples()[name]
        features = model.roi_features(pictures, boxes[:, None, :])[:, 0].astype("float64")
        mean = (features / np.linalg.norm(features, axis=1, keepdims=True)).mean(axis=0)
        columns.append(scale * mean / np.linalg.norm(mean))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("init", ["glorot_uniform", "zeros", "mean", "imprint"])
def test_expansion_keeps_old_logits_and_deltas_bit_exact(base, init):
    before = values(base.weights)
    expected = raw(base)
    extra = {"examples": examples()} if init == "imprint" else {}
    new = tt.expand_classes(base, new_class_names=["kite", "drone"], init=init, **extra)
    assert isinstance(new, TransferFasterRCNN) and new.num_classes == 5
    classifier, regressor = class_layers(new)
    assert tuple(classifier.kernel.shape) == (32, 5 + 1)
    assert tuple(regressor.kernel.shape) == (32, 4 * 5)

    actual = raw(new)
    assert np.array_equal(actual["rois"], expected["rois"])
    assert np.array_equal(actual["classification"][..., :OLD_LOGITS], expected["classification"])
    assert np.array_equal(actual["box"][..., :OLD_DELTAS], expected["box"])

    # The new classes' box deltas start as the mean of the old classes'.
    old_classifier, old_regressor = class_layers(base)
    for weight, old_weight in zip(values(regressor.weights), values(old_regressor.weights)):
        mean = old_weight.reshape(*old_weight.shape[:-1], 3, 4).mean(axis=-2)
        np.testing.assert_allclose(weight[..., OLD_DELTAS : OLD_DELTAS + 4], mean, atol=1e-6)
        np.testing.assert_allclose(weight[..., OLD_DELTAS + 4 :], mean, atol=1e-6)
    kernel, old_kernel = classifier.kernel.numpy(), old_classifier.kernel.numpy()
    added = kernel[:, OLD_LOGITS:]
    if init == "zeros":
        np.testing.assert_array_equal(added, 0.0)
    elif init == "mean":
        mean = old_kernel[:, 1:].mean(axis=1, keepdims=True)  # classes, not background
        np.testing.assert_allclose(added, np.repeat(mean, 2, axis=1), atol=1e-6)
    elif init == "imprint":
        np.testing.assert_allclose(added, imprinted(base, old_kernel), rtol=1e-5, atol=1e-6)
    else:
        limit = math.sqrt(6 / (32 + 6))
        assert np.all(np.abs(added) <= limit) and np.any(added != 0)
    np.testing.assert_array_equal(classifier.bias.numpy()[OLD_LOGITS:], 0.0)  # bias_init zeros

    info = tt.class_info(new)
    assert info.class_names == (*NAMES, "kite", "drone")
    assert info.history[-1]["init"] == init and info.history[-1]["layout"] == "two_stage"
    assert new.frozen_channels == []
    for b, w in zip(before, base.weights):  # the input is untouched
        np.testing.assert_array_equal(b, keras.ops.convert_to_numpy(w))
    assert not {id(w) for w in base.weights} & {id(w) for w in new.weights}


def test_imprint_errors_name_the_class(base):
    with pytest.raises(ValueError, match=r"needs examples=\{new class name: \(images, boxes\)\}"):
        tt.expand_classes(base, new_class_names=["kite"], init="imprint")
    with pytest.raises(ValueError, match=r"missing: \['drone'\], not new classes: \[\]"):
        tt.expand_classes(
            base,
            new_class_names=["kite", "drone"],
            init="imprint",
            examples={"kite": examples()["kite"]},
        )
    wrong = {**examples(), "drone": (X, np.zeros((2, 1, 4), "float32"))}  # boxes [n, 1, 4]
    with pytest.raises(ValueError, match=r"examples\['drone'\] must be .* got images \(2, 64"):
        tt.expand_classes(base, new_class_names=["kite", "drone"], init="imprint", examples=wrong)
    wrong = {**examples(), "kite": (X, np.zeros((1, 4), "float32"))}  # 2 images, 1 box
    with pytest.raises(ValueError, match=r"examples\['kite'\] .* boxes \(1, 4\)"):
        tt.expand_classes(base, new_class_names=["kite", "drone"], init="imprint", examples=wrong)


def test_frozen_expansion_trains_only_new_columns_and_survives_saving(base, tmp_path):
    new = tt.expand_classes(base, new_class_names=["kite", "drone"], freeze_old=True)
    assert new.frozen_channels == [
        FrozenChannels("box_classifier", period=5, classes=(0, 1, 2), width=1, leading=1),
        FrozenChannels("box_regressor", period=5, classes=(0, 1, 2), width=4, leading=0),
    ]
    old_columns = {"box_classifier": OLD_LOGITS, "box_regressor": OLD_DELTAS}
    start = {layer.name: values(layer.weights) for layer in class_layers(new)}

    def check(model):
        for layer in class_layers(model):
            kept = old_columns[layer.name]
            for now, then in zip(values(layer.weights), start[layer.name]):
                assert np.array_equal(now[..., :kept], then[..., :kept]), layer.name
                assert not np.array_equal(now[..., kept:], then[..., kept:]), layer.name

    history = fit_one_step(new, batch([0, 3], [4]))
    assert all(math.isfinite(value[0]) for value in history.values())
    check(new)
    trained = raw(new)

    new.save(tmp_path / "frozen.keras")
    loaded = tt.load_model(tmp_path / "frozen.keras")  # safe_mode=True
    assert type(loaded) is TransferFasterRCNN
    assert tt.class_info(loaded) == tt.class_info(new)
    assert loaded.frozen_channels == new.frozen_channels
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.AdamW)
    assert len(loaded.trainable_weights) == len(new.trainable_weights)
    for key, value in raw(loaded).items():
        assert np.array_equal(value, trained[key]), key
    # What loading restores (the constraints and their snapshots) keeps the old columns.
    loaded.run_eagerly = True
    loaded.fit(batch([1, 3], [4]), epochs=1, verbose=0)
    check(loaded)


def test_restore_old_classes_copies_the_old_columns_back_exactly(base):
    new = tt.expand_classes(base, new_class_names=["kite", "drone"])
    for layer in class_layers(new):  # stands for training that moved every column
        layer.kernel.assign(layer.kernel + 0.5)
        layer.bias.assign(layer.bias + 0.5)
    moved = {layer.name: values(layer.weights) for layer in class_layers(new)}
    expected = raw(base)
    assert not np.array_equal(
        raw(new)["classification"][..., :OLD_LOGITS], expected["classification"]
    )

    assert tt.restore_old_classes(new, base) is new
    for layer, old_layer, kept in zip(class_layers(new), class_layers(base), (4, 12)):
        for now, old, then in zip(
            values(layer.weights), values(old_layer.weights), moved[layer.name]
        ):
            np.testing.assert_array_equal(now[..., :kept], old)
            np.testing.assert_array_equal(now[..., kept:], then[..., kept:])  # new ones untouched
    actual = raw(new)
    assert np.array_equal(actual["classification"][..., :OLD_LOGITS], expected["classification"])
    assert np.array_equal(actual["box"][..., :OLD_DELTAS], expected["box"])
    other = frcnn(class_names=["cat", "fox", "owl"])
    with pytest.raises(ValueError, match="Label maps disagree: column 1 is 'dog'"):
        tt.restore_old_classes(new, other)


def test_drop_reorder_refine_and_merge_keep_the_kept_classes_exact(base):
    expected = raw(base)
    deltas = {name: list(range(4 * k, 4 * k + 4)) for k, name in enumerate(NAMES)}

    dropped = tt.drop_classes(base, classes=["dog"])
    assert tt.class_info(dropped).class_names == ("cat", "owl") and dropped.num_classes == 2
    assert tuple(class_layers(dropped)[1].kernel.shape) == (32, 8)
    actual = raw(dropped)
    assert np.array_equal(actual["rois"], expected["rois"])
    assert np.array_equal(actual["classification"], expected["classification"][..., [0, 1, 3]])
    assert np.array_equal(actual["box"], expected["box"][..., deltas["cat"] + deltas["owl"]])

    reordered = tt.reorder_classes(base, ["owl", "cat", "dog"])
    assert tt.class_info(reordered).class_names == ("owl", "cat", "dog")
    actual = raw(reordered)
    assert np.array_equal(actual["classification"], expected["classification"][..., [0, 3, 1, 2]])
    order = deltas["owl"] + deltas["cat"] + deltas["dog"]
    assert np.array_equal(actual["box"], expected["box"][..., order])

    # Refining "dog" trains its columns alone: background, cat and owl are frozen.
    refined = tt.refine_classes(base, classes=["dog"])
    assert [(r.layer, r.classes) for r in refined.frozen_channels] == [
        ("box_classifier", (0, 2)),
        ("box_regressor", (0, 2)),
    ]
    layers = class_layers(refined)
    assert {id(v) for v in refined.trainable_weights} == {
        id(v) for layer in layers for v in layer.trainable_weights
    }
    fit_one_step(refined, batch([0, 1], [1, 2]))
    actual = raw(refined)
    assert np.array_equal(
        actual["classification"][..., [0, 1, 3]], expected["classification"][..., [0, 1, 3]]
    )
    assert not np.array_equal(actual["classification"][..., 2], expected["classification"][..., 2])
    kept = deltas["cat"] + deltas["owl"]
    assert np.array_equal(actual["box"][..., kept], expected["box"][..., kept])
    assert not np.array_equal(
        actual["box"][..., deltas["dog"]], expected["box"][..., deltas["dog"]]
    )

    merged = tt.merge_frozen(refined)
    assert merged.frozen_channels == [] and isinstance(merged, TransferFasterRCNN)
    for key, value in raw(merged).items():
        assert np.array_equal(value, actual[key]), key


def test_evaluate_reports_old_and_new_classes_against_the_reference():
    data = tt.data.synthetic_detection(
        2, image_size=64, classes=["red_circle", "red_square", "red_triangle"], test_images=4,
        batch_size=4, max_objects=2,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    old = frcnn(2, class_names=data.class_names[:2])
    expanded = tt.expand_classes(old, new_class_names=data.class_names[2:], freeze_old=True)
    report = tt.evaluate(expanded, data, reference=old)
    assert isinstance(report, tt.DetectionReport)
    assert report.class_names == list(data.class_names) and report.old_classes == 2
    assert report.num_images == 4 and report.num_ground_truth > 0
    for name in ("map", "map50", "old_map", "reference_old_map", "reference_old_map50"):
        value = getattr(report, name)
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, value)
    assert report.new_map is None or 0.0 <= report.new_map <= 1.0
    assert report.old_map_change == pytest.approx(
        report.old_map - report.reference_old_map, abs=1e-3
    )
    assert set(report.per_class) == set(data.class_names)


def test_roi_align_bins_are_aligned_and_border_samples_read_the_border_cell():
    ones = np.ones((1, 4, 4, 1), "float32")
    for box in ([0.0, 0.0, 64.0, 64.0], [4.0, 4.0, 60.0, 60.0]):  # inside the 64 px image
        pooled = ROIAlign(output_size=2, stride=16)(ones, tf.constant([[box]]))
        np.testing.assert_allclose(pooled, 1.0, atol=1e-6)
    # Rows of value 0, 1, 2, 3; a box over exactly row 1 (pixels 16..32): its two bins'
    # samples sit at rows 0.625/0.875 and 1.125/1.375 (Detectron2's aligned ROIAlign).
    ramp = np.arange(4, dtype="float32")[None, :, None, None] * ones
    pooled = ROIAlign(output_size=2, stride=16)(ramp, tf.constant([[[16.0, 0.0, 32.0, 16.0]]]))
    np.testing.assert_allclose(pooled[0, 0, :, :, 0], [[0.75, 0.75], [1.25, 1.25]], atol=1e-6)


def test_sample_rois_takes_background_from_an_image_without_boxes():
    proposals = tf.constant([[[0, 0, 8, 8], [20, 20, 40, 40], [40, 0, 60, 10]]], tf.float32)
    boxes, classes = tf.fill([1, 1, 4], -1.0), tf.fill([1, 1], -1)
    _, labels, _, weights = targets.sample_rois(
        proposals, tf.ones((1, 3), bool), boxes, classes, 4, keras.random.SeedGenerator(0)
    )
    assert weights.numpy().sum() == 3 and np.all(labels.numpy() == 0)


def test_predict_returns_integer_class_ids_like_the_kerascv_detectors(base):
    found = base.predict(X, verbose=0)
    assert np.issubdtype(found["classes"].dtype, np.integer), found["classes"].dtype

"""The class lifecycle of KerasCV detectors (RetinaNet and YOLOv8): refining, dropping and
reordering classes, also after a frozen expansion, and what survives saving.

Raw outputs (`model(x, training=False)`) are compared exactly: the kept classes' scores are the
old ones gathered on the last axis. Training runs eagerly, one step (see
test_detection_models.py for why).
"""

import keras
import numpy as np
import pytest
from test_detection_models import (
    BOX_OUTPUT,
    CLASS_OUTPUT,
    batch,
    detector,
    images,
    randomise_class_biases,
    values,
)

import tfx_transfer as tt
from tfx_transfer.surgery import locate_classifier

NAMES = ("cat", "dog", "owl")
X = images(2)


def raw(model):
    return {
        key: keras.ops.convert_to_numpy(value) for key, value in model(X, training=False).items()
    }


def fit_one_step(model, data):
    # Adam with weight decay moves every trainable weight: gradient masking alone would not do.
    model.compile(optimizer=keras.optimizers.Adam(0.01, weight_decay=0.5), run_eagerly=True)
    model.fit(data, epochs=1, verbose=0)


@pytest.fixture(scope="module", params=["retinanet", "yolov8"])
def base(request):
    """(arch, a 3-class detector with distinct class biases)."""
    keras.utils.set_random_seed(0)
    model = detector(request.param, class_names=list(NAMES))
    randomise_class_biases(model)
    return request.param, model


def test_refine_classes_trains_only_the_named_class(base):
    arch, model = base
    key, box = CLASS_OUTPUT[arch], BOX_OUTPUT[arch]
    refined = tt.refine_classes(model, classes=["dog"])
    info = tt.class_info(refined)
    assert info.class_names == NAMES
    assert info.history[-1] == {"operation": "refine_classes", "classes": ["dog"]}
    located = locate_classifier(refined)
    assert [record.classes for record in refined.frozen_channels] == [(0, 2)] * len(located.layers)
    class_variables = {id(v) for layer in located.layers for v in layer.trainable_weights}
    assert {id(v) for v in refined.trainable_weights} == class_variables

    before = raw(refined)
    expected = raw(model)
    for name in before:
        assert np.array_equal(before[name], expected[name])
    fit_one_step(refined, batch([0, 1], [1, 2]))
    after = raw(refined)
    assert np.array_equal(after[key][..., [0, 2]], before[key][..., [0, 2]])
    assert not np.array_equal(after[key][..., 1], before[key][..., 1])
    assert np.array_equal(after[box], before[box])  # nothing but the class convs trained


def test_drop_and_reorder_keep_the_remaining_raw_outputs_bit_exact(base):
    arch, model = base
    key, box = CLASS_OUTPUT[arch], BOX_OUTPUT[arch]
    expected = raw(model)

    dropped = tt.drop_classes(model, classes=["cat"])
    assert dropped.num_classes == 2
    assert tt.class_info(dropped).class_names == ("dog", "owl")
    assert tt.class_info(dropped).history[-1] == {"operation": "drop_classes", "dropped": ["cat"]}
    actual = raw(dropped)
    assert np.array_equal(actual[key], expected[key][..., [1, 2]])
    assert np.array_equal(actual[box], expected[box])

    coco_like = tt.LabelMap(["owl", "cat", "dog"], [16, 1, 18])  # sparse ids
    reordered = tt.reorder_classes(model, coco_like)
    info = tt.class_info(reordered)
    assert info.class_names == ("owl", "cat", "dog") and info.class_ids == (16, 1, 18)
    assert info.history[-1]["order"] == ["owl", "cat", "dog"]
    actual = raw(reordered)
    assert np.array_equal(actual[key], expected[key][..., [2, 0, 1]])
    assert np.array_equal(actual[box], expected[box])


def test_class_selection_errors_name_the_problem(base):
    _, model = base
    with pytest.raises(ValueError, match=r"drop_classes: unknown classes \['zebra'\]"):
        tt.drop_classes(model, classes=["dog", "zebra"])
    with pytest.raises(ValueError, match=r"refine_classes: unknown classes \['zebra'\]"):
        tt.refine_classes(model, classes=["zebra"])
    with pytest.raises(ValueError, match="drop_classes would remove every class"):
        tt.drop_classes(model, classes=list(NAMES))
    with pytest.raises(TypeError, match="drop_classes takes a list of classes; got 'cat'"):
        tt.drop_classes(model, classes="cat")
    with pytest.raises(ValueError, match=r"needs every class .* once; missing \['owl'\]"):
        tt.reorder_classes(model, ["dog", "cat"])


def test_yolov8_refuses_separate_branch():
    model = detector("yolov8")
    with pytest.raises(ValueError, match="separate_branch=True applies to classifiers"):
        tt.expand_classes(model, new_class_names=["kite"], separate_branch=True)


def test_frozen_classes_stay_frozen_through_drop_reorder_training_and_reloading(base, tmp_path):
    arch, model = base
    key = CLASS_OUTPUT[arch]
    expanded = tt.expand_classes(model, new_class_names=["kite", "drone"], freeze_old=True)
    dropped = tt.drop_classes(expanded, classes=["dog", "kite"])
    assert tt.class_info(dropped).class_names == ("cat", "owl", "drone")
    assert [r.classes for r in dropped.frozen_channels] == [(0, 1)] * len(dropped.frozen_channels)
    assert np.array_equal(raw(dropped)[key], raw(expanded)[key][..., [0, 2, 4]])

    final = tt.reorder_classes(dropped, tt.LabelMap(["drone", "cat", "owl"], [91, 1, 16]))
    located = locate_classifier(final)
    assert [r.classes for r in final.frozen_channels] == [(1, 2)] * len(located.layers)
    info = tt.class_info(final)
    assert info.class_names == ("drone", "cat", "owl") and info.class_ids == (91, 1, 16)
    assert [entry["operation"] for entry in info.history] == [
        "expand_classes",
        "drop_classes",
        "reorder_classes",
    ]

    # cat and owl keep the base detector's class channels through training
    frozen, trained = located.channels([1, 2]), located.channels([0])
    original = locate_classifier(model)
    for (kernel, bias), (old_kernel, old_bias) in zip(
        located.level_weights(), original.level_weights()
    ):
        old_channels = original.channels([0, 2])
        assert np.array_equal(kernel[..., frozen], old_kernel[..., old_channels])
        assert np.array_equal(bias[frozen], old_bias[old_channels])
    start = [values([layer.kernel, layer.bias]) for layer in located.layers]
    fit_one_step(final, batch([0, 1], [2]))
    for layer, (kernel, bias) in zip(located.layers, start):
        now_kernel, now_bias = values([layer.kernel, layer.bias])
        assert np.array_equal(now_kernel[..., frozen], kernel[..., frozen])
        assert np.array_equal(now_bias[frozen], bias[frozen])
        assert not np.array_equal(now_kernel[..., trained], kernel[..., trained])

    final.save(tmp_path / "m.keras")
    loaded = tt.load_model(tmp_path / "m.keras")  # safe_mode=True
    assert tt.class_info(loaded) == info
    assert [r.classes for r in loaded.frozen_channels] == [(1, 2)] * len(located.layers)
    assert len(loaded.trainable_weights) == len(final.trainable_weights)
    expected, actual = raw(final), raw(loaded)
    for name in expected:
        assert np.array_equal(actual[name], expected[name])


def test_retinanet_separate_branch_keeps_old_scores_through_training_saving_and_export(tmp_path):
    keras.utils.set_random_seed(0)
    model = detector("retinanet", class_names=list(NAMES))
    randomise_class_biases(model)
    before = raw(model)
    branched = tt.expand_classes(model, new_class_names=["kite", "drone"], separate_branch=True)
    head = branched.classification_head
    assert type(head).__name__ == "BranchedClassificationHead" and head.branch_classes == [3, 2]
    located = locate_classifier(branched)
    assert located.layout == "anchor_major_branched" and located.num_classes == 5
    # The new branch starts as a copy of the old head's convs.
    for old_conv, new_conv in zip(head.branches[0].conv_layers, head.branches[1].conv_layers):
        for a, b in zip(values(old_conv.weights), values(new_conv.weights)):
            np.testing.assert_array_equal(a, b)
    start = raw(branched)
    assert np.array_equal(start["classification"][..., :3], before["classification"])
    assert np.array_equal(start["box"], before["box"])

    # The whole class head trains; the feature pyramid feeds every class, so it stays frozen.
    # Compiled (not eager): TF's graph optimizer once let updates through a whole-layer freeze.
    tt.training.set_trainable(branched, "head")
    branched.feature_pyramid.trainable = False
    branched.compile(optimizer=keras.optimizers.Adam(0.01, weight_decay=0.5))
    branched.fit(batch([0, 3], [4]), epochs=1, verbose=0)
    after = raw(branched)
    assert np.array_equal(after["classification"][..., :3], before["classification"])
    assert not np.array_equal(after["classification"][..., 3:], start["classification"][..., 3:])

    branched.save(tmp_path / "branched.keras")
    loaded = tt.load_model(tmp_path / "branched.keras")
    assert tt.class_info(loaded).class_names == (*NAMES, "kite", "drone")
    assert np.array_equal(raw(loaded)["classification"], after["classification"])
    with pytest.raises(ValueError, match="has 2 class branches"):
        tt.drop_classes(loaded, ["cat"])
    # export verifies both serving signatures against predict (NMS inside the SavedModel)
    assert (
        tt.export_saved_model(loaded, tmp_path / "export", version=1) / "saved_model.pb"
    ).exists()

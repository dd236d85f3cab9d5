"""The class lifecycle of a classifier: repeated frozen expansions, refining, class branches,
dropping, reordering and merging heads.

Every operation returns a new model whose kept classes are the old columns bit for bit; these
tests check that promise with exact equality (before training and, for frozen columns, after
training), together with the class names, the history and the errors a user sees.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import conv_classifier, random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.core.metadata import class_steps
from tfx_transfer.surgery import ColumnBlockDense, locate_classifier
from tfx_transfer.surgery.columns import trainable_columns

NAMES = ("a", "b", "c", "d")
STEPS = (("e", "f"), ("g",), ("h", "i"))  # 4 -> 6 -> 7 -> 9 classes
X = random_images(8)


def outputs(model, images=X):
    return keras.ops.convert_to_numpy(model(images, training=False))


def kernel_and_bias(model):
    return [value.copy() for value in locate_classifier(model).kernel_and_bias()]


def fit_one_step(model):
    """One Adam step with weight decay: it moves every trainable weight, so a frozen column that
    is merely excluded from the gradient would still move."""
    model.compile(
        keras.optimizers.Adam(0.01, weight_decay=0.5),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    labels = np.arange(len(X)) % model.output_shape[-1]
    model.fit(X, labels, epochs=1, batch_size=len(X), verbose=0)


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(0)
    return conv_classifier(4, class_names=NAMES)


@pytest.fixture(scope="module")
def grown(base):
    """The base expanded three times with freeze_old=True (untrained): 4 -> 6 -> 7 -> 9."""
    model = base
    for names in STEPS:
        model = tt.expand_classes(model, new_class_names=names, freeze_old=True)
    return model


@pytest.fixture(scope="module")
def branched(base):
    keras.utils.set_random_seed(1)
    return tt.expand_classes(base, new_class_names=["e", "f", "g"], separate_branch=True)


# --- repeated expansion -----------------------------------------------------------------------


def test_three_frozen_expansions_keep_every_earlier_column_through_training(base):
    model = base
    for names in STEPS:
        previous = outputs(model)
        old = previous.shape[1]
        model = tt.expand_classes(model, new_class_names=names, freeze_old=True)
        assert np.array_equal(outputs(model)[:, :old], previous)  # before training
        layer = model.get_layer("predictions")
        assert isinstance(layer, ColumnBlockDense)
        assert layer.trainable_columns == [False] * old + [True] * len(names)

        kernel, bias = kernel_and_bias(model)
        fit_one_step(model)
        trained_kernel, trained_bias = kernel_and_bias(model)
        assert np.array_equal(trained_kernel[:, :old], kernel[:, :old])
        assert np.array_equal(trained_bias[:old], bias[:old])
        assert not np.array_equal(trained_kernel[:, old:], kernel[:, old:])
    assert tt.class_info(model).class_names == NAMES + sum(STEPS, ())


def test_history_class_steps_and_evaluate_have_one_entry_per_expansion(grown):
    history = tt.class_info(grown).history
    assert [entry["operation"] for entry in history] == ["expand_classes"] * 3
    assert [tuple(entry["added"]) for entry in history] == list(STEPS)
    assert [entry["old_classes"] for entry in history] == [4, 6, 7]
    assert all(entry["freeze_old"] for entry in history)
    steps = class_steps(tt.class_info(grown))
    assert steps == {"original": NAMES, "step 1": STEPS[0], "step 2": STEPS[1], "step 3": STEPS[2]}

    labels = np.array([0, 3, 4, 5, 6, 7, 8, 1])  # every step has images
    report = tt.evaluate(grown, (X, labels))
    predicted = outputs(grown).argmax(axis=1)
    index = {name: i for i, name in enumerate(tt.class_info(grown).class_names)}
    expected = {}
    for step, names in steps.items():
        in_step = np.isin(labels, [index[name] for name in names])
        expected[step] = float(np.mean(predicted[in_step] == labels[in_step]))
    assert report.per_step == expected
    printed = [line.rsplit(None, 1) for line in str(report).splitlines()]
    rows = {key.strip(): value for key, value in printed}
    for step, value in expected.items():  # one printed line per step
        assert rows[f"{step}: top1"] == f"{value:.4f}"


# --- refine -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, refined_classes",
    [("plain", ["b", "d"]), ("branched", ["a", "f"])],
)
def test_refine_classes_trains_only_the_named_columns(base, branched, which, refined_classes):
    model = {"plain": base, "branched": branched}[which]
    names = tt.class_info(model).class_names
    chosen = [names.index(name) for name in refined_classes]
    others = [i for i in range(len(names)) if i not in chosen]
    refined = tt.refine_classes(model, classes=refined_classes)
    assert tt.class_info(refined).history[-1] == {
        "operation": "refine_classes",
        "classes": refined_classes,
    }
    assert tt.class_info(refined).class_names == names
    before = outputs(refined)
    assert np.array_equal(before, outputs(model))
    located = locate_classifier(refined)
    flags = [flag for layer in located.layers for flag in trainable_columns(layer)]
    assert flags == [i in chosen for i in range(len(names))]
    trainable = {variable.path.split("/")[0] for variable in refined.trainable_weights}
    assert trainable <= {layer.name for layer in located.layers}

    fit_one_step(refined)
    after = outputs(refined)
    assert np.array_equal(after[:, others], before[:, others])
    for column in chosen:
        assert not np.array_equal(after[:, column], before[:, column])


# --- class branches ---------------------------------------------------------------------------


def test_separate_branch_keeps_old_outputs_while_the_whole_head_trains(base):
    model = tt.expand_classes(base, new_class_names=["e", "f"], separate_branch=True)
    layers = {layer.name: layer for layer in model.layers}
    assert type(layers["branch_1_head_dense_1"]) is keras.layers.Dense
    assert type(layers["branch_1_predictions"]) is keras.layers.Dense
    assert isinstance(layers["class_logits"], keras.layers.Concatenate)
    assert model.outputs[0]._keras_history.operation is layers["class_logits"]
    for name in ("head_dense_1", "predictions"):  # the old head is frozen
        assert isinstance(layers[name], ColumnBlockDense)
        assert layers[name].trainable_blocks == [False]
    # the branch starts as a copy of the old hidden layer
    for copy, original in zip(
        layers["branch_1_head_dense_1"].get_weights(), layers["head_dense_1"].get_weights()
    ):
        assert np.array_equal(copy, original)
    entry = tt.class_info(model).history[-1]
    assert entry["operation"] == "expand_classes" and entry["separate_branch"]
    assert entry["added"] == ["e", "f"]
    assert tt.class_info(model).class_names == (*NAMES, "e", "f")

    before = outputs(model)
    assert np.array_equal(before[:, :4], outputs(base))
    tt.training.set_trainable(model, "head")
    fit_one_step(model)
    after = outputs(model)
    assert np.array_equal(after[:, :4], before[:, :4])
    for column in (4, 5):
        assert not np.array_equal(after[:, column], before[:, column])


def test_cost_of_a_separate_branch_is_one_copy_of_the_hidden_layer(base):
    plain = tt.expand_classes(base, new_class_names=["n1", "n2"])
    branched = tt.expand_classes(base, new_class_names=["n1", "n2"], separate_branch=True)
    hidden = base.get_layer("head_dense_1")
    copy_parameters = hidden.count_params()
    plain_cost, branch_cost = tt.model_cost(plain), tt.model_cost(branched)
    assert branch_cost.parameters - plain_cost.parameters == copy_parameters
    # The copy runs one more (features x units) matmul, bias add included.
    inputs, units = hidden.kernel.shape
    assert branch_cost.flops - plain_cost.flops == 2 * inputs * units + units
    change = branch_cost.relative_to(plain_cost)
    assert change["parameters"] == pytest.approx(copy_parameters / plain_cost.parameters)
    table = tt.cost_table({"plain": plain_cost, "separate branch": branch_cost})
    assert "(reference)" in table and f"+{100 * change['parameters']:.2f}%" in table


def test_separate_branch_refuses_a_head_without_a_hidden_layer():
    model = conv_classifier(3, hidden_units=())
    with pytest.raises(ValueError, match="no hidden Dense layer before 'predictions'"):
        tt.expand_classes(model, 1, separate_branch=True)


def test_expanding_a_branched_model_again_grows_its_last_branch(branched):
    before = outputs(branched)
    grown = tt.expand_classes(branched, new_class_names=["h", "i"])
    names = [layer.name for layer in grown.layers]
    assert "branch_2_predictions" not in names
    assert grown.get_layer("branch_1_predictions").units == 5
    assert np.array_equal(outputs(grown)[:, :7], before)
    assert tt.class_info(grown).class_names[-2:] == ("h", "i")
    assert class_steps(tt.class_info(grown)) == {
        "original": NAMES,
        "step 1": ("e", "f", "g"),
        "step 2": ("h", "i"),
    }
    frozen = tt.expand_classes(branched, new_class_names=["h", "i"], freeze_old=True)
    assert frozen.get_layer("predictions").trainable_columns == [False] * 4
    assert frozen.get_layer("branch_1_predictions").trainable_columns == [False] * 3 + [True] * 2


# --- drop and reorder -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, columns, ids",
    [
        (lambda m: tt.drop_classes(m, classes=["b"]), [0, 2, 3], (0, 2, 3)),
        (lambda m: tt.reorder_classes(m, ["d", "a", "c", "b"]), [3, 0, 2, 1], (3, 0, 2, 1)),
        (
            lambda m: tt.reorder_classes(m, tt.LabelMap(["c", "a", "d", "b"], [5, 17, 42, 90])),
            [2, 0, 3, 1],
            (5, 17, 42, 90),
        ),
    ],
    ids=["drop", "reorder_names", "reorder_sparse_label_map"],
)
def test_drop_and_reorder_keep_the_remaining_outputs_bit_exact(base, operation, columns, ids):
    model = operation(base)
    assert np.array_equal(outputs(model), outputs(base)[:, columns])
    info = tt.class_info(model)
    assert info.class_names == tuple(NAMES[c] for c in columns)
    assert info.class_ids == ids
    assert info.history[-1]["operation"] in ("drop_classes", "reorder_classes")


def test_drop_and_reorder_within_the_branches_of_a_branched_model(branched):
    before = outputs(branched)  # columns a b c d | e f g
    dropped = tt.drop_classes(branched, ["a", "f"])
    assert np.array_equal(outputs(dropped), before[:, [1, 2, 3, 4, 6]])
    assert tt.class_info(dropped).class_names == ("b", "c", "d", "e", "g")
    assert dropped.get_layer("branch_1_predictions").units == 2
    reordered = tt.reorder_classes(branched, ["d", "c", "b", "a", "g", "e", "f"])
    assert np.array_equal(outputs(reordered), before[:, [3, 2, 1, 0, 6, 4, 5]])
    with pytest.raises(ValueError, match="cannot move classes between the class branches"):
        tt.reorder_classes(branched, ["e", "f", "g", "a", "b", "c", "d"])
    with pytest.raises(ValueError, match="leave class branch 'branch_1_predictions'"):
        tt.drop_classes(branched, ["e", "f", "g"])


def test_drop_after_a_frozen_expansion_keeps_the_remaining_old_classes_frozen(base):
    expanded = tt.expand_classes(base, new_class_names=["e", "f"], freeze_old=True)
    dropped = tt.drop_classes(expanded, classes=["b", "f"])
    assert np.array_equal(outputs(dropped), outputs(expanded)[:, [0, 2, 3, 4]])
    layer = dropped.get_layer("predictions")
    assert isinstance(layer, ColumnBlockDense)
    assert layer.trainable_columns == [False, False, False, True]
    info = tt.class_info(dropped)
    assert info.class_names == ("a", "c", "d", "e")
    assert info.history[-1] == {"operation": "drop_classes", "dropped": ["b", "f"]}
    assert class_steps(info) == {"original": ("a", "c", "d"), "step 1": ("e",)}
    reordered = tt.reorder_classes(dropped, ["e", "a", "c", "d"])  # frozen flags follow
    assert reordered.get_layer("predictions").trainable_columns == [True, False, False, False]


def test_class_selection_errors_name_the_problem(base):
    with pytest.raises(ValueError, match=r"drop_classes: unknown classes \['zebra'\]"):
        tt.drop_classes(base, classes=["b", "zebra"])
    with pytest.raises(ValueError, match=r"reorder_classes: unknown classes \['zebra'\]"):
        tt.reorder_classes(base, ["a", "b", "c", "zebra"])
    with pytest.raises(ValueError, match=r"refine_classes: unknown classes \['zebra'\]"):
        tt.refine_classes(base, classes=["zebra"])
    with pytest.raises(ValueError, match="drop_classes would remove every class"):
        tt.drop_classes(base, classes=list(NAMES))
    with pytest.raises(TypeError, match="drop_classes takes a list of classes; got 'b'"):
        tt.drop_classes(base, classes="b")
    with pytest.raises(TypeError, match="reorder_classes takes a list of classes; got 'dcba'"):
        tt.reorder_classes(base, "dcba")
    with pytest.raises(ValueError, match=r"needs every class .* once; missing \['d'\]"):
        tt.reorder_classes(base, ["c", "b", "a"])
    with pytest.raises(ValueError, match=r"missing \['d'\]"):
        tt.reorder_classes(base, tt.LabelMap(["a", "b", "c"], [1, 2, 3]))
    with pytest.raises(ValueError, match=r"classes given more than once: \['a'\]"):
        tt.reorder_classes(base, ["a", "a", "b", "c", "d"])


# TF's CPU matmul takes another kernel (GEMV) for a one-column weight matrix than for a wider
# one, so a classification layer that narrows to one class or widens from one keeps its logits
# to float rounding only (documented in the README's Class lifecycle section).
ONE_COLUMN_TOLERANCE = 1e-6


@pytest.mark.parametrize(
    "which, dropped, columns",
    [("plain", ["a", "b", "c"], [3]), ("branched", ["e", "f"], [0, 1, 2, 3, 6])],
    ids=["plain_model_left_with_one_class", "branch_left_with_one_class"],
)
def test_dropping_down_to_a_one_column_layer_keeps_the_logits(
    base, branched, which, dropped, columns
):
    model = {"plain": base, "branched": branched}[which]
    np.testing.assert_allclose(
        outputs(tt.drop_classes(model, dropped)),
        outputs(model)[:, columns],
        rtol=0,
        atol=ONE_COLUMN_TOLERANCE,
    )


def test_expanding_a_one_class_model_keeps_its_logits():
    one = conv_classifier(1, class_names=["a"])
    expanded = tt.expand_classes(one, new_class_names=["b"])
    np.testing.assert_allclose(
        outputs(expanded)[:, :1], outputs(one), rtol=0, atol=ONE_COLUMN_TOLERANCE
    )


# --- merge heads ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heads():
    """Three classifiers on the same mobilenet weights: `b` has its own hidden layer, `c` the
    same hidden layer as `a` (and a class name `a` has too)."""
    keras.utils.set_random_seed(2)
    a = tiny_classifier(3, class_names=["cat", "dog", "owl"])
    b = tiny_classifier(2, class_names=["kite", "drone"])
    c = tiny_classifier(2, class_names=["dog", "kite"])
    for other in (b, c):
        tt.training.find_backbone(other).set_weights(tt.training.find_backbone(a).get_weights())
    c.get_layer("head_dense_1").set_weights(a.get_layer("head_dense_1").get_weights())
    return a, b, c


def test_merge_heads_with_different_hidden_layers_makes_a_branch(heads):
    a, b, _ = heads
    merged = tt.merge_heads(a, b)
    names = [layer.name for layer in merged.layers]
    assert {"branch_1_head_dense_1", "branch_1_predictions", "class_logits"} <= set(names)
    assert np.array_equal(outputs(merged), np.concatenate([outputs(a), outputs(b)], axis=1))
    info = tt.class_info(merged)
    assert info.class_names == ("cat", "dog", "owl", "kite", "drone")
    assert info.history[-1]["operation"] == "merge_heads"
    assert class_steps(info) == {"original": ("cat", "dog", "owl"), "step 1": ("kite", "drone")}


def test_merge_heads_with_identical_hidden_layers_joins_one_dense_layer_after_rename(heads):
    a, _, c = heads
    with pytest.raises(ValueError, match=r"Both models have classes \['dog'\]; pass rename="):
        tt.merge_heads(a, c)
    merged = tt.merge_heads(a, c, rename={"dog": "hotdog"})
    assert "class_logits" not in [layer.name for layer in merged.layers]
    layer = merged.get_layer("predictions")
    assert type(layer) is keras.layers.Dense
    kernel = np.concatenate(
        [a.get_layer("predictions").kernel, c.get_layer("predictions").kernel], 1
    )
    assert np.array_equal(keras.ops.convert_to_numpy(layer.kernel), kernel)
    assert np.array_equal(outputs(merged), np.concatenate([outputs(a), outputs(c)], axis=1))
    assert tt.class_info(merged).class_names == ("cat", "dog", "owl", "hotdog", "kite")


def test_merge_heads_names_the_backbone_weight_that_differs(heads):
    a, b, _ = heads
    other = tiny_classifier(2, class_names=["kite", "drone"])
    backbone = tt.training.find_backbone(other)
    backbone.set_weights(tt.training.find_backbone(a).get_weights())
    statistic = [w for w in backbone.weights if w.path.endswith("moving_mean")][5]
    statistic.assign(statistic + 0.5)
    with pytest.raises(ValueError, match="differs between model_a") as error:
        tt.merge_heads(a, other)
    assert repr(statistic.path) in str(error.value)
    assert "identical backbone weights" in str(error.value)


# --- saving, loading and export ---------------------------------------------------------------

OPERATIONS = {
    "three_frozen_expansions": lambda base, branched, heads: tt.expand_classes(
        tt.expand_classes(base, new_class_names=["e", "f"], freeze_old=True),
        new_class_names=["g"],
        freeze_old=True,
    ),
    "refined_branch": lambda base, branched, heads: tt.refine_classes(branched, ["b", "f"]),
    "separate_branch": lambda base, branched, heads: branched,
    "dropped_frozen": lambda base, branched, heads: tt.drop_classes(
        tt.expand_classes(base, new_class_names=["e", "f"], freeze_old=True), ["a"]
    ),
    "reordered_label_map": lambda base, branched, heads: tt.reorder_classes(
        base, tt.LabelMap(["d", "c", "b", "a"], [90, 7, 3, 1])
    ),
    "merged_heads": lambda base, branched, heads: tt.merge_heads(heads[0], heads[1]),
}
EXPORTED = ("refined_branch", "separate_branch")


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_save_safe_load_and_export_reproduce_the_model(tmp_path, base, branched, heads, operation):
    model = OPERATIONS[operation](base, branched, heads)
    model.save(tmp_path / "m.keras")
    loaded = tt.load_model(tmp_path / "m.keras")  # safe_mode=True
    assert np.array_equal(outputs(loaded), outputs(model))
    assert tt.class_info(loaded) == tt.class_info(model)  # names, ids and history
    assert len(loaded.trainable_weights) == len(model.trainable_weights)
    for layer in model.layers:
        if isinstance(layer, ColumnBlockDense):
            assert loaded.get_layer(layer.name).trainable_columns == layer.trainable_columns
    if operation not in EXPORTED:
        return
    path = tt.export_saved_model(model, tmp_path / "export", warmup=False)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    served = serve(images=tf.constant(X[:1]))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(X[:1], training=False)))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=0, atol=1e-6)
    names = tt.class_info(model).class_names
    assert served["labels"].numpy()[0, 0].decode() == names[int(expected.argmax())]

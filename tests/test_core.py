"""core/: the shims to Keras internals (each against the installed Keras), the atomic
writer, lazy names, the registry of serializable classes, and a light import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.core import compat, graph, io, saving

PACKAGE = Path(tt.__file__).parent


def test_installed_keras_is_one_the_shims_were_tested_for():
    assert compat.keras_is_tested(), keras.version()


def test_fresh_layer_names_restarts_the_automatic_counter():
    keras.layers.Activation("relu")  # advances the session's counter
    with compat.fresh_layer_names():
        first = keras.layers.Activation("relu").name
    with compat.fresh_layer_names():
        second = keras.layers.Activation("relu").name
    assert first == second == "activation"
    assert keras.layers.Activation("relu").name != "activation"  # the session's counter is back


def test_wrapped_get_file_sees_the_calls_keras_applications_make(tmp_path):
    seen = []

    def recording(original):
        def get_file(fname=None, origin=None, *args, **kwargs):
            seen.append(fname)
            raise OSError("offline")

        return get_file

    with compat.wrapped_get_file(recording), pytest.raises(OSError, match="offline"):
        keras.applications.MobileNetV3Small(
            input_shape=(32, 32, 3), include_top=False, weights="imagenet"
        )
    assert seen and seen[0].endswith(".h5")
    assert compat.keras_home()


def test_variable_key_tells_the_optimizer_s_variables_apart():
    optimizer = keras.optimizers.SGD()
    a, b = keras.Variable(np.zeros(2)), keras.Variable(np.zeros(2))
    assert compat.variable_key(optimizer, a) != compat.variable_key(optimizer, b)
    assert compat.variable_key(optimizer, a) == compat.variable_key(optimizer, a)


def test_frozen_graph_and_flop_statistics():
    import tensorflow as tf

    dense = keras.layers.Dense(3)
    function = tf.function(lambda x: dense(x)).get_concrete_function(tf.TensorSpec((1, 4)))
    graph_ = compat.frozen_graph(function)
    matmul = [op for op in graph_.get_operations() if op.type == "MatMul"][0]
    assert compat.operation_flops(graph_, matmul.node_def).value == 2 * 4 * 3


def test_silenced_deprecations_turns_tensorflow_s_warnings_off_inside_the_block_only():
    from tensorflow.python.util import deprecation

    with compat.silenced_deprecations():
        assert deprecation._PRINT_DEPRECATION_WARNINGS is False
    assert deprecation._PRINT_DEPRECATION_WARNINGS is True


def test_multi_worker_patch_applies_to_the_tested_keras():
    assert compat.patch_keras_for_multi_worker() is True
    assert compat.patch_keras_for_multi_worker() is True  # once


def test_graph_helpers_walk_a_functional_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="predictions")(hidden)
    model = keras.Model(inputs, outputs)
    assert graph.producer(model.outputs[0]).name == "predictions"
    assert [layer.name for layer in graph.input_layers(model.get_layer("predictions"))] == [
        "hidden"
    ]
    assert [layer.name for layer in graph.all_input_layers(model.get_layer("hidden"))] == [
        model.layers[0].name
    ]
    outer = keras.Sequential([model])
    nested = graph.all_layers(outer)
    assert nested[0] is model  # each parent before its children
    assert {layer.name for layer in model.layers if layer.weights} <= {
        child.name for child in nested
    }


def test_write_atomically_replaces_or_leaves_the_old_content(tmp_path):
    target = tmp_path / "report.txt"
    io.write_atomically(target, lambda temporary: temporary.write_text("one"))
    with pytest.raises(RuntimeError, match="killed"):

        def failing(temporary):
            temporary.write_text("half")
            raise RuntimeError("killed")

        io.write_atomically(target, failing)
    assert target.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]
    io.write_atomically(target, lambda t: t.write_text("two"), previous=tmp_path / "old.txt")
    assert (target.read_text(), (tmp_path / "old.txt").read_text()) == ("two", "one")
    with pytest.raises(FileExistsError, match="never overwritten"):
        io.write_atomically(target, lambda t: t.write_text("three"), replace=False)
    assert target.read_text() == "two"


def test_write_atomically_writes_directories(tmp_path):
    def write(temporary):
        temporary.mkdir()
        (temporary / "saved_model.pb").write_bytes(b"x")

    path = io.write_atomically(tmp_path / "1", write, replace=False)
    assert (path / "saved_model.pb").read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["1"]


def test_every_registered_class_is_in_the_loading_table():
    registered = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and any(
                "register_keras_serializable" in ast.unparse(d) for d in node.decorator_list
            ):
                registered[node.name] = module
    assert registered == saving.REGISTERED_IN


def test_loading_a_classifier_imports_only_what_it_names():
    modules = saving.import_registering_modules(tt.demo.base_model_path())
    assert modules == ["tfx_transfer.core.metadata"]


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )


def test_import_is_light_and_names_load_on_first_use():
    result = _fresh(
        "import sys, tfx_transfer as tt\n"
        "heavy = ('tensorflow', 'keras', 'keras_cv', 'keras_tuner', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(callable(tt.build_classifier), tt.demo.__name__, tt.data.shapes.__name__)\n"
        "print(sorted(m for m in ('keras_cv', 'keras_tuner') if m in sys.modules))\n"
        "import keras\n"
        "tt.register_keras_objects()\n"
        "print(keras.saving.get_registered_object('tfx_transfer>TransferRetinaNet').__name__)\n"
    )
    assert result.stdout.splitlines() == [
        "[]",
        "True tfx_transfer.app.demo tfx_transfer.data.shapes",
        "[]",
        "TransferRetinaNet",
    ]


def test_quick_cli_commands_do_not_import_tensorflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {backbone: resnet50}\nbogus: 1\n")
    result = _fresh(
        "import sys\n"
        "from tfx_transfer.app.cli import main\n"
        f"codes = [main(['backbones']), main(['--version']), main(['train', {str(bad)!r}])]\n"
        "print(codes, 'tensorflow' in sys.modules)\n"
    )
    assert result.stdout.splitlines()[-1] == "[0, 0, 2] False"
    assert "resnet50" in result.stdout
    assert "line 2 (bogus): unknown key 'bogus'" in result.stderr


def test_commands_that_need_tensorflow_start_without_its_noise():
    result = _fresh(
        "from tfx_transfer.app.cli import quiet_tensorflow\n"
        "quiet_tensorflow()\n"
        "import tensorflow as tf\n"
        "print(tf.constant(2.0).numpy())\n"
    )
    assert result.stdout.strip() == "2.0"
    assert result.stderr == ""

"""`tfx-transfer expand --separate-branch | refine | drop | reorder | merge` on the shipped model."""

import json

import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.app.cli import main
from tfx_transfer.data import shapes


@pytest.fixture(scope="module")
def base():
    return tt.demo.base_model()


@pytest.fixture(scope="module")
def images(base):
    x, _ = shapes.arrays(shapes.BASE_CLASSES[:2], 2, split="test", image_size=base.input_shape[1])
    return x.astype("float32")


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_class_operations_write_models_whose_kept_outputs_are_exact(tmp_path, capsys, base, images):
    expected = base.predict(images, verbose=0)
    names = tt.class_info(base).class_names

    status, out, _ = run(
        capsys,
        "expand",
        "base",
        tmp_path / "b.keras",
        "--new-classes",
        "kite,drone",
        "--separate-branch",
    )
    assert status == 0
    assert "92 classes (kernels predictions (1024, 90), branch_1_predictions (1024, 2))" in out
    branched = tt.load_model(tmp_path / "b.keras")
    assert np.array_equal(branched.predict(images, verbose=0)[:, :90], expected)

    status, out, _ = run(capsys, "refine", "base", tmp_path / "r.keras", "--classes", names[3])
    assert status == 0 and "90 classes (kernel (1024, 90))" in out
    refined = tt.load_model(tmp_path / "r.keras")
    assert [w.path for w in refined.trainable_weights] == [
        "predictions/kernel_1",
        "predictions/bias_1",
    ]

    status, out, _ = run(capsys, "drop", "base", tmp_path / "d.keras", "--classes", names[0])
    assert status == 0 and "89 classes" in out
    dropped = tt.load_model(tmp_path / "d.keras")
    assert tt.class_info(dropped).class_names == names[1:]
    assert np.array_equal(dropped.predict(images, verbose=0), expected[:, 1:])

    label_map = tmp_path / "labels.json"
    order = list(reversed(names))
    label_map.write_text(
        json.dumps({"classes": [{"id": 100 + i, "name": n} for i, n in enumerate(order)]})
    )
    status, _, _ = run(capsys, "reorder", "base", tmp_path / "o.keras", "--label-map", label_map)
    assert status == 0
    reordered = tt.load_model(tmp_path / "o.keras")
    assert tt.class_info(reordered).class_ids == tuple(range(100, 190))
    assert np.array_equal(reordered.predict(images, verbose=0), expected[:, ::-1])

    # Same backbone and hidden layer: one plain Dense with both heads' columns.
    renames = ",".join(f"{n}={n}_b" for n in names[1:])
    status, out, _ = run(
        capsys, "merge", "base", tmp_path / "d.keras", tmp_path / "m.keras", "--rename", renames
    )
    assert status == 0 and "179 classes (kernel (1024, 179))" in out
    merged = tt.load_model(tmp_path / "m.keras")
    assert tt.class_info(merged).class_names[90:92] == (f"{names[1]}_b", f"{names[2]}_b")
    assert np.array_equal(merged.predict(images, verbose=0), np.hstack([expected, expected[:, 1:]]))


def test_class_operation_mistakes_end_in_one_line_errors(tmp_path, capsys):
    status, _, err = run(capsys, "drop", "base", tmp_path / "x.keras", "--classes", "unicorn")
    assert status == 1 and "error: drop_classes: unknown classes ['unicorn']" in err
    status, _, err = run(capsys, "merge", "base", "base", tmp_path / "x.keras")
    assert status == 1 and "pass rename=" in err
    status, _, err = run(
        capsys, "merge", "base", "base", tmp_path / "x.keras", "--rename", "red_circle"
    )
    assert status == 1 and "--rename takes old=new pairs; got 'red_circle'" in err
    assert not (tmp_path / "x.keras").exists()

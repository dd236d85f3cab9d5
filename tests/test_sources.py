"""Manifests (CSV / JSON lines), arrays and stratified splits."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.data import UnusableImagesError


def _png(value: int) -> bytes:
    return tf.io.encode_png(np.full((12, 12, 3), value, np.uint8)).numpy()


@pytest.fixture
def image_dir(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        (images / f"{i}.png").write_bytes(_png(40 * i))
    return tmp_path


def _collect(dataset):
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_csv_manifest_with_relative_paths_header_and_label_map(image_dir):
    (image_dir / "train.csv").write_text(
        "path,label\nimages/0.png,cat\nimages/1.png,dog\nimages/2.png,cat\n"
    )
    data = tt.data.manifest(image_dir / "train.csv", image_size=8, batch_size=8)
    assert data.class_names == ["cat", "dog"] and data.class_counts == {"cat": 2, "dog": 1}
    images, labels = _collect(data.train)
    assert images.shape == (3, 8, 8, 3) and sorted(labels.tolist()) == [0, 0, 1]
    # a label map fixes the order; labels outside it name the file and line
    tt.LabelMap(("dog", "cat", "owl"), (5, 7, 9)).save(image_dir / "labels.json")
    data = tt.data.manifest(
        image_dir / "train.csv", image_size=8, class_names=image_dir / "labels.json"
    )
    assert data.class_names == ["dog", "cat", "owl"]
    with pytest.raises(ValueError, match=r"train.csv:3: label 'dog' is not one of the classes"):
        tt.data.manifest(image_dir / "train.csv", image_size=8, class_names=["cat"])


def test_json_lines_multi_label_manifest_gives_multi_hot_labels(image_dir):
    lines = [
        {"path": "images/0.png", "label": "cat"},
        {"path": "images/1.png", "labels": ["cat", "dog"]},
        {"path": "images/2.png", "label": "dog|owl"},
    ]
    (image_dir / "train.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    data = tt.data.manifest(image_dir / "train.jsonl", image_size=8, batch_size=8)
    assert data.multi_label and data.class_names == ["cat", "dog", "owl"]
    assert data.class_counts == {"cat": 2, "dog": 2, "owl": 1}
    _, labels = _collect(data.train)
    assert labels.dtype == np.float32
    assert sorted(map(tuple, labels.tolist())) == [(0, 1, 1), (1, 0, 0), (1, 1, 0)]
    (image_dir / "bad.jsonl").write_text(
        '{"path": "images/0.png", "label": "cat"}\n{"file": "x"}\n'
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected"):
        tt.data.manifest(image_dir / "bad.jsonl", image_size=8)


def test_manifest_lines_pointing_to_missing_or_broken_files(image_dir):
    (image_dir / "images" / "broken.png").write_bytes(_png(5)[:40])
    (image_dir / "train.csv").write_text(
        "images/0.png,cat\nimages/nowhere.png,cat\nimages/broken.png,dog\nimages/1.png,dog\n"
    )
    with pytest.warns(UserWarning, match="Skipped 2 of 4 files"):
        data = tt.data.manifest(image_dir / "train.csv", image_size=8)
    reasons = dict(data.skipped)
    assert reasons[str(image_dir / "images" / "nowhere.png")] == "missing file (manifest line 2)"
    assert reasons[str(image_dir / "images" / "broken.png")].startswith("corrupt image")
    with pytest.raises(UnusableImagesError, match="nowhere.png: missing file"):
        tt.data.manifest(image_dir / "train.csv", image_size=8, strict=True)


def test_arrays_source_and_stratified_deterministic_splits():
    labels = np.repeat([0, 1, 2], [20, 40, 60])
    images = np.arange(120, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 4, 4, 3), np.float32
    )
    data = tt.data.arrays(images, labels, validation_split=0.25, test_split=0.25, seed=3)
    assert data.class_names == ["class_0", "class_1", "class_2"]
    splits = {name: _collect(getattr(data, name)) for name in ("train", "validation", "test")}
    for name, expected in (
        ("validation", [5, 10, 15]),
        ("test", [5, 10, 15]),
        ("train", [10, 20, 30]),
    ):
        assert np.bincount(splits[name][1]).tolist() == expected
    ids = {name: set(x[:, 0, 0, 0].astype(int)) for name, (x, _) in splits.items()}
    assert not ids["train"] & ids["validation"] and not ids["validation"] & ids["test"]
    assert set().union(*ids.values()) == set(range(120))
    again = tt.data.arrays(images, labels, validation_split=0.25, test_split=0.25, seed=3)
    assert set(_collect(again.validation)[0][:, 0, 0, 0].astype(int)) == ids["validation"]
    other = tt.data.arrays(images, labels, validation_split=0.25, test_split=0.25, seed=4)
    assert set(_collect(other.validation)[0][:, 0, 0, 0].astype(int)) != ids["validation"]
    with pytest.raises(ValueError, match="must leave images to train on"):
        tt.data.arrays(images, labels, validation_split=0.5, test_split=0.5)
    with pytest.raises(ValueError, match="Got 120 images but 3 labels"):
        tt.data.arrays(images, labels[:3])

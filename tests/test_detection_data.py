"""Detection loaders: COCO JSON and VOC XML files the tests write, TFDS mock data,
and the embedded synthetic shapes."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tensorflow_datasets

import tfx_transfer.data.detection as detection
from tfx_transfer.core.label_maps import COCO_IDS
from tfx_transfer.data import shapes, tfds_prepare
from tfx_transfer.data.detection import AnnotationError

pytestmark = pytest.mark.filterwarnings("ignore:Skipped .* unusable annotations")


def _png(value: int, height: int, width: int) -> bytes:
    return tf.io.encode_png(np.full((height, width, 3), value, np.uint8)).numpy()


def _by_image(dataset):
    """{mean pixel value: (boxes, classes)} over every image of `dataset`; the
    test images are uniform, so their value names them."""
    found = {}
    for batch in dataset:
        for image, boxes, classes in zip(
            batch["images"].numpy(),
            batch["bounding_boxes"]["boxes"].numpy(),
            batch["bounding_boxes"]["classes"].numpy(),
        ):
            found[int(round(image.mean()))] = (boxes, classes)
    return found


@pytest.fixture
def coco_files(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(_png(10, 40, 80))  # height 40, width 80
    (images / "b.png").write_bytes(_png(20, 64, 64))
    (images / "c.png").write_bytes(_png(30, 16, 16))  # no boxes
    document = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 80, "height": 40},
            {"id": 8, "file_name": "b.png", "width": 64, "height": 64},
            {"id": 9, "file_name": "c.png", "width": 16, "height": 16},
        ],
        # sparse ids, not in id order
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
        ],
        "annotations": [
            {"id": 101, "image_id": 7, "category_id": 90, "bbox": [8, 4, 16, 20], "iscrowd": 0},
            {"id": 102, "image_id": 8, "category_id": 1, "bbox": [0, 32, 32, 16], "iscrowd": 0},
            {"id": 103, "image_id": 8, "category_id": 3, "bbox": [0, 0, 64, 64], "iscrowd": 1},
            {"id": 104, "image_id": 8, "category_id": 3, "bbox": [16, 0, 8, 8]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    return path, images, document


def test_coco_sparse_ids_become_indices_and_boxes_follow_the_resize(coco_files):
    path, images, _ = coco_files
    data = detection.coco_detection(path, images, image_size=(32, 16), batch_size=2)
    assert data.class_names == ["person", "car", "toothbrush"]
    assert data.class_ids == [1, 3, 90]
    assert data.label_map.to_indices([90]).tolist() == [2]
    assert data.image_counts == {"train": 3, "validation": 0, "test": 0}
    # the crowd box is ignored, not counted and not skipped
    assert data.box_counts == {"person": 1, "car": 1, "toothbrush": 1}
    assert data.skipped == [] and data.clipped_boxes == 0 and data.max_boxes == 2
    batch = next(iter(data.train))
    assert batch["images"].shape == (2, 32, 16, 3) and batch["images"].dtype == tf.float32
    assert batch["bounding_boxes"]["boxes"].shape == (2, 2, 4)
    assert batch["bounding_boxes"]["classes"].dtype == tf.float32
    found = _by_image(data.train)
    # a.png 80x40 -> 16x32: x scaled by 0.2, y by 0.8
    np.testing.assert_allclose(found[10][0], [[1.6, 3.2, 3.2, 16.0], [-1, -1, -1, -1]], atol=1e-5)
    np.testing.assert_array_equal(found[10][1], [2, -1])
    # b.png 64x64 -> 16x32: x scaled by 0.25, y by 0.5; the crowd box is gone
    np.testing.assert_allclose(found[20][0], [[0, 16, 8, 8], [4, 0, 2, 4]], atol=1e-5)
    np.testing.assert_array_equal(found[20][1], [0, 1])
    # an image without boxes is kept, padded with -1 only (no NaN)
    np.testing.assert_array_equal(found[30][0], -np.ones((2, 4)))
    np.testing.assert_array_equal(found[30][1], [-1, -1])


def test_coco_other_box_formats_and_splits(coco_files):
    path, images, _ = coco_files
    data = detection.coco_detection(
        path, images, image_size=32, bounding_box_format="rel_yxyx", validation_split=0.34, seed=3
    )
    assert data.image_counts == {"train": 2, "validation": 1, "test": 0}
    found = {**_by_image(data.train), **_by_image(data.validation)}
    assert sorted(found) == [10, 20, 30]
    # a.png: bbox [8, 4, 16, 20] of 80x40 -> relative [ymin, xmin, ymax, xmax]
    np.testing.assert_allclose(found[10][0][0], [0.1, 0.1, 0.6, 0.3], atol=1e-6)


def _broken_coco(tmp_path, coco_files):
    path, images, document = coco_files
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    document["images"] += [
        {"id": 10, "file_name": "missing.png", "width": 16, "height": 16},
        {"id": 11, "file_name": "corrupt.png", "width": 16, "height": 16},
    ]
    document["annotations"] += [
        {"id": 201, "image_id": 7, "category_id": 5, "bbox": [0, 0, 4, 4]},
        {"id": 202, "image_id": 7, "category_id": 1, "bbox": [10, 10, -3, 4]},
        {"id": 203, "image_id": 7, "category_id": 1, "bbox": [100, 5, 10, 10]},
        {"id": 204, "image_id": 7, "category_id": 1, "bbox": [70, 30, 20, 20]},  # partly outside
        {"id": 205, "image_id": 99, "category_id": 1, "bbox": [0, 0, 4, 4]},
        {"id": 206, "image_id": 10, "category_id": 1, "bbox": [0, 0, 4, 4]},
        {"id": 207, "image_id": 11, "category_id": 3, "bbox": [0, 0, 4, 4]},
    ]
    path.write_text(json.dumps(document))
    return path, images


def test_coco_broken_annotations_are_skipped_and_named(tmp_path, coco_files):
    path, images = _broken_coco(tmp_path, coco_files)
    with pytest.warns(UserWarning, match="Skipped 6 unusable annotations or images of 5 images"):
        data = detection.coco_detection(path, images, image_size=(40, 80), batch_size=8)
    skipped = dict(data.skipped)
    assert len(data.skipped) == 6
    assert skipped[f"{path}: annotation 201 (image 'a.png')"] == (
        "category_id 5 is not in 'categories' (ids [1, 3, 90])"
    )
    assert skipped[f"{path}: annotation 202 (image 'a.png')"] == (
        "bbox [10, 10, -3, 4] has non-positive width or height"
    )
    assert skipped[f"{path}: annotation 203 (image 'a.png')"] == (
        "bbox [100, 5, 10, 10] is wholly outside the 80x40 image"
    )
    assert skipped[f"{path}: annotation 205"] == "image_id 99 is not in 'images'"
    assert skipped[str(images / "missing.png")] == (
        "missing file (image id 10 in instances.json, annotations 206)"
    )
    assert skipped[str(images / "corrupt.png")].startswith("corrupt image (")
    assert skipped[str(images / "corrupt.png")].endswith(
        "(image id 11 in instances.json, annotations 207)"
    )
    assert data.clipped_boxes == 1
    assert data.image_counts["train"] == 3
    assert data.box_counts == {"person": 2, "car": 1, "toothbrush": 1}
    found = _by_image(data.train)
    # image size unchanged: the clipped box ends at the image border
    np.testing.assert_allclose(found[10][0][:2], [[8, 4, 16, 20], [70, 30, 10, 10]])
    np.testing.assert_array_equal(found[10][1][:2], [2, 0])


def test_coco_strict_mode_raises_naming_file_and_annotation(tmp_path, coco_files):
    path, images = _broken_coco(tmp_path, coco_files)
    with pytest.raises(AnnotationError) as caught:
        detection.coco_detection(path, images, image_size=32, strict=True)
    message = str(caught.value)
    assert message.startswith(f"6 unusable annotations or images in '{path}':")
    assert (
        f"{path}: annotation 201 (image 'a.png'): category_id 5 is not in 'categories'" in message
    )
    assert (
        f"{images / 'missing.png'}: missing file (image id 10 in instances.json, annotations 206)"
        in message
    )
    assert "pass strict=False to skip them" in message


def test_coco_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        detection.coco_detection(tmp_path / "none.json", tmp_path, image_size=32)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="is not valid JSON"):
        detection.coco_detection(tmp_path / "bad.json", tmp_path, image_size=32)
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(AnnotationError, match="has no 'categories' list"):
        detection.coco_detection(tmp_path / "bad.json", tmp_path, image_size=32)
    (tmp_path / "bad.json").write_text(
        json.dumps({"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]})
    )
    with pytest.raises(
        AnnotationError, match=r"categories: Label map ids must be unique; duplicated: \[1\]"
    ):
        detection.coco_detection(tmp_path / "bad.json", tmp_path, image_size=32)


def _voc_xml(filename, width, height, objects):
    parts = [
        f"<annotation><filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
            "</bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


@pytest.fixture
def voc_files(tmp_path):
    annotations, images = tmp_path / "Annotations", tmp_path / "JPEGImages"
    annotations.mkdir()
    images.mkdir()
    (images / "000001.png").write_bytes(_png(50, 20, 40))
    (images / "000002.png").write_bytes(_png(60, 32, 32))
    (annotations / "000001.xml").write_text(
        _voc_xml("000001.png", 40, 20, [("dog", (1, 1, 40, 20), 0), ("cat", (11, 5, 20, 10), 1)])
    )
    (annotations / "000002.xml").write_text(
        _voc_xml("000002.png", 32, 32, [("cat", (5, 5, 8, 12), 0)])
    )
    return annotations, images


def test_voc_boxes_classes_and_difficult(voc_files):
    annotations, images = voc_files
    data = detection.voc_detection(annotations, images, image_size=(20, 40), batch_size=4)
    assert data.class_names == ["cat", "dog"] and data.class_ids == [0, 1]
    assert data.box_counts == {"cat": 2, "dog": 1} and data.skipped == []
    found = _by_image(data.train)
    # 1-based inclusive corners: xmin=1..xmax=40 covers the whole 40 px width
    np.testing.assert_allclose(found[50][0], [[0, 0, 40, 20], [10, 4, 10, 6]])
    np.testing.assert_array_equal(found[50][1], [1, 0])
    # 32x32 -> 40 wide, 20 high
    np.testing.assert_allclose(found[60][0][0], [4 * 1.25, 4 * 0.625, 4 * 1.25, 8 * 0.625])
    np.testing.assert_array_equal(found[60][1], [0, -1])
    easy = detection.voc_detection(
        annotations,
        images,
        image_size=(20, 40),
        class_names=["dog", "cat"],
        include_difficult=False,
    )
    assert easy.class_names == ["dog", "cat"] and easy.box_counts == {"dog": 1, "cat": 1}


def test_voc_problems_name_the_file_and_object(voc_files):
    annotations, images = voc_files
    (annotations / "000003.xml").write_text(
        _voc_xml("000003.png", 32, 32, [("cat", (20, 5, 10, 12), 0), ("cat", (40, 40, 50, 50), 0)])
    )
    (images / "000003.png").write_bytes(_png(70, 32, 32))
    (annotations / "000004.xml").write_text("<annotation><filename>")
    data = detection.voc_detection(annotations, images, image_size=32, class_names=["cat"])
    skipped = dict(data.skipped)
    assert (
        skipped[f"{annotations / '000001.xml'}: object 1 ('dog')"]
        == "class 'dog' is not one of ['cat']"
    )
    assert skipped[f"{annotations / '000003.xml'}: object 1 ('cat')"] == (
        "bndbox xmin=20 ymin=5 xmax=10 ymax=12 has non-positive width or height"
    )
    assert skipped[f"{annotations / '000003.xml'}: object 2 ('cat')"] == (
        "bndbox xmin=40 ymin=40 xmax=50 ymax=50 is wholly outside the 32x32 image"
    )
    assert skipped[str(annotations / "000004.xml")].startswith("not valid XML")
    assert data.image_counts["train"] == 3  # 000003.png kept without boxes
    with pytest.raises(AnnotationError, match=r"000003.xml: object 2 \('cat'\): bndbox xmin=40"):
        detection.voc_detection(
            annotations, images, image_size=32, class_names=["cat"], strict=True
        )


@pytest.fixture
def online(monkeypatch):
    """mock_data replaces the download; the network itself is never reached."""
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: True)


# Hand-made TFDS examples (mock_data's random ones give objects/* sequences of
# different lengths): (image height, width, [(normalised ymin, xmin, ymax, xmax), label, crowd]).
TFDS_EXAMPLES = [
    (20, 40, [((0.25, 0.5, 0.75, 1.0), 3, False), ((0.0, 0.0, 0.5, 0.25), 0, False)]),
    (
        30,
        30,
        [((0.5, 0.5, 0.4, 0.9), 1, False), ((0.0, 0.0, 1.0, 1.0), 2, True)],
    ),  # inverted, crowd
    (16, 24, []),
]


def _fake_as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    """`builder._as_dataset` for `mock_data`: the TFDS_EXAMPLES with every feature
    of the builder (unused ones zero)."""
    info = self.info.features.get_tensor_info()

    def fill(spec, n):
        return np.zeros([n if d is None else d for d in spec.shape], spec.np_dtype)

    def examples():
        for index, (height, width, objects) in enumerate(TFDS_EXAMPLES):
            n = len(objects)
            example = tf.nest.map_structure(lambda spec, n=n: fill(spec, n), info)
            example["image"] = np.full((height, width, 3), 10 * index, np.uint8)
            example["image/filename"] = f"{index:06d}.jpg"
            example["objects"]["bbox"] = np.array([o[0] for o in objects], np.float32).reshape(
                -1, 4
            )
            example["objects"]["label"] = np.array([o[1] for o in objects], np.int64)
            if "is_crowd" in example["objects"]:
                example["objects"]["is_crowd"] = np.array([o[2] for o in objects], bool)
                example["objects"]["id"] = np.arange(n, dtype=np.int64) + 100 * index + 1
            yield example

    signature = tf.nest.map_structure(lambda spec: tf.TensorSpec(spec.shape, spec.tf_dtype), info)
    return tf.data.Dataset.from_generator(examples, output_signature=signature)


def _by_fill_value(dataset):
    return {int(round(k / 10)): v for k, v in _by_image(dataset).items()}


@pytest.mark.parametrize("name", ["voc", "coco/2017"])
def test_tfds_mock_detection_converts_normalised_yxyx_boxes(tmp_path, online, name):
    with tensorflow_datasets.testing.mock_data(
        as_dataset_fn=_fake_as_dataset, data_dir=str(tmp_path)
    ):
        data = detection.tfds_detection(
            name,
            split="train",
            image_size=(24, 32),
            batch_size=2,
            data_dir=tmp_path,
            validation_split=0.34,
            seed=0,
        )
        found = {**_by_fill_value(data.train), **_by_fill_value(data.validation)}
    assert data.image_counts == {"train": 2, "validation": 1, "test": 0}
    assert sorted(found) == [0, 1, 2]
    assert data.max_boxes == 2
    # (ymin, xmin, ymax, xmax) * (24, 32) -> (x, y, w, h)
    np.testing.assert_allclose(found[0][0], [[16, 6, 16, 12], [0, 0, 8, 12]], atol=1e-5)
    np.testing.assert_array_equal(found[0][1], [3, 0])
    assert found[2][0].tolist() == [[-1] * 4] * 2 and found[2][1].tolist() == [-1, -1]
    where, reason = data.skipped[0]
    assert (
        reason
        == "bbox [0.5, 0.5, 0.4, 0.9] (ymin, xmin, ymax, xmax) has non-positive width or height"
    )
    if name == "voc":
        assert where == "voc train example 1 (000001.jpg), object 0"
        assert data.class_names[:4] == ["aeroplane", "bicycle", "bird", "boat"]
        assert data.class_ids == list(range(20))
        # VOC has no crowd flag: the whole-image box counts
        np.testing.assert_allclose(found[1][0], [[0, 0, 32, 24], [-1, -1, -1, -1]])
        assert found[1][1].tolist() == [2, -1]
        assert len(data.skipped) == 1 and sum(data.box_counts.values()) == 3
        assert data.box_counts["bird"] == 1
    else:
        assert where == "coco/2017 train example 1 (000001.jpg), annotation 101"
        assert len(data.class_names) == 80 and data.class_ids == list(COCO_IDS)
        # (without the prepared dataset_info the mock's COCO labels are named "0".."79")
        assert data.class_ids[:4] == [1, 2, 3, 4]
        assert found[1][1].tolist() == [-1, -1]  # the crowd box is left out
        assert len(data.skipped) == 1 and sum(data.box_counts.values()) == 2
        assert [data.box_counts[data.class_names[k]] for k in (0, 1, 2, 3)] == [1, 0, 0, 1]


def test_tfds_offline_is_fast_and_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: False)
    with pytest.raises(tfds_prepare.DatasetUnavailableError, match="'voc' is not prepared"):
        detection.tfds_detection("voc", split="train", image_size=32, data_dir=tmp_path)
    with pytest.raises(ValueError, match="has no objects/bbox and objects/label features"):
        detection.tfds_detection("cats_vs_dogs", split="train", image_size=32, data_dir=tmp_path)


def test_synthetic_is_deterministic_and_boxes_enclose_each_drawn_object():
    first = detection.synthetic_detection_arrays(6, image_size=64, max_objects=3, seed=4)
    again = detection.synthetic_detection_arrays(6, image_size=64, max_objects=3, seed=4)
    other = detection.synthetic_detection_arrays(6, image_size=64, max_objects=3, seed=5)
    np.testing.assert_array_equal(first[0], again[0])
    for a, b in zip(first[1] + first[2], again[1] + again[2]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    images, boxes, labels, masks = first
    colours = np.array(list(shapes.COLOURS.values()), np.float64)
    for image, image_boxes, image_labels, image_masks in zip(images, boxes, labels, masks):
        assert 1 <= len(image_boxes) <= 3
        for (x0, y0, x1, y1), label, mask in zip(
            image_boxes.astype(int), image_labels, image_masks
        ):
            ys, xs = np.nonzero(mask)
            # tight: the box is exactly the extent of the pixels the object covers
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
            # the drawn pixels have the colour of the class
            solid = image[mask == 1].astype(np.float64).mean(axis=0)
            nearest = list(shapes.COLOURS)[int(np.argmin(np.linalg.norm(colours - solid, axis=1)))]
            assert shapes.BASE_CLASSES[label].split("_")[0] == nearest
        # objects do not overlap, so every box shows its own object only
        assert np.max(image_masks.sum(axis=0) > 0) and np.all((image_masks > 0).sum(axis=0) <= 1)


def test_synthetic_detection_batches_match_the_arrays_and_pad_empty_images():
    data = detection.synthetic_detection(
        4, image_size=32, min_objects=0, max_objects=2, test_images=8, batch_size=4, seed=1
    )
    assert len(data.class_names) == 90 and data.class_ids == list(range(90))
    assert data.image_counts == {"train": 4, "validation": 0, "test": 8}
    images, boxes, labels, _ = detection.synthetic_detection_arrays(
        8, image_size=32, min_objects=0, max_objects=2, split="test", seed=1
    )
    got = [b for b in data.test]
    got_images = np.concatenate([b["images"].numpy() for b in got])
    got_boxes = np.concatenate([b["bounding_boxes"]["boxes"].numpy() for b in got])
    got_classes = np.concatenate([b["bounding_boxes"]["classes"].numpy() for b in got])
    np.testing.assert_array_equal(got_images, images.astype(np.float32))
    assert got_boxes.shape == (8, 2, 4) and not np.isnan(got_boxes).any()
    empty = 0
    for i in range(8):
        n = len(labels[i])
        empty += n == 0
        xywh = np.concatenate([boxes[i][:, :2], boxes[i][:, 2:] - boxes[i][:, :2]], axis=1)
        np.testing.assert_array_equal(got_boxes[i, :n], xywh)
        np.testing.assert_array_equal(got_classes[i, :n], labels[i])
        assert (got_boxes[i, n:] == -1).all() and (got_classes[i, n:] == -1).all()
    assert empty >= 1
    assert sum(data.box_counts.values()) == sum(len(x) for x in labels) + sum(
        int((b["bounding_boxes"]["classes"].numpy() != -1).sum()) for b in data.train
    )


def test_synthetic_novel_classes_keep_their_ids():
    data = detection.synthetic_detection(
        4, image_size=32, classes=shapes.NOVEL_CLASSES, batch_size=4, seed=0
    )
    assert data.class_names == ["blue_crescent", "red_arrow"] and data.class_ids == [90, 91]
    classes = next(iter(data.train))["bounding_boxes"]["classes"].numpy()
    assert set(classes.ravel().tolist()) <= {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError, match=r"Unknown shape classes \['purple_circle'\]"):
        detection.synthetic_detection(2, classes=["purple_circle"])


@pytest.mark.slow
def test_a_keras_cv_detector_trains_on_the_batches_even_without_boxes():
    """The batches are what KerasCV's `fit` expects; all-padding images give finite losses."""
    keras_cv = pytest.importorskip("keras_cv")
    data = detection.synthetic_detection(
        2, image_size=64, classes=["red_circle", "blue_square"], batch_size=2, seed=0
    )
    empty = data.train.map(
        lambda batch: {
            "images": batch["images"],
            "bounding_boxes": {
                key: -tf.ones_like(value) for key, value in batch["bounding_boxes"].items()
            },
        }
    )
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=[8, 16, 32, 64],
        stackwise_depth=[1, 1, 1, 1],
        include_rescaling=True,
        input_shape=(64, 64, 3),
    )
    detector = keras_cv.models.YOLOV8Detector(
        num_classes=2, bounding_box_format="xywh", backbone=backbone, fpn_depth=1
    )
    detector.compile(optimizer="sgd", classification_loss="binary_crossentropy", box_loss="ciou")
    history = detector.fit(data.train.concatenate(empty), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

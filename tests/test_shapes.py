import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.data import shapes


def test_ninety_base_and_two_novel_classes_from_known_parts():
    assert len(shapes.ALL_CLASSES) == 92 == len(set(shapes.ALL_CLASSES))
    assert len(shapes.BASE_CLASSES) == 90
    assert not set(shapes.NOVEL_CLASSES) & set(shapes.BASE_CLASSES)
    for novel in shapes.NOVEL_CLASSES:
        colour, shape = novel.split("_", 1)
        assert any(name.startswith(colour + "_") for name in shapes.BASE_CLASSES)
        assert any(name.endswith("_" + shape) for name in shapes.BASE_CLASSES)


def test_generation_is_deterministic_and_splits_differ():
    first, labels = shapes.arrays(shapes.NOVEL_CLASSES, 3, split="train", image_size=32)
    again, _ = shapes.arrays(shapes.NOVEL_CLASSES, 3, split="train", image_size=32)
    test, _ = shapes.arrays(shapes.NOVEL_CLASSES, 3, split="test", image_size=32)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, test)
    assert first.shape == (6, 32, 32, 3) and first.dtype == np.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    # a prefix of a larger draw is the same images
    more, _ = shapes.arrays(shapes.NOVEL_CLASSES[:1], 5, split="train", image_size=32)
    np.testing.assert_array_equal(more[:3], first[:3])


def test_classes_differ_in_colour_where_their_names_say_so():
    images, _ = shapes.arrays(["red_circle", "blue_circle"], 8, split="test")
    centre = images[:, 24:40, 24:40].reshape(2, -1, 3).astype(float)
    assert centre[0, :, 0].mean() > centre[0, :, 2].mean()
    assert centre[1, :, 2].mean() > centre[1, :, 0].mean()


def test_image_folder_round_trip(tmp_path):
    root = shapes.write_image_folder(tmp_path, shapes.NOVEL_CLASSES, 4, split="validation")
    data = tt.data.image_folder(root, image_size=64, batch_size=8, seed=0)
    assert data.class_names == sorted(shapes.NOVEL_CLASSES)
    assert data.class_counts == {name: 4 for name in shapes.NOVEL_CLASSES}
    loaded = sorted(x.tobytes() for xs, _ in data.train for x in xs.numpy().astype(np.uint8))
    expected, _ = shapes.arrays(sorted(shapes.NOVEL_CLASSES), 4, split="validation")
    assert loaded == sorted(x.tobytes() for x in expected)


def test_unknown_class_or_split_is_an_error():
    with pytest.raises(ValueError, match="Unknown shape classes \\['purple_circle'\\]"):
        shapes.arrays(["purple_circle"], 1)
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        shapes.arrays(["red_circle"], 1, split="dev")


def test_dataset_yields_float_pixels_and_int_labels():
    batch_images, batch_labels = next(iter(shapes.dataset(shapes.NOVEL_CLASSES, 3, batch_size=4)))
    assert batch_images.dtype.name == "float32" and batch_images.shape == (4, 64, 64, 3)
    assert batch_labels.dtype.name == "int32"
    assert 0 <= float(np.min(batch_images)) and float(np.max(batch_images)) <= 255


def test_image_data_has_names_counts_and_the_three_splits():
    data = shapes.image_data(shapes.NOVEL_CLASSES, 3, validation_per_class=2, test_per_class=1)
    assert data.class_names == list(shapes.NOVEL_CLASSES)
    assert data.class_counts == {name: 6 for name in shapes.NOVEL_CLASSES}
    sizes = [
        sum(int(y.shape[0]) for _, y in split) for split in (data.train, data.validation, data.test)
    ]
    assert sizes == [6, 4, 2]
    one_hot = next(iter(tt.data.to_one_hot(data.test, 2)))[1].numpy()
    np.testing.assert_array_equal(one_hot, [[1, 0], [0, 1]])

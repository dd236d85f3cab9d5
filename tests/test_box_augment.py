"""Box-aware augmentation: boxes move with the pixels, stay inside the image, and
degenerate boxes are dropped and counted."""

import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer.data.detection as detection

SIZE = 64


def _dataset(images, boxes, classes, batch_size=8):
    return tf.data.Dataset.from_tensor_slices(
        {
            "images": np.asarray(images, np.float32),
            "bounding_boxes": {
                "boxes": np.asarray(boxes, np.float32),
                "classes": np.asarray(classes, np.float32),
            },
        }
    ).batch(batch_size)


def _rectangles(count=8, seed=0):
    """Black images with one white rectangle each, and its xywh box (whole pixels)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, SIZE, SIZE, 3), np.float32)
    boxes = np.full((count, 2, 4), -1, np.float32)
    classes = np.full((count, 2), -1, np.float32)
    for i in range(count):
        w, h = rng.integers(10, 24, 2)
        x, y = rng.integers(4, SIZE - 28, 2)
        images[i, y : y + h, x : x + w] = 255
        boxes[i, 0] = [x, y, w, h]
        classes[i, 0] = i % 3
    return images, boxes, classes


def _extent(image):
    ys, xs = np.nonzero(image[..., 0] > 127.5)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])


def test_flip_moves_boxes_exactly_with_the_pixels():
    data = detection.synthetic_detection(
        1, image_size=SIZE, test_images=8, max_objects=3, batch_size=8, seed=2
    )
    batch = next(iter(data.test))
    flipped = next(iter(detection.augment_detection(data.test, {"flip": 1.0}, seed=3)))
    images, boxes = batch["images"].numpy(), batch["bounding_boxes"]["boxes"].numpy()
    new_images = flipped["images"].numpy()
    new_boxes = flipped["bounding_boxes"]["boxes"].numpy()
    np.testing.assert_array_equal(
        flipped["bounding_boxes"]["classes"].numpy(), batch["bounding_boxes"]["classes"].numpy()
    )
    was_flipped = []
    for i in range(8):
        if np.array_equal(new_images[i], images[i, :, ::-1]):
            was_flipped.append(True)
            real = batch["bounding_boxes"]["classes"].numpy()[i] != -1
            x, y, w, h = boxes[i, real].T
            # x -> W - x - w; y, w, h unchanged
            np.testing.assert_allclose(new_boxes[i, real], np.stack([SIZE - x - w, y, w, h], 1))
            np.testing.assert_array_equal(new_boxes[i, ~real], -1)
        else:
            np.testing.assert_array_equal(new_images[i], images[i])
            np.testing.assert_array_equal(new_boxes[i], boxes[i])
            was_flipped.append(False)
    assert any(was_flipped) and not all(was_flipped)


def test_jittered_resize_keeps_boxes_on_the_object_and_inside_the_image():
    images, boxes, classes = _rectangles(8)
    dropped = detection.DroppedBoxes()
    augmented = detection.augment_detection(
        _dataset(images, boxes, classes), {"jitter": (0.7, 1.4)}, seed=5, dropped=dropped
    )
    moved = 0
    for _ in range(2):  # two epochs, new random crops
        batch = next(iter(augmented))
        new_images = batch["images"].numpy()
        new_boxes = batch["bounding_boxes"]["boxes"].numpy()
        new_classes = batch["bounding_boxes"]["classes"].numpy()
        assert new_images.shape == (8, SIZE, SIZE, 3) and new_boxes.shape == (8, 2, 4)
        for i in range(8):
            if new_classes[i, 0] == -1:  # cropped away: nothing white may be left
                assert (new_images[i] > 200).sum() == 0
                continue
            assert new_classes[i, 0] == classes[i, 0] and new_classes[i, 1] == -1
            x, y, w, h = new_boxes[i, 0]
            assert 0 <= x and 0 <= y and x + w <= SIZE + 1e-4 and y + h <= SIZE + 1e-4
            assert w >= 1 and h >= 1
            # the white rectangle and its box agree within the resampling blur
            np.testing.assert_allclose(_extent(new_images[i]), new_boxes[i, 0], atol=1.0)
            moved += not np.allclose(new_boxes[i, 0], boxes[i, 0])
    assert moved >= 8
    kept = 16 - dropped.count
    assert dropped.seen == 16 and 0 <= dropped.count < 16 and kept > 0


def test_degenerate_and_partly_outside_boxes_are_clipped_dropped_and_counted():
    images = np.full((2, SIZE, SIZE, 3), 100, np.float32)
    boxes = np.array(
        [
            [[-6, 10, 16, 8], [20, 20, 0.5, 10], [-1, -1, -1, -1]],  # partly outside; too thin
            [[60, 60, 10, 10], [70, 5, 4, 4], [30, 30, 4, 4]],  # partly outside; wholly outside
        ],
        np.float32,
    )
    classes = np.array([[0, 1, -1], [2, 1, 0]], np.float32)
    assert detection.count_degenerate({"boxes": boxes, "classes": classes}) == 1
    assert (
        detection.count_degenerate({"boxes": boxes, "classes": classes}, image_shape=(SIZE, SIZE))
        == 2
    )
    dropped = detection.DroppedBoxes()
    augmented = detection.augment_detection(
        _dataset(images, boxes, classes),
        {"brightness": 0.2, "contrast": 0.2},
        seed=0,
        dropped=dropped,
    )
    batch = next(iter(augmented))
    assert dropped.count == 2 and dropped.seen == 5
    np.testing.assert_allclose(
        batch["bounding_boxes"]["boxes"].numpy(),
        [
            [[0, 10, 10, 8], [-1, -1, -1, -1], [-1, -1, -1, -1]],
            [[60, 60, 4, 4], [30, 30, 4, 4], [-1, -1, -1, -1]],  # valid boxes first
        ],
    )
    np.testing.assert_array_equal(
        batch["bounding_boxes"]["classes"].numpy(), [[0, -1, -1], [2, 0, -1]]
    )
    new_images = batch["images"].numpy()
    assert not np.allclose(new_images, images)
    assert new_images.min() >= 0 and new_images.max() <= 255
    dropped.reset()
    assert dropped.count == 0 and repr(dropped) == "DroppedBoxes(count=0, seen=0)"


def test_detection_data_in_other_formats_and_bad_specs():
    data = detection.synthetic_detection(
        4, image_size=32, bounding_box_format="xyxy", test_images=4, batch_size=4, seed=0
    )
    augmented = detection.augment_detection(data, {"flip": 1, "jitter": 0.2}, seed=1)
    assert augmented.test is data.test and augmented.train is not data.train
    batch = next(iter(augmented.train))
    boxes, classes = (
        batch["bounding_boxes"]["boxes"].numpy(),
        batch["bounding_boxes"]["classes"].numpy(),
    )
    real = boxes[classes != -1]
    assert (real[:, 2] - real[:, 0] >= 1).all() and (real[:, 3] - real[:, 1] >= 1).all()
    assert real.min() >= 0 and real.max() <= 32 + 1e-4
    with pytest.raises(ValueError, match=r"Unknown detection augmentations \['rotation'\]"):
        detection.augment_detection(data.train, {"rotation": 0.1})
    with pytest.raises(ValueError, match="jitter must give a scale range"):
        detection.augment_detection(data.train, {"jitter": 1.5})


def test_tuple_batches_are_refused_with_a_clear_message():
    pairs = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 8, 8, 3), np.float32), np.zeros(2))
    ).batch(2)
    with pytest.raises(ValueError, match="augment_detection expects batches"):
        detection.augment_detection(pairs, {"flip": 1})

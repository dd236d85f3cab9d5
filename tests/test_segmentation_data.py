"""Segmentation data: image folders with PNG masks the tests write, TFDS mock data,
the embedded synthetic shapes, and joint image-and-mask augmentation."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tensorflow_datasets

import tfx_transfer as tt
from tfx_transfer.data import shapes, tfds_prepare
from tfx_transfer.data.detection import AnnotationError

pytestmark = pytest.mark.filterwarnings("ignore:Skipped .* unusable annotations")

CLASSES = ["background", "cat", "dog"]


def _image(value: int, height: int = 16, width: int = 16) -> bytes:
    return tf.io.encode_png(np.full((height, width, 3), value, np.uint8)).numpy()


def _mask(values) -> bytes:
    return tf.io.encode_png(np.asarray(values, np.uint8)[..., None]).numpy()


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _by_image(dataset):
    """{mean pixel value: mask} over every pair of `dataset`; the test images are
    uniform, so their value names them."""
    found = {}
    for images, masks in dataset:
        assert images.dtype == tf.float32 and masks.dtype == tf.int32
        for image, mask in zip(images.numpy(), masks.numpy()):
            found[int(round(image.mean()))] = mask
    return found


HALVES = np.repeat([[0] * 8 + [1] * 8], 16, axis=0)  # left half 0, right half 1
TOP_IGNORED = np.concatenate([np.full((4, 16), 255), np.full((12, 16), 2)])


@pytest.fixture
def folder(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _write(images / "a.png", _image(10))
    _write(masks / "a.png", _mask(HALVES))
    _write(images / "b.jpg", tf.io.encode_jpeg(np.full((16, 16, 3), 20, np.uint8)).numpy())
    _write(masks / "b.png", _mask(TOP_IGNORED))
    _write(images / "nested" / "c.png", _image(30))  # pairs with masks/nested/c.png
    _write(masks / "nested" / "c.png", _mask(np.ones((16, 16))))
    _write(images / "lonely.png", _image(40))  # no mask
    _write(masks / "orphan.png", _mask(np.zeros((16, 16))))  # no image
    _write(masks / ".hidden.png", b"")  # hidden files are ignored
    return images, masks


def test_mask_folder_pairs_by_stem_keeps_ignore_index_and_counts(folder):
    images, masks = folder
    with pytest.warns(UserWarning, match="Skipped 2 unusable annotations or images of 4 images"):
        data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=16, batch_size=2)
    assert isinstance(data, tt.data.SegmentationData)
    assert data.class_names == CLASSES and data.num_classes == 3 and data.ignore_index == 255
    assert data.image_size == (16, 16)
    assert data.image_counts == {"train": 3, "validation": 0, "test": 0}
    assert data.validation is None and data.test is None
    assert dict(data.skipped) == {
        str(images / "lonely.png"): f"no mask (expected {masks / 'lonely.png'})",
        str(masks / "orphan.png"): f"no image named 'orphan'.* in {images}",
    }
    found = _by_image(data.train)
    assert sorted(found) == [10, 20, 30]
    np.testing.assert_array_equal(found[10], HALVES)
    np.testing.assert_array_equal(found[20], TOP_IGNORED)  # 255 stays 255
    np.testing.assert_array_equal(found[30], np.ones((16, 16)))
    # ignored pixels are not counted
    assert data.pixel_counts == {"background": 128, "cat": 128 + 256, "dog": 12 * 16}
    images_batch, masks_batch = next(iter(data.train))
    assert images_batch.shape == (2, 16, 16, 3) and masks_batch.shape == (2, 16, 16)


def test_unusable_files_are_skipped_and_strict_mode_names_them(folder):
    images, masks = folder
    png = _image(50)
    _write(images / "truncated.png", png[: len(png) // 2])
    _write(masks / "truncated.png", _mask(np.zeros((16, 16))))
    _write(images / "d.png", _image(60))
    _write(masks / "d.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    _write(images / "e.png", _image(70))
    _write(masks / "e.jpg", b"jpeg")
    with pytest.warns(UserWarning, match="Skipped 6 unusable"):
        data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=8)
    skipped = dict(data.skipped)
    assert len(data.skipped) == 6 and data.image_counts["train"] == 3
    assert skipped[str(images / "truncated.png")].startswith("corrupt image (")
    assert skipped[str(masks / "d.png")].startswith("corrupt mask (")
    assert skipped[str(masks / "e.jpg")].startswith("not a PNG mask")
    assert skipped[str(images / "e.png")] == f"no mask (expected {masks / 'e.png'})"
    with pytest.raises(AnnotationError) as caught:
        tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=8, strict=True)
    message = str(caught.value)
    assert message.startswith("6 unusable annotations or images in")
    assert f"{images / 'truncated.png'}: corrupt image (" in message
    assert f"{images / 'lonely.png'}: no mask" in message
    assert "pass strict=False to skip them" in message


def test_out_of_range_mask_values_are_named(folder):
    images, masks = folder
    bad = HALVES.copy()
    bad[0, 0], bad[1, 1] = 7, 3
    _write(masks / "a.png", _mask(bad))
    data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=16)
    assert dict(data.skipped)[str(masks / "a.png")] == (
        "mask values 3, 7 are not class ids (0..2) nor ignore_index 255"
    )
    assert sorted(_by_image(data.train)) == [20, 30]
    # a ValueError naming the file and the values
    with pytest.raises(ValueError, match=r"masks/a\.png: mask values 3, 7 are not class ids"):
        tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=16, strict=True)
    # 255 is a class id when there are 256 classes: ignore_index must be outside them
    with pytest.raises(ValueError, match="ignore_index must be an int outside the class ids"):
        tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=16, ignore_index=2)


def test_masks_of_another_size_are_resized_nearest_with_their_image(tmp_path):
    """A 20x30 image with a 10x15 mask: both become 32x48 and still match."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, 15:] = 200  # bright right half
    _write(images / "x.png", tf.io.encode_png(image).numpy())
    rng = np.random.default_rng(0)
    mask = rng.choice([0, 1, 2, 255], (10, 15)).astype(np.uint8)
    mask[:, :7], mask[:, 8:] = 0, 1  # left of the middle column background, right "cat"
    _write(masks / "x.png", _mask(mask))
    data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=(32, 48))
    [(pixels, resized)] = [(x, y) for xs, ys in data.train for x, y in zip(xs.numpy(), ys.numpy())]
    assert set(np.unique(resized).tolist()) <= {0, 1, 2, 255}  # no blended ids
    np.testing.assert_array_equal(
        resized, tf.image.resize(mask[..., None], (32, 48), method="nearest").numpy()[..., 0]
    )
    # the bright half of the image is the "cat" half of the mask
    assert (resized[:, :22] == 0).all() and (resized[:, 26:] == 1).all()
    assert (pixels[:, :22] == 0).all() and (pixels[:, 26:] == 200).all()


def test_palette_one_bit_and_colour_masks(tmp_path):
    Image = pytest.importorskip("PIL.Image")

    def save(image):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    images, masks = tmp_path / "images", tmp_path / "masks"
    ids = np.array([[0, 1], [2, 255]], np.uint8).repeat(4, axis=0).repeat(4, axis=1)
    palette = Image.new("P", (8, 8))
    palette.putdata(ids.ravel().tolist())
    # VOC-like colours; an unused entry repeats black, index 0 keeps it
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
    _write(images / "palette.png", _image(10, 8, 8))
    _write(masks / "palette.png", save(palette))
    _write(images / "binary.png", _image(20, 8, 8))
    _write(masks / "binary.png", save(Image.fromarray(ids == 1)))  # 1-bit PNG
    _write(images / "colour.png", _image(30, 8, 8))
    _write(masks / "colour.png", tf.io.encode_png(np.dstack([ids, ids, ids * 0])).numpy())
    data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=8)
    found = _by_image(data.train)
    np.testing.assert_array_equal(found[10], ids)  # palette indices, not colours
    np.testing.assert_array_equal(found[20], ids == 1)  # 0/1, not 0/255
    assert dict(data.skipped)[str(masks / "colour.png")].startswith(
        "colour mask (RGB channels differ)"
    )


def test_splits_have_the_requested_sizes_and_follow_the_seed(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(10):
        _write(images / f"{i}.png", _image(10 * (i + 1), 8, 8))
        _write(masks / f"{i}.png", _mask(np.full((8, 8), i % 3)))

    def members(seed):
        data = tt.data.mask_folder(
            images,
            masks,
            class_names=CLASSES,
            image_size=8,
            batch_size=4,
            validation_split=0.2,
            test_split=0.3,
            seed=seed,
        )
        assert data.image_counts == {"train": 5, "validation": 2, "test": 3}
        assert sum(data.pixel_counts.values()) == 10 * 64
        return [sorted(_by_image(split)) for split in (data.train, data.validation, data.test)]

    first = members(1)
    assert sorted(sum(first, [])) == [10 * (i + 1) for i in range(10)]
    assert members(1) == first
    assert members(2) != first


def test_synthetic_masks_label_the_drawn_objects_and_are_deterministic():
    classes = ["red_circle", "blue_square", "green_triangle", "yellow_star"]
    images, masks = tt.data.synthetic_segmentation_arrays(6, classes=classes, image_size=48, seed=3)
    again = tt.data.synthetic_segmentation_arrays(6, classes=classes, image_size=48, seed=3)
    other = tt.data.synthetic_segmentation_arrays(6, classes=classes, image_size=48, seed=4)
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(masks, again[1])
    assert not np.array_equal(masks, other[1])
    assert images.shape == (6, 48, 48, 3) and images.dtype == np.uint8
    assert masks.shape == (6, 48, 48) and masks.dtype == np.int32
    colours = np.array(list(shapes.COLOURS.values()), np.float64)
    labelled_per_image = []
    for image, mask in zip(images, masks):
        present = sorted(set(np.unique(mask).tolist()) - {0})
        assert present and set(present) <= {1, 2, 3, 4} and (mask == 0).any()
        labelled_per_image.append(len(present))
        for label in present:
            # the labelled pixels have the colour of the class
            mean = image[mask == label].astype(np.float64).mean(axis=0)
            nearest = list(shapes.COLOURS)[int(np.argmin(np.linalg.norm(colours - mean, axis=1)))]
            assert classes[label - 1].startswith(nearest + "_")
            # and stand out from the background around them
            assert np.linalg.norm(mean - image[mask == 0].mean(axis=0)) > 40
    assert max(labelled_per_image) >= 2


def test_synthetic_segmentation_batches_match_the_arrays():
    classes = ["red_circle", "blue_square"]
    data = tt.data.synthetic_segmentation(
        4, classes=classes, image_size=32, test_images=4, batch_size=4, seed=1
    )
    assert data.class_names == ["background", "red_circle", "blue_square"]
    assert data.image_counts == {"train": 4, "validation": 0, "test": 4}
    assert data.ignore_index == 255 and data.skipped == [] and data.validation is None
    assert sum(data.pixel_counts.values()) == 8 * 32 * 32
    images, masks = next(iter(data.test))
    expected_images, expected_masks = tt.data.synthetic_segmentation_arrays(
        4, classes=classes, image_size=32, split="test", seed=1
    )
    assert images.dtype == tf.float32 and masks.dtype == tf.int32
    np.testing.assert_array_equal(images.numpy(), expected_images.astype(np.float32))
    np.testing.assert_array_equal(masks.numpy(), expected_masks)
    default = tt.data.synthetic_segmentation(1, image_size=32)
    assert default.class_names[1:] == list(shapes.BASE_CLASSES) and default.num_classes == 91


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
def test_batches_fit_a_per_pixel_classifier_with_ignore_class(folder):
    """What the DeepLabV3+ training relies on: `fit(data.train)` with the loss ignoring
    `data.ignore_index` (here on augmented batches with ignored pixels)."""
    import keras

    images, masks = folder
    data = tt.data.mask_folder(images, masks, class_names=CLASSES, image_size=16, batch_size=2)
    augmented = tt.data.augment_segmentation(data, seed=0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(data.num_classes, 1),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=data.ignore_index
    )
    model.compile("adam", loss=loss)
    history = model.fit(augmented.train, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


# --- TFDS ---------------------------------------------------------------------------


@pytest.fixture
def online(monkeypatch):
    """mock_data replaces the download; the network itself is never reached."""
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: True)


THIRDS = np.repeat([[1] * 10 + [2] * 10 + [3] * 10], 20, axis=0)  # oxford_iiit_pet values 1..3
HALF_UNLABELLED = np.concatenate([np.full((10, 30), 2), np.zeros((10, 30))])  # 0: no class
STRAY_VALUE = np.where(np.arange(30) < 2, 9, 1)[None].repeat(20, axis=0)


def _fake_as_dataset(masks):
    """A `builder._as_dataset` for `mock_data` giving 20x30 images filled with
    10 * (index + 1) and the given (20, 30) masks; other features are zero."""

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        info = self.info.features.get_tensor_info()

        def examples():
            for index, mask in enumerate(masks):
                example = tf.nest.map_structure(
                    lambda spec: (
                        b""
                        if spec.tf_dtype == tf.string
                        else np.zeros([1 if d is None else d for d in spec.shape], spec.np_dtype)
                    ),
                    info,
                )
                example["image"] = np.full((20, 30, 3), 10 * (index + 1), np.uint8)
                example["segmentation_mask"] = np.asarray(mask, np.uint8)[..., None]
                yield example

        signature = tf.nest.map_structure(
            lambda spec: tf.TensorSpec(spec.shape, spec.tf_dtype), info
        )
        return tf.data.Dataset.from_generator(examples, output_signature=signature)

    return as_dataset


def test_tfds_mock_masks_with_offset_and_default_names(tmp_path, online):
    with tensorflow_datasets.testing.mock_data(
        as_dataset_fn=_fake_as_dataset([THIRDS, HALF_UNLABELLED]), data_dir=str(tmp_path)
    ):
        data = tt.data.tfds_segmentation(
            "oxford_iiit_pet",
            image_size=(10, 15),
            batch_size=2,
            mask_offset=1,
            data_dir=tmp_path,
            download=True,
        )
        train, test = _by_image(data.train), _by_image(data.test)
    assert data.class_names == ["pet", "background", "border"] and data.ignore_index == 255
    assert data.image_counts == {"train": 2, "validation": 0, "test": 2}
    assert data.image_size == (10, 15) and data.skipped == []
    # 1..3 became 0..2; the value 0 (no class) became the ignore index
    np.testing.assert_array_equal(train[10], np.repeat([[0] * 5 + [1] * 5 + [2] * 5], 10, 0))
    np.testing.assert_array_equal(
        train[20], np.concatenate([np.ones((5, 15)), np.full((5, 15), 255)])
    )
    np.testing.assert_array_equal(test[10], train[10])
    # both splits, at image_size
    assert data.pixel_counts == {"pet": 2 * 50, "background": 2 * (50 + 75), "border": 2 * 50}


def test_tfds_values_outside_the_classes_skip_the_example(tmp_path, online):
    with tensorflow_datasets.testing.mock_data(
        as_dataset_fn=_fake_as_dataset([THIRDS, STRAY_VALUE]), data_dir=str(tmp_path)
    ):
        data = tt.data.tfds_segmentation(
            "oxford_iiit_pet",
            class_names=["pet", "background", "border"],
            image_size=20,
            splits=["train"],
            mask_offset=1,
            data_dir=tmp_path,
            download=True,
        )
        assert sorted(_by_image(data.train)) == [10]
    assert data.image_counts == {"train": 1, "validation": 0, "test": 0}
    assert data.skipped == [
        (
            "oxford_iiit_pet train example 1",
            "mask value 8 is not a class id (0..2) nor ignore_index 255 (after mask_offset=1)",
        )
    ]


def test_tfds_offline_and_wrong_features_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: False)
    with pytest.raises(tt.data.DatasetUnavailableError, match="download=False") as caught:
        tt.data.tfds_segmentation("oxford_iiit_pet", image_size=32, data_dir=tmp_path)
    assert "'oxford_iiit_pet' is not prepared" in str(caught.value)
    assert "tfds build oxford_iiit_pet" in str(caught.value)
    with pytest.raises(tt.data.DatasetUnavailableError, match="no connection to thor.robots"):
        tt.data.tfds_segmentation(
            "oxford_iiit_pet", image_size=32, data_dir=tmp_path, download=True
        )
    with pytest.raises(ValueError, match="has no 'segmentation_mask' feature"):
        tt.data.tfds_segmentation("cats_vs_dogs", image_size=32, data_dir=tmp_path)


# --- augmentation ---------------------------------------------------------------------

# Class 0, 1, 2 and the ignore index as colours: a pixel has exactly one of these
# (up to the brightness shift) only where the bilinear resize did not blend regions.
CODES = {0: (200, 50, 50), 1: (50, 200, 50), 2: (50, 50, 200), 255: (50, 50, 50)}


def _encoded(count=16, size=32, block=4, seed=0):
    """Blocky random masks with ignored blocks, and images whose colours encode them."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(list(CODES), (count, size // block, size // block))
    masks = blocks.repeat(block, axis=1).repeat(block, axis=2).astype(np.int32)
    images = np.zeros((count, size, size, 3), np.float32)
    for value, colour in CODES.items():
        images[masks == value] = colour
    return images, masks


def _decode(images):
    """The mask value each pixel's colour encodes, or -1 where regions were blended."""
    shifted = images - images.min(axis=-1, keepdims=True)  # removes the brightness shift
    decoded = np.full(images.shape[:-1], -1)
    for value, colour in CODES.items():
        code = np.array(colour, np.float32) - min(colour)
        decoded[np.abs(shifted - code).max(axis=-1) < 0.01] = value
    return decoded


def test_augmentation_keeps_images_and_masks_aligned_and_ignore_pixels_ignored():
    images, masks = _encoded()
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(8)
    augmented = tt.data.augment_segmentation(data, crop_scale=(0.6, 0.9), brightness=0.1, seed=1)
    out_images, out_masks = (np.concatenate(part) for part in zip(*augmented.as_numpy_iterator()))
    assert out_images.shape == images.shape and out_images.dtype == np.float32
    assert out_masks.shape == masks.shape and out_masks.dtype == np.int32
    assert set(np.unique(out_masks).tolist()) == {0, 1, 2, 255}  # nothing new, ignore kept
    decoded = _decode(out_images)
    pure = decoded >= 0
    assert pure.mean() > 0.4
    np.testing.assert_array_equal(out_masks[pure], decoded[pure])
    assert (out_masks[decoded == 255] == 255).all() and (decoded == 255).any()
    assert not np.array_equal(out_masks, masks)  # it did crop
    # brightness moved the images (one shift per image), not the masks
    shifts = (out_images.min(axis=-1) - 50)[pure]
    assert np.abs(shifts).max() > 1 and np.abs(shifts).max() <= 25.5 + 1e-3


def test_flip_mirrors_image_and_mask_together():
    images, masks = _encoded(seed=1)
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(16)
    augmented = tt.data.augment_segmentation(data, crop_scale=None, brightness=0.0, seed=0)
    out_images, out_masks = next(augmented.as_numpy_iterator())
    flipped = []
    for i in range(16):
        if np.array_equal(out_masks[i], masks[i]):
            np.testing.assert_allclose(out_images[i], images[i], atol=1e-3)
            flipped.append(False)
        else:
            np.testing.assert_array_equal(out_masks[i], masks[i, :, ::-1])
            np.testing.assert_allclose(out_images[i], images[i, :, ::-1], atol=1e-3)
            flipped.append(True)
    assert any(flipped) and not all(flipped)


def test_augmentation_is_deterministic_per_seed_and_varies_by_epoch():
    data = tt.data.synthetic_segmentation(
        8, classes=["red_circle"], image_size=32, batch_size=8, seed=0
    )
    fixed = data.train.take(1).cache()
    list(fixed)

    def run(dataset):
        return [m for _, m in dataset.as_numpy_iterator()]

    first = tt.data.augment_segmentation(fixed, seed=5)
    again = tt.data.augment_segmentation(fixed, seed=5)
    epoch_one, epoch_two = run(first), run(first)
    np.testing.assert_array_equal(epoch_one, run(again))
    assert not np.array_equal(epoch_one, epoch_two)
    assert not np.array_equal(epoch_one, run(tt.data.augment_segmentation(fixed, seed=6)))
    augmented = tt.data.augment_segmentation(data, seed=5)
    assert isinstance(augmented, tt.data.SegmentationData) and augmented.test is data.test
    assert augmented.train is not data.train
    with pytest.raises(ValueError, match="crop_scale must satisfy"):
        tt.data.augment_segmentation(fixed, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="expects batches"):
        tt.data.augment_segmentation(fixed.unbatch())

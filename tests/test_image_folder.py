import io

import numpy as np
import pytest
from PIL import Image

import tfx_transfer as tt
from tfx_transfer.data import UnusableImagesError

RGB = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes; 'cat' holds good images in every mode plus broken files."""
    png = _encode(Image.fromarray(RGB), "PNG")
    jpeg = _encode(Image.fromarray(RGB), "JPEG")
    cat, dog = tmp_path / "cat", tmp_path / "dog"
    _write(cat / "rgb.png", png)
    _write(cat / "photo.jpg", jpeg)
    _write(cat / "gray.png", _encode(Image.fromarray(RGB[..., 0]), "PNG"))
    _write(cat / "rgba.png", _encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG"))
    _write(cat / "palette.png", _encode(Image.fromarray(RGB).convert("P"), "PNG"))
    _write(cat / "nested" / "deep.png", png)
    _write(cat / "empty.png", b"")
    _write(cat / "truncated.png", png[: len(png) // 2])
    _write(cat / "truncated.jpg", jpeg[: len(jpeg) // 2])
    _write(cat / "notes.txt", b"not an image")
    _write(cat / ".DS_Store", b"\x00\x01")
    _write(cat / ".hidden" / "x.png", png)
    for i in range(3):
        _write(dog / f"dog{i}.png", png)
    return tmp_path


def test_skips_and_counts_unusable_files(mixed_folder):
    with pytest.warns(UserWarning, match="Skipped 4 of 13 files"):
        data = tt.data.image_folder(mixed_folder, image_size=16, batch_size=4)
    assert data.class_names == ["cat", "dog"]
    assert data.class_counts == {"cat": 6, "dog": 3}
    reasons = {path.split("/cat/")[-1]: reason for path, reason in data.skipped}
    assert set(reasons) == {"empty.png", "truncated.png", "truncated.jpg", "notes.txt"}
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["notes.txt"] == "not an image (unknown file format)"
    assert reasons["truncated.jpg"].startswith("truncated JPEG")
    assert reasons["truncated.png"].startswith("corrupt image (Invalid PNG data")
    images, labels = [], []
    for x, y in data.train:
        images.append(x.numpy())
        labels.append(y.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (9, 16, 16, 3) and images.dtype == np.float32
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 3
    assert data.validation is None


def test_grayscale_rgba_and_palette_become_rgb(tmp_path):
    _write(tmp_path / "a" / "gray.png", _encode(Image.fromarray(RGB[..., 0]), "PNG"))
    _write(
        tmp_path / "b" / "rgba.png", _encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG")
    )
    palette = Image.fromarray(RGB).convert("P")
    _write(tmp_path / "c" / "palette.png", _encode(palette, "PNG"))
    data = tt.data.image_folder(tmp_path, image_size=(20, 24), batch_size=8, seed=0)
    by_label = {int(y): x for xs, ys in data.train for x, y in zip(xs.numpy(), ys.numpy())}
    gray = by_label[0]
    np.testing.assert_array_equal(gray[..., 0], RGB[..., 0])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(by_label[1], RGB)  # alpha dropped
    np.testing.assert_array_equal(by_label[2], np.asarray(palette.convert("RGB")))


def test_strict_mode_names_every_unusable_file(mixed_folder):
    with pytest.raises(UnusableImagesError) as caught:
        tt.data.image_folder(mixed_folder, image_size=16, strict=True)
    message = str(caught.value)
    assert "4 unusable files" in message
    for name in ("empty.png", "truncated.png", "truncated.jpg", "notes.txt"):
        assert name in message


def test_validation_split_is_stratified_and_deterministic(tmp_path):
    png = _encode(Image.fromarray(RGB), "PNG")
    for name, count in (("a", 10), ("b", 20)):
        for i in range(count):
            _write(tmp_path / name / f"{i:02d}.png", png)

    def split_labels(seed):
        data = tt.data.image_folder(tmp_path, image_size=8, validation_split=0.2, seed=seed)
        return sorted(int(y) for _, ys in data.validation for y in ys.numpy())

    assert split_labels(1) == [0] * 2 + [1] * 4
    first = tt.data.image_folder(tmp_path, image_size=8, validation_split=0.2, seed=3)
    second = tt.data.image_folder(tmp_path, image_size=8, validation_split=0.2, seed=3)
    assert [e.numpy().tolist() for e in first.validation.unbatch().map(lambda x, y: y)] == [
        e.numpy().tolist() for e in second.validation.unbatch().map(lambda x, y: y)
    ]
    with pytest.raises(ValueError, match=r"validation_split must be in \(0, 1\)"):
        tt.data.image_folder(tmp_path, image_size=8, validation_split=1.5)


def test_empty_class_folder_and_empty_root_are_errors(tmp_path):
    with pytest.raises(ValueError, match="No class folders in"):
        tt.data.image_folder(tmp_path, image_size=8)
    _write(tmp_path / "good" / "x.png", _encode(Image.fromarray(RGB), "PNG"))
    (tmp_path / "empty_class").mkdir()
    _write(tmp_path / "broken" / "x.png", b"")
    with pytest.raises(ValueError, match=r"no usable images .*\['broken', 'empty_class'\]"):
        tt.data.image_folder(tmp_path, image_size=8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tt.data.image_folder(tmp_path / "nope", image_size=8)

"""A folder of every kind of awkward file: usable ones load as RGB, broken ones are
skipped with their reason (or named in strict mode), and nothing fails mid-epoch."""

import io
import os

import numpy as np
import pytest
from PIL import Image

import tfx_transfer as tt
from tfx_transfer.data import UnusableImagesError

RGB = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


USABLE = {
    "rgb.png": lambda: _encode(Image.fromarray(RGB), "PNG"),
    "photo.jpg": lambda: _encode(Image.fromarray(RGB), "JPEG"),
    "png_named.jpg": lambda: _encode(Image.fromarray(RGB), "PNG"),  # wrong extension
    "cmyk.jpg": lambda: _encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"),
    "deep16.png": lambda: _encode(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257), "PNG"),
    "palette.png": lambda: _encode(Image.fromarray(RGB).convert("P"), "PNG"),
    "gray.png": lambda: _encode(Image.fromarray(RGB[..., 0]), "PNG"),
    "rgba.png": lambda: _encode(Image.fromarray(np.dstack([RGB, RGB[..., :1]])), "PNG"),
    "still.gif": lambda: _encode(Image.fromarray(RGB).convert("P"), "GIF"),
    "bitmap.bmp": lambda: _encode(Image.fromarray(RGB), "BMP"),
}
BROKEN = {
    "empty.png": (lambda: b"", "empty file"),
    "truncated.png": (lambda: USABLE["rgb.png"]()[:60], "corrupt image"),
    "truncated.jpg": (lambda: USABLE["photo.jpg"]()[:200], "truncated JPEG"),
    "random.jpg": (lambda: b"\xff\xd8\xff\xe0" + os.urandom(300) + b"\xff\xd9", "corrupt image"),
    "notes.txt": (lambda: b"just text", "not an image"),
}


@pytest.fixture
def zoo(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    for name, make in USABLE.items():
        (folder / name).write_bytes(make())
    for name, (make, _) in BROKEN.items():
        (folder / name).write_bytes(make())
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")  # unreadable path
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "ok.png").write_bytes(USABLE["rgb.png"]())
    return tmp_path


def test_zoo_is_sorted_into_usable_and_skipped_files(zoo):
    with pytest.warns(
        UserWarning, match=f"Skipped {len(BROKEN) + 1} of {len(USABLE) + len(BROKEN) + 2}"
    ):
        data = tt.data.image_folder(zoo, image_size=16, batch_size=4)
    assert data.class_counts == {"other": 1, "zoo": len(USABLE)}
    reasons = {os.path.basename(path): reason for path, reason in data.skipped}
    for name, (_, reason) in BROKEN.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert reasons["dangling.png"].startswith("unreadable")
    for _ in range(2):  # two full epochs, no error mid-way
        images = np.concatenate([x.numpy() for x, _ in data.train])
        assert images.shape == (len(USABLE) + 1, 16, 16, 3)
        assert 0 <= images.min() and images.max() <= 255


def test_strict_mode_names_every_broken_file(zoo):
    with pytest.raises(UnusableImagesError) as caught:
        tt.data.image_folder(zoo, image_size=16, strict=True)
    for name in [*BROKEN, "dangling.png"]:
        assert name in str(caught.value)

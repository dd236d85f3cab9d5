"""SavedModel export of detectors: decoding and NMS inside, both serving signatures."""

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer import export as export_module
from tfx_transfer.detection import build_detector
from tfx_transfer.export import ExportVerificationError
from tfx_transfer.surgery import locate_classifier

SIZE = 64
NAMES = ["cat", "dog", "owl"]
OUTPUTS = {"boxes", "scores", "classes", "labels", "num_detections"}


# Faster R-CNN small (its defaults are a 1024-wide box head on 256 channels, for 512 px).
OPTIONS = {
    "faster_rcnn": {
        "feature_channels": 16,
        "head_units": 32,
        "roi_samples": 16,
        "train_proposals": 32,
        "test_proposals": 16,
    }
}


def confident_detector(arch, *, confident_class=1, expand=False):
    """A random detector whose class `confident_class` scores high everywhere, so that
    NMS keeps boxes (a random head alone scores below the decoders' thresholds)."""
    model = build_detector(
        arch,
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=(SIZE, SIZE, 3),
        class_names=NAMES,
        **OPTIONS.get(arch, {}),
    )
    if expand:
        model = tt.expand_classes(model, new_class_names=["kite", "drone"], freeze_old=True)
    located = locate_classifier(model)
    rng = np.random.default_rng(confident_class)
    for index, layer in enumerate(located.layers):
        if located.widths[index] > 1:  # Faster R-CNN's box deltas keep their biases
            continue
        bias = rng.normal(-4.0, 0.5, layer.bias.shape).astype("float32")
        bias[located.channels([confident_class], layer=index)] = 3.0
        layer.bias.assign(bias)
    return model


def pixel_images(count, seed=0):
    """Whole-number pixels, so that PNG bytes decode to the same floats."""
    return np.round(np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3))).astype(
        "float32"
    )


LOAD_AND_CALL = """
import sys, numpy as np, tensorflow as tf
assert "tfx_transfer" not in sys.modules and "keras_cv" not in sys.modules
images = np.load(sys.argv[1])
for export, output in zip(sys.argv[2::2], sys.argv[3::2]):  # several SavedModels, one process
    loaded = tf.saved_model.load(export)
    results = {}
    for n in (1, 2):
        pixels = loaded.signatures["serving_default"](images=tf.constant(images[:n], tf.float32))
        encoded = tf.stack([tf.io.encode_png(i) for i in images[:n].astype(np.uint8)])
        raw = loaded.signatures["serving_bytes"](image_bytes=encoded)
        for prefix, out in (("pixels", pixels), ("bytes", raw)):
            for key, value in out.items():
                value = value.numpy()
                results[f"{prefix}{n}_{key}"] = value.astype(str) if value.dtype == object else value
    np.savez(output, **results)
assert "tfx_transfer" not in sys.modules and "keras_cv" not in sys.modules
"""
IMAGES = pixel_images(2)


class Exported(NamedTuple):
    model: keras.Model
    names: np.ndarray
    path: Path
    expected: dict  # n -> model.predict(IMAGES[:n]), taken right after exporting


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """exported(arch, expand) builds a confident detector and exports it (verify=True: checked
    in-process too) once per module: exporting is the costly part, shared by the tests below."""
    root = tmp_path_factory.mktemp("exported")
    done = {}

    def export(arch, expand):
        if (arch, expand) not in done:
            keras.utils.set_random_seed(0)
            model = confident_detector(arch, expand=expand)
            names = np.array(tt.class_info(model).class_names)
            path = tt.export_saved_model(model, root / arch)
            expected = {n: model.predict(IMAGES[:n], verbose=0) for n in (1, 2)}
            done[arch, expand] = Exported(model, names, path, expected)
        return done[arch, expand]

    return export


ARCHS = [("retinanet", True), ("yolov8", False), ("faster_rcnn", True)]  # (arch, expand)


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """arch -> what ONE fresh process, without tfx_transfer, got from both SavedModels."""
    root = tmp_path_factory.mktemp("served")
    np.save(root / "images.npy", IMAGES)
    (root / "call.py").write_text(LOAD_AND_CALL)
    pairs = [str(p) for arch, expand in ARCHS for p in (exported(arch, expand).path, root / arch)]
    result = subprocess.run(
        [sys.executable, str(root / "call.py"), str(root / "images.npy"), *pairs],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return {arch: np.load(root / f"{arch}.npz") for arch, _ in ARCHS}


@pytest.mark.slow
@pytest.mark.parametrize("arch, expand", ARCHS)
def test_fresh_process_serves_decoded_detections_like_predict(exported, served, arch, expand):
    _, names, path, expected_of = exported(arch, expand)
    outputs = served[arch]
    root = path.parent
    assert path == root / "1" and sorted(os.listdir(root)) == ["1"]
    assert (path / "assets" / "labels.txt").read_text().splitlines() == list(names)
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()

    for n in (1, 2):
        expected = expected_of[n]
        assert expected["num_detections"].min() > 0  # something to compare
        for prefix in ("pixels", "bytes"):
            got = {key: outputs[f"{prefix}{n}_{key}"] for key in OUTPUTS}
            np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
            assert got["boxes"].shape == (n, 100, 4) and got["labels"].shape == (n, 100)
            for image in range(n):
                count = expected["num_detections"][image]
                np.testing.assert_allclose(
                    got["boxes"][image, :count], expected["boxes"][image, :count], atol=1e-4
                )
                np.testing.assert_allclose(
                    got["scores"][image, :count], expected["confidence"][image, :count], atol=1e-4
                )
                np.testing.assert_array_equal(
                    got["classes"][image, :count], expected["classes"][image, :count]
                )
                np.testing.assert_array_equal(
                    got["labels"][image, :count], names[expected["classes"][image, :count]]
                )
                assert set(got["labels"][image, count:]) <= {""}  # padding
            assert set(got["labels"][0, : expected["num_detections"][0]]) == {"dog"}


def test_detector_versions_count_up_and_are_verified(exported):
    # The 3-class YOLOv8 of the round trip (its expected outputs are taken when exporting,
    # before this test changes its confident class).
    model, _, first, _ = exported("yolov8", False)
    root = first.parent
    loaded = tf.saved_model.load(str(first))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    assert set(loaded.signatures["serving_default"].structured_outputs) == OUTPUTS
    assert set(loaded.signatures["serving_bytes"].structured_input_signature[1]) == {"image_bytes"}
    # the detector matches its export; once its confident class changes, it does not
    export_module.verify_detector_export(first, model)
    located = locate_classifier(model)
    for layer in located.layers:
        bias = layer.bias.numpy()
        bias[located.channels([1])], bias[located.channels([2])] = -4.0, 3.0
        layer.bias.assign(bias)
    with pytest.raises(ExportVerificationError, match="Signature 'serving_default' .* differs"):
        export_module.verify_detector_export(first, model)

    with pytest.raises(ValueError, match="has 3 classes but 2 class names"):
        tt.export_saved_model(model, root, class_names=["a", "b"])
    with pytest.raises(FileExistsError, match=r"Version 1 already exists .* \(2\)"):
        tt.export_saved_model(model, root, version=1)
    assert sorted(os.listdir(root)) == ["1"]  # nothing half-written left behind

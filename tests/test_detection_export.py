"""SavedModel export of detectors: decoding and NMS inside, both serving signatures."""

import os
import subprocess
import sys

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


def confident_detector(arch, *, confident_class=1, expand=False):
    """A random detector whose class `confident_class` scores high everywhere, so that
    NMS keeps boxes (a random head alone scores below the decoders' thresholds)."""
    model = build_detector(
        arch, "mobilenet_v3_small", 3, weights=None, input_shape=(SIZE, SIZE, 3), class_names=NAMES
    )
    if expand:
        model = tt.expand_classes(model, new_class_names=["kite", "drone"], freeze_old=True)
    located = locate_classifier(model)
    rng = np.random.default_rng(confident_class)
    for layer in located.layers:
        bias = rng.normal(-4.0, 0.5, layer.bias.shape).astype("float32")
        bias[located.channels([confident_class])] = 3.0
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
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
results = {}
for n in (1, 2):
    pixels = loaded.signatures["serving_default"](images=tf.constant(images[:n], tf.float32))
    encoded = tf.stack([tf.io.encode_png(i) for i in images[:n].astype(np.uint8)])
    raw = loaded.signatures["serving_bytes"](image_bytes=encoded)
    for prefix, out in (("pixels", pixels), ("bytes", raw)):
        for key, value in out.items():
            value = value.numpy()
            results[f"{prefix}{n}_{key}"] = value.astype(str) if value.dtype == object else value
np.savez(sys.argv[3], **results)
assert "tfx_transfer" not in sys.modules and "keras_cv" not in sys.modules
"""


@pytest.mark.slow
@pytest.mark.parametrize("arch, expand", [("retinanet", True), ("yolov8", False)])
def test_fresh_process_serves_decoded_detections_like_predict(tmp_path, arch, expand):
    model = confident_detector(arch, expand=expand)
    names = np.array(tt.class_info(model).class_names)
    path = tt.export_saved_model(model, tmp_path / arch)  # verify=True: checked in-process too
    assert path == tmp_path / arch / "1" and sorted(os.listdir(tmp_path / arch)) == ["1"]
    assert (path / "assets" / "labels.txt").read_text().splitlines() == list(names)
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()

    images = pixel_images(2)
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "call.py").write_text(LOAD_AND_CALL)
    result = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "call.py"),
            str(path),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = np.load(tmp_path / "out.npz")
    for n in (1, 2):
        expected = model.predict(images[:n], verbose=0)
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


def test_detector_versions_count_up_and_are_verified(tmp_path):
    model = confident_detector("retinanet")
    root = tmp_path / "voc"
    first = tt.export_saved_model(model, root, verify=False, warmup=False)
    loaded = tf.saved_model.load(str(first))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    assert set(loaded.signatures["serving_default"].structured_outputs) == OUTPUTS
    assert set(loaded.signatures["serving_bytes"].structured_input_signature[1]) == {"image_bytes"}
    # the detector matches its export; once its confident class changes, it does not
    export_module.verify_detector_export(first, model)
    located = locate_classifier(model)
    bias = located.layer.bias.numpy()
    bias[located.channels([1])], bias[located.channels([2])] = -4.0, 3.0
    located.layer.bias.assign(bias)
    with pytest.raises(ExportVerificationError, match="Signature 'serving_default' .* differs"):
        export_module.verify_detector_export(first, model)

    with pytest.raises(ValueError, match="has 3 classes but 2 class names"):
        tt.export_saved_model(model, root, class_names=["a", "b"])
    with pytest.raises(FileExistsError, match=r"Version 1 already exists .* \(2\)"):
        tt.export_saved_model(model, root, version=1)
    assert sorted(os.listdir(root)) == ["1"]  # nothing half-written left behind

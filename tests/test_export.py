import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import conv_classifier, random_images

import tfx_transfer as tt
from tfx_transfer import export as export_module
from tfx_transfer.export import ExportVerificationError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return conv_classifier(4, class_names=["cat", "dog", "fox", "owl"])


def test_versions_count_up_and_are_never_overwritten(tmp_path, model):
    root = tmp_path / "animals"
    assert tt.export_saved_model(model, root, verify=False, warmup=False) == root / "1"
    assert tt.export_saved_model(model, root, verify=False, warmup=False).name == "2"
    assert tt.export_saved_model(model, root, version=7, verify=False, warmup=False).name == "7"
    assert tt.export_saved_model(model, root, verify=False, warmup=False).name == "8"
    before = (root / "7" / "saved_model.pb").read_bytes()
    with pytest.raises(
        FileExistsError, match="Version 7 already exists .* next free number \\(9\\)"
    ):
        tt.export_saved_model(model, root, version=7)
    assert (root / "7" / "saved_model.pb").read_bytes() == before
    with pytest.raises(ValueError, match="version must be a positive integer; got 0"):
        tt.export_saved_model(model, root, version=0)


def test_a_failed_export_leaves_nothing_and_the_next_one_succeeds(tmp_path, model, monkeypatch):
    root = tmp_path / "animals"
    (root / ".tmp-5-deadbeef").mkdir(parents=True)  # left by an export that was killed
    (root / ".tmp-5-deadbeef" / "saved_model.pb").write_bytes(b"half")

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_warmup", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        tt.export_saved_model(model, root)
    assert os.listdir(root) == []  # no version, no temporary, the stale one cleaned up
    monkeypatch.undo()
    assert tt.export_saved_model(model, root).name == "1"
    assert sorted(os.listdir(root)) == ["1"]


def test_verification_rejects_an_export_that_differs(tmp_path, model):
    path = tt.export_saved_model(model, tmp_path / "animals", warmup=False)
    other = conv_classifier(4)
    other.get_layer("predictions").bias.assign([0.0, 1.0, 2.0, 3.0])  # surely different
    with pytest.raises(ExportVerificationError, match="Signature 'serving_default' .* differs"):
        export_module.verify_export(path, other)


LOAD_AND_CALL = """
import sys, numpy as np, tensorflow as tf
assert "tfx_transfer" not in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
results = {}
for n in (1, 3):
    pixels = loaded.signatures["serving_default"](images=tf.constant(images[:n], tf.float32))
    encoded = tf.stack([tf.io.encode_png(i) for i in images[:n].astype(np.uint8)])
    raw = loaded.signatures["serving_bytes"](image_bytes=encoded)
    for prefix, out in (("pixels", pixels), ("bytes", raw)):
        for key, value in out.items():
            value = value.numpy()
            results[f"{prefix}{n}_{key}"] = value.astype(str) if value.dtype == object else value
np.savez(sys.argv[3], **results)
assert "tfx_transfer" not in sys.modules
"""


def test_fresh_process_serves_both_signatures_like_the_model(tmp_path):
    base = conv_classifier(90, class_names=[f"old_{i}" for i in range(90)])
    expanded = tt.expand_classes(base, new_class_names=["new_a", "new_b"], freeze_old=True)
    path = tt.export_saved_model(expanded, tmp_path / "shapes92", top_k=3)
    names = np.array(tt.class_info(expanded).class_names)
    assert (path / "assets" / "labels.txt").read_text().splitlines() == list(names)

    images = np.round(random_images(3))
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "call.py"
    script.write_text(LOAD_AND_CALL)
    result = subprocess.run(
        [
            sys.executable,
            str(script),
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
    expected = tf.nn.softmax(expanded.predict(images, verbose=0)).numpy()
    for n in (1, 3):
        for prefix in ("pixels", "bytes"):
            probabilities = outputs[f"{prefix}{n}_probabilities"]
            assert probabilities.shape == (n, 92)
            np.testing.assert_allclose(probabilities, expected[:n], atol=1e-5)
            top = np.argsort(-expected[:n], axis=1)[:, :3]
            np.testing.assert_array_equal(outputs[f"{prefix}{n}_classes"], top)
            labels = outputs[f"{prefix}{n}_labels"].astype(str)
            np.testing.assert_array_equal(labels, names[top])
            np.testing.assert_allclose(
                outputs[f"{prefix}{n}_scores"],
                np.sort(expected[:n], axis=1)[:, ::-1][:, :3],
                atol=1e-5,
            )


def test_warmup_file_holds_prediction_logs_for_both_signatures(tmp_path, model):
    from tensorflow_serving.apis import prediction_log_pb2

    path = tt.export_saved_model(model, tmp_path / "animals")
    records = list(
        tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    )
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    requests = {
        log.predict_log.request.model_spec.signature_name: log.predict_log.request for log in logs
    }
    assert set(requests) == {"serving_default", "serving_bytes"}
    assert requests["serving_default"].model_spec.name == "animals"
    pixels = tf.make_ndarray(requests["serving_default"].inputs["images"])
    assert pixels.shape == (1, 32, 32, 3) and pixels.dtype == np.float32
    encoded = tf.make_ndarray(requests["serving_bytes"].inputs["image_bytes"])
    assert tf.io.decode_png(encoded[0]).shape == (32, 32, 3)


def test_example_client_request_matches_the_signature(tmp_path, model):
    spec = importlib.util.spec_from_file_location(
        "serving_client", ROOT / "examples" / "serving_client.py"
    )
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    path = tt.export_saved_model(model, tmp_path / "animals", warmup=False)
    image = tmp_path / "x.png"
    image.write_bytes(tf.io.encode_png(np.zeros((20, 20, 3), np.uint8)).numpy())

    request = client.predict_request([image, image], "animals")
    signature = tf.saved_model.load(str(path)).signatures[request.model_spec.signature_name]
    expected = signature.structured_input_signature[1]
    assert set(request.inputs) == set(expected)
    for name, tensor in request.inputs.items():
        assert tf.dtypes.as_dtype(tensor.dtype) == expected[name].dtype
    answer = client.run_locally(str(path), request)
    assert len(answer["labels"]) == 2 and set(sum(answer["labels"], [])) <= {
        b"cat",
        b"dog",
        b"fox",
        b"owl",
    }
    body = client.rest_body([image])
    assert json.loads(json.dumps(body))["instances"][0]["image_bytes"]["b64"]


def test_tflite_conversion_matches_the_model(tmp_path):
    base = conv_classifier(3, class_names=["a", "b", "c"])
    expanded = tt.expand_classes(base, new_class_names=["d"], freeze_old=True)
    path = tt.export_tflite(expanded, tmp_path / "model.tflite")
    assert path.is_file() and sorted(os.listdir(tmp_path)) == ["model.tflite"]
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (image_input,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(image_input["shape"]) == [1, 32, 32, 3] and list(output["shape"]) == [1, 4]
    image = random_images(1)
    interpreter.set_tensor(image_input["index"], image)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(output["index"]), expanded.predict(image, verbose=0), atol=1e-4
    )

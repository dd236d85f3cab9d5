import numpy as np
import pytest
import tensorflow as tf
from helpers import conv_classifier, random_images

import tfx_transfer as tt


def test_top_k_names_and_probabilities_from_arrays_and_files(tmp_path):
    model = conv_classifier(4, class_names=["a", "b", "c", "d"])
    images = random_images(2, shape=(40, 40, 3))  # resized to the model's 32x32
    path = tmp_path / "one.png"
    path.write_bytes(tf.io.encode_png(images[0].astype(np.uint8)).numpy())

    results = tt.predict_images(model, [images[0], str(path), images[1]], top_k=3)
    assert len(results) == 3
    for result in results:
        assert len(result) == 3
        assert {name for name, _ in result} <= {"a", "b", "c", "d"}
        scores = [score for _, score in result]
        assert scores == sorted(scores, reverse=True)
    full = tt.predict_images(model, images, top_k=10)  # top_k is capped at the class count
    assert [len(r) for r in full] == [4, 4]
    assert sum(score for _, score in full[0]) == pytest.approx(1.0, abs=1e-5)

    logits = model.predict(tf.image.resize(images, (32, 32)), verbose=0)
    best = [["a", "b", "c", "d"][i] for i in logits.argmax(axis=1)]
    assert [r[0][0] for r in full] == best


def test_missing_file_and_bad_array_are_named(tmp_path):
    model = conv_classifier(2)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        tt.predict_images(model, str(tmp_path / "nope.png"))
    with pytest.raises(ValueError, match=r"RGB image array \(H, W, 3\)"):
        tt.predict_images(model, [np.zeros((8, 8))])

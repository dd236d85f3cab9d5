import keras
import numpy as np
import pytest

from tfx_transfer.core.preprocessing import ImagePreprocessing


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.inception_v3.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
    ],
)
def test_matches_keras_applications(mode, reference):
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = reference(images.copy())
    np.testing.assert_allclose(
        ImagePreprocessing(mode)(images).numpy(), expected, rtol=1e-5, atol=1e-4
    )


def test_none_is_identity_and_unknown_mode_is_an_error():
    images = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(ImagePreprocessing("none")(images).numpy(), images)
    with pytest.raises(ValueError, match="Unknown preprocessing mode 'bgr'"):
        ImagePreprocessing("bgr")

import os
import subprocess
import sys


def test_wrong_keras_backend_fails_at_import_with_a_clear_message():
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", "import tfx_transfer"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ImportError: tfx_transfer needs the TensorFlow backend of Keras" in result.stderr
    assert "'jax'" in result.stderr and "KERAS_BACKEND=tensorflow" in result.stderr

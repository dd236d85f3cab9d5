import keras
import numpy as np
import pytest
from helpers import random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.core.metadata import ClassMetadata


def test_metadata_survives_save_and_load_model(tmp_path):
    model = tiny_classifier(3, class_names=["a", "b", "c"], activation="softmax")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = tt.load_model(path)
    assert isinstance(loaded, tt.TransferModel)
    assert tt.class_info(loaded) == tt.class_info(model)
    images = random_images(2)
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    )
    # Plain Keras loading in safe mode works as well once the toolkit's objects are registered.
    tt.register_keras_objects()
    plain = keras.saving.load_model(path, safe_mode=True)
    assert tt.class_info(plain).class_names == ("a", "b", "c")


def test_metadata_round_trips_ids_and_history():
    meta = ClassMetadata(("x", "y"), class_ids=(3, 7), history=({"op": "expand", "added": ["y"]},))
    assert ClassMetadata.from_config(meta.get_config()) == meta
    assert ClassMetadata.from_names(["x"]).class_ids == (0,)


def test_foreign_models_get_default_names():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert tt.class_info(model).class_names == ("class_0", "class_1", "class_2")


def test_bad_metadata_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="at least one class name"):
        ClassMetadata(())
    with pytest.raises(ValueError, match="2 class names but 1 class ids"):
        ClassMetadata(("a", "b"), class_ids=(1,))
    with pytest.raises(ValueError, match="Unknown activation 'relu'"):
        ClassMetadata(("a",), activation="relu")


def test_load_model_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        tt.load_model(tmp_path / "missing.keras")
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="reads Keras v3 `.keras` files"):
        tt.load_model(tmp_path / "weights.h5")

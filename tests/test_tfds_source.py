"""TFDS through `tfds.testing.mock_data`; the network is never reached."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tensorflow_datasets

import tfx_transfer as tt
from tfx_transfer.data import tfds_prepare


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(host):
        raise AssertionError(f"a test tried to reach {host}")

    monkeypatch.setattr(tfds_prepare, "can_connect", refuse)


def test_mock_cats_vs_dogs_gives_batches_names_and_stratified_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: True)
    with tensorflow_datasets.testing.mock_data(num_examples=40):
        data = tt.data.tfds(
            "cats_vs_dogs",
            image_size=24,
            data_dir=tmp_path,
            batch_size=8,
            validation_split=0.25,
            seed=0,
        )
        assert data.class_names == ["cat", "dog"]
        assert sum(data.class_counts.values()) == 40
        images, labels = next(iter(data.train))
        assert images.shape[1:] == (24, 24, 3) and images.dtype.name == "float32"
        assert labels.dtype.name == "int32"
        validation = np.concatenate([y.numpy() for _, y in data.validation])
        train = np.concatenate([y.numpy() for _, y in data.train])
        assert len(validation) + len(train) == 40
        for label, count in enumerate(data.class_counts.values()):
            assert (validation == label).sum() == round(count * 0.25)


def test_offline_message_is_fast_and_names_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_prepare, "can_connect", lambda host: False)
    started = time.monotonic()
    with pytest.raises(tt.data.DatasetUnavailableError) as caught:
        tt.data.tfds("cats_vs_dogs", image_size=32, data_dir=tmp_path)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "'cats_vs_dogs' is not prepared" in message
    assert "no connection to download.microsoft.com" in message
    assert "786.67 MiB" in message
    assert str(tmp_path) in message and "tfds build cats_vs_dogs" in message
    with pytest.raises(tt.data.DatasetUnavailableError, match="download=False"):
        tt.data.tfds("cats_vs_dogs", image_size=32, data_dir=tmp_path, download=False)

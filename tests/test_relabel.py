import numpy as np
import pytest
from helpers import random_images

import tfx_transfer as tt


def labels_of(split):
    return np.concatenate([np.asarray(y) for _, y in split])


def test_labels_follow_the_model_order_and_counts_cover_every_class():
    data = tt.data.arrays(random_images(6), np.array([0, 1, 0, 1, 0, 1]), class_names=["b", "x"])
    aligned = tt.data.align_labels(data, ["a", "b", "c", "x"])
    assert aligned.class_names == ["a", "b", "c", "x"]
    assert sorted(labels_of(aligned.train).tolist()) == [1, 1, 1, 3, 3, 3]
    assert aligned.class_counts == {"a": 0, "b": 3, "c": 0, "x": 3}


def test_unknown_data_classes_are_named():
    data = tt.data.arrays(random_images(2), np.array([0, 1]), class_names=["b", "kite"])
    with pytest.raises(ValueError, match=r"classes \['kite'\] are not among the model's 2"):
        tt.data.align_labels(data, ["a", "b"])

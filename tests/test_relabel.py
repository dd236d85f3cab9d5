import numpy as np
import pytest
from helpers import random_images

import tfx_transfer as tt


def test_labels_follow_the_model_order_and_counts_cover_every_class():
    labels = np.array([0, 1, 0, 1, 0, 1])
    images = np.zeros((6, 4, 4, 3), "float32") + 100 * labels[:, None, None, None]  # 0 = b, 100 = x
    data = tt.data.arrays(images, labels, class_names=["b", "x"])
    aligned = tt.data.align_labels(data, ["a", "b", "c", "x"])
    assert aligned.class_names == ["a", "b", "c", "x"]
    pairs = {(int(x[0, 0, 0]), int(y)) for xs, ys in aligned.train for x, y in zip(xs, ys)}
    assert pairs == {(0, 1), (100, 3)}
    assert aligned.class_counts == {"a": 0, "b": 3, "c": 0, "x": 3}


def test_unknown_data_classes_are_named():
    data = tt.data.arrays(random_images(2), np.array([0, 1]), class_names=["b", "kite"])
    with pytest.raises(ValueError, match=r"classes \['kite'\] are not among the model's 2"):
        tt.data.align_labels(data, ["a", "b"])

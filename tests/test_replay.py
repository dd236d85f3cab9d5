import numpy as np
import pytest

import tfx_transfer as tt


def test_random_exemplars_per_class_deterministic_and_capped():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 6)
    keep = tt.data.select_exemplars(labels, 3, seed=1)
    assert np.bincount(labels[keep]).tolist() == [3, 2, 3]  # class 1 has only 2
    assert np.array_equal(keep, tt.data.select_exemplars(labels, 3, seed=1))
    assert not np.array_equal(keep, tt.data.select_exemplars(labels, 3, seed=2))
    only = tt.data.select_exemplars(labels, 2, classes=[2])
    assert set(labels[only]) == {2} and len(only) == 2


def test_herding_picks_the_examples_that_track_the_class_mean():
    # One class: points at -1, 0, 1 and an outlier at 10; mean 2.5.
    embeddings = np.array([[-1.0], [0.0], [1.0], [10.0]])
    keep = tt.data.select_exemplars([0, 0, 0, 0], 2, embeddings=embeddings)
    # First the point nearest 2.5 (1.0), then the one making the mean nearest 2.5 (10 -> 5.5
    # vs 0 -> 0.5: |5.5-2.5| = 3 > |0.5-2.5| = 2), so 0.0.
    assert keep.tolist() == [1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"per_class": 0}, "per_class must be at least 1"),
        ({"per_class": 1, "classes": [5]}, r"Classes \[5\] have no examples"),
        ({"per_class": 1, "embeddings": np.zeros((2, 3))}, "Got 2 embeddings for 4 labels"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tt.data.select_exemplars([0, 0, 1, 1], **kwargs)

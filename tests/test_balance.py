import numpy as np
import pytest

import tfx_transfer as tt


@pytest.fixture
def unbalanced():
    labels = np.repeat([0, 1, 2], [10, 50, 200])
    images = np.zeros((len(labels), 2, 2, 3), np.uint8)
    return tt.data.arrays(images, labels, class_names=["a", "b", "c"], batch_size=50)


def test_class_statistics_and_balanced_weights(unbalanced):
    stats = tt.data.class_statistics(unbalanced)
    assert stats.counts == {"a": 10, "b": 50, "c": 200}
    assert stats.total == 260 and stats.imbalance_ratio == 20.0
    assert "imbalance ratio 20.0" in str(stats)
    weights = tt.data.class_weights(unbalanced)
    assert weights == pytest.approx({0: 260 / 30, 1: 260 / 150, 2: 260 / 600})
    # every class then weighs the same in the loss
    assert [weights[i] * n for i, n in enumerate([10, 50, 200])] == pytest.approx([260 / 3] * 3)
    with pytest.raises(ValueError, match="Unknown class weight mode 'inverse'"):
        tt.data.class_weights(unbalanced, "inverse")


@pytest.mark.parametrize(
    "target, expected",
    [("uniform", [1 / 3, 1 / 3, 1 / 3]), ({"a": 0.5, "b": 0.3, "c": 0.2}, [0.5, 0.3, 0.2])],
)
def test_resampling_reaches_the_target_within_five_percent(unbalanced, target, expected):
    stream = tt.data.resample(unbalanced, target, batch_size=100, seed=0)
    labels = np.concatenate([y.numpy() for _, y in stream.take(20)])
    assert labels.size == 2000
    fractions = np.bincount(labels, minlength=3) / labels.size
    np.testing.assert_allclose(fractions, expected, atol=0.05)


def test_resample_rejects_bad_targets(unbalanced):
    with pytest.raises(ValueError, match=r"classes that do not exist: \['z'\]"):
        tt.data.resample(unbalanced, {"z": 1.0})
    with pytest.raises(ValueError, match="must give 3 non-negative fractions"):
        tt.data.resample(unbalanced, [0.5, 0.5])

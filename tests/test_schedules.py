import math

import keras
import numpy as np
import pytest

import tfx_transfer as tt
from tfx_transfer.training import CyclicalLearningRate, OneCycle


def values(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_warmup_cosine_closed_form():
    schedule = tt.training.warmup_cosine(
        1e-3, total_steps=110, warmup_steps=10, final_learning_rate=1e-5
    )
    got = values(schedule, [0, 5, 10, 60, 110])
    cosine = lambda t: 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t)) / 2  # noqa: E731
    np.testing.assert_allclose(got, [0.0, 5e-4, 1e-3, cosine(0.5), 1e-5], rtol=1e-5, atol=1e-9)


def test_step_decay():
    schedule = tt.training.step_decay(0.1, [10, 20], factor=0.5)
    np.testing.assert_allclose(
        values(schedule, [0, 10, 11, 21]), [0.1, 0.1, 0.05, 0.025], rtol=1e-6
    )


@pytest.mark.parametrize(
    "mode, expected",
    [
        # steps 0, 5 (peak), 10 (trough), 15 (second peak), 12 (rising in cycle 2)
        ("triangular", [0.1, 1.0, 0.1, 1.0, 0.1 + 0.9 * 0.4]),
        ("triangular2", [0.1, 1.0, 0.1, 0.1 + 0.9 / 2, 0.1 + 0.9 * 0.4 / 2]),
        (
            "exp_range",
            [0.1, 0.1 + 0.9 * 0.9**5, 0.1, 0.1 + 0.9 * 0.9**15, 0.1 + 0.9 * 0.4 * 0.9**12],
        ),
    ],
)
def test_cyclical_closed_form(mode, expected):
    schedule = CyclicalLearningRate(0.1, 1.0, step_size=5, mode=mode, gamma=0.9)
    np.testing.assert_allclose(values(schedule, [0, 5, 10, 15, 12]), expected, rtol=1e-5)


def test_one_cycle_closed_form_and_serialization():
    schedule = OneCycle(
        1.0, total_steps=100, warmup_fraction=0.3, div_factor=10, final_div_factor=100
    )
    got = values(schedule, [0, 15, 30, 65, 100, 150])
    mid_rise = 1.0 + (0.1 - 1.0) * (1 + math.cos(math.pi * 0.5)) / 2
    mid_fall = 0.001 + (1.0 - 0.001) * (1 + math.cos(math.pi * 0.5)) / 2
    np.testing.assert_allclose(got, [0.1, mid_rise, 1.0, mid_fall, 0.001, 0.001], rtol=1e-5)
    config = keras.optimizers.SGD(schedule).get_config()
    restored = keras.optimizers.schedules.deserialize(config["learning_rate"])
    np.testing.assert_allclose(values(restored, [15, 65]), got[[1, 3]], rtol=1e-6)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="Unknown mode 'saw'"):
        CyclicalLearningRate(0.1, 1.0, 5, mode="saw")
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        tt.training.warmup_cosine(1e-3, total_steps=10, warmup_steps=10)

"""Models saved earlier still load with `tt.load_model` (safe mode) and give the same outputs.

tests/fixtures/regression holds one small model of every kind the toolkit saves (classifiers
with column blocks, a class branch, a sigmoid head with its preprocessing layer; RetinaNet,
YOLOv8 and Faster R-CNN with frozen channels or a branched head; DeepLabV3+; some compiled,
with the toolkit's learning-rate schedules), written by scripts/make_regression_fixtures.py
with a fixed input and the raw outputs on it, and a manifest of their classes, class
metadata and the registered Keras names in their configs.
The shipped base model is checked the same way. Only public names (`tt.*`) are used here:
module paths may move, but registered names, saved models and outputs must not change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import tfx_transfer as tt

FIXTURES = Path(__file__).parent / "fixtures" / "regression"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]

# KerasCV builds DeepLabV3+ with a list of one input and warns when called with a tensor.
pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")


def registered_names(config: Any) -> list[str]:
    """Every registered name ("package>Class") in a serialized Keras config, sorted."""
    if isinstance(config, dict):
        own = config.get("registered_name")
        found = {own} if isinstance(own, str) and ">" in own else set()
        return sorted(found.union(*(registered_names(v) for v in config.values())))
    if isinstance(config, list):
        return sorted(set().union(*(registered_names(v) for v in config)))
    return []


def load(record: dict[str, Any]) -> keras.Model:
    """Loads a fixture; Keras warns (UserWarning) about optimizer state it could not load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if record["file"] is None:
            model = tt.demo.base_model()
        else:
            model = tt.load_model(FIXTURES / record["file"])
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
    return model


@pytest.mark.parametrize("name", list(MANIFEST))
def test_fixture_loads_in_safe_mode_with_the_same_outputs_and_names(name):
    record = MANIFEST[name]
    model = load(record)
    with np.load(FIXTURES / f"{name}.npz") as stored:
        stored = dict(stored)

    result = model(stored.pop("x").astype("float32"), training=False)
    if isinstance(result, dict):
        result = {f"output.{key}": value for key, value in result.items()}
    else:
        result = {"output": result}
    assert sorted(result) == sorted(stored)
    for key, value in result.items():
        # Bit for bit: on the machine that wrote the fixtures, every process gives the same
        # float32 outputs, with any number of threads (checked on 1 and 2 cores). Another CPU
        # type may differ in the last bits (oneDNN held to AVX2 instead of AVX-512: up to 3e-7
        # of the largest output; oneDNN off: 8e-6): write the fixtures again there, at the
        # commit before the change under test.
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), stored[key], err_msg=key)

    assert type(model).__name__ == record["model_class"]
    assert model.compiled == record["compiled"]
    info = tt.class_info(model)
    assert info.class_names == tuple(record["class_names"])
    assert json.loads(json.dumps(info.get_config())) == record["class_metadata"]
    # Saved again, the model writes the same registered names.
    saved = registered_names(keras.saving.serialize_keras_object(model))
    assert saved == record["registered_names"]


def test_registered_names_resolve_in_a_fresh_process():
    """`tt.load_model` imports the modules that register the classes a file names (in this
    process earlier tests may have imported them already, which would hide a gap)."""
    code = (
        "import json, sys, keras\n"
        "from tfx_transfer.core.saving import import_registering_modules\n"
        "missing = []\n"
        "for path, names in json.loads(sys.argv[1]):\n"
        "    import_registering_modules(path)\n"
        "    missing += [n for n in names if keras.saving.get_registered_object(n) is None]\n"
        "print(json.dumps(missing))"
    )
    files = [
        (str(FIXTURES / record["file"]), record["registered_names"])
        for record in MANIFEST.values()
        if record["file"] is not None
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []

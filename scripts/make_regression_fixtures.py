"""Writes the regression fixtures: one small model of every kind the toolkit saves,
with a fixed input and the model's raw outputs on it.

    python scripts/make_regression_fixtures.py            # tests/fixtures/regression, ~1 min
    python scripts/make_regression_fixtures.py OUT_DIR

For each fixture NAME it writes NAME.keras (`model.save`) and NAME.npz: `x`, uint8 images,
and `model(x, training=False)` on them as float32 (`output`, or `output.<key>` for each key
of a detector's dict of raw head outputs). Three of them are compiled, their optimizer
built, as the checkpoints of a training run are. `manifest.json` records each fixture's
model class, whether it is compiled, its class metadata and the registered Keras names in
its saved config, and the library versions. The shipped base model is not copied: only
its input and outputs are stored. `tests/test_regression_fixtures.py` loads the models with
`tt.load_model` and expects the same outputs bit for bit, which holds on the machine (CPU
type) that wrote them: write them again at the commit before a change that must not change
behaviour, on the test machine.

Small files, and outputs that depend on every layer:
- KerasCV's detector and segmenter heads are 256 channels wide whatever the backbone (a
  RetinaNet is 34 MB of float32 weights). Before the expansion, every kernel of at least
  4096 entries keeps 10% of its input rows at random, each entry at its sign times a
  magnitude that keeps the kernel's variance; the other rows become 0.
- Untrained, the BatchNorm layers' moving statistics are 0 and 1, and the activations of
  mobilenet_v3_small fade to about 1e-11 by its last layer; they are set to the statistics
  of their inputs on random images, as training would. Biases and BatchNorm scales and
  offsets get some noise, so that each shows where it was loaded.
- Keras stores the members of a `.keras` archive uncompressed; each archive is rewritten
  with DEFLATE, which `keras.saving.load_model` reads as well. Its members are unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_cv
import numpy as np
import tensorflow as tf

import tfx_transfer as tt

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests/fixtures/regression"
IMAGES = 2
DENSITY = 0.1  # share of the input rows a large kernel keeps
LARGE = 4096  # kernels with at least this many entries are thinned
OLD, NEW, NEWER = ["cat", "dog", "owl", "fox"], ["kite", "drone"], ["bee", "ant", "elk"]
SMALL_FASTER_RCNN = {
    "feature_channels": 16,
    "head_units": 32,
    "roi_samples": 16,
    "train_proposals": 32,
    "test_proposals": 16,
}


def all_weights(model: keras.Model) -> list[keras.Variable]:
    """The model's weights and its backbone's, also those the model does not use."""
    backbone = getattr(model, "backbone", None)
    both = [*model.weights, *(backbone.weights if backbone is not None else [])]
    return list({id(variable): variable for variable in both}.values())


def thin(model: keras.Model, seed: int = 0, *, unused_only: bool = False) -> keras.Model:
    """Makes every kernel of at least LARGE entries sparse and ternary, its variance kept.

    A kernel (..., inputs, outputs) keeps a DENSITY share of its input rows, at
    random (at least one), each entry with its sign at the magnitude
    std * sqrt(rows / kept rows); the other rows become 0.

    Args:
        model: a freshly built model (before any expansion, so that the frozen
            snapshots an expansion takes see the thinned weights).
        seed: int. Seed of the choice of rows.
        unused_only: bool. Only the backbone's weights that the model does not use
            (Faster R-CNN reads P4: the layers past it are saved, but an expansion
            builds them afresh instead of copying them).

    Returns:
        `model`, changed in place.
    """
    rng = np.random.default_rng(seed)
    used = {id(v) for v in model.weights}
    for variable in all_weights(model):
        if len(variable.shape) < 2 or np.prod(variable.shape) < LARGE:
            continue
        if unused_only and id(variable) in used:
            continue
        value = keras.ops.convert_to_numpy(variable)
        rows = value.reshape(-1, value.shape[-1])
        kept = max(1, round(DENSITY * len(rows)))
        thinned = np.zeros_like(rows)  # +0.0: a sign times 0 could be -0.0, which compresses badly
        chosen = rng.choice(len(rows), kept, replace=False)
        thinned[chosen] = np.sign(rows[chosen]) * value.std() * np.sqrt(len(rows) / kept)
        variable.assign(thinned.reshape(value.shape))
    return model


def vary_vectors(model: keras.Model, seed: int = 2) -> keras.Model:
    """Adds noise (standard deviation 0.1) to every vector weight: biases, BatchNorm scales
    and offsets, which are built as 0 or 1 and would not show where they were loaded.

    Args:
        model: a freshly built model.
        seed: int. Seed of the noise.

    Returns:
        `model`, changed in place.
    """
    rng = np.random.default_rng(seed)
    for variable in all_weights(model):
        if len(variable.shape) == 1:
            value = keras.ops.convert_to_numpy(variable)
            variable.assign(value + rng.normal(0.0, 0.1, value.shape).astype(value.dtype))
    return model


def calibrate_batchnorm(model: keras.Model, side: int, seed: int = 1) -> keras.Model:
    """Sets every BatchNormalization layer's moving mean and variance to those of its
    inputs on 8 random images, as training would.

    With `weights=None` they are 0 and 1, and the activations of an untrained
    mobilenet_v3_small fade to about 1e-11 by its last layer: outputs that small
    would hardly show a weight loaded into the wrong place. One forward pass in
    training mode with momentum 0 sets every layer's statistics at once; the
    layers' trainable flags and momentum are restored afterwards.

    Args:
        model: a freshly built (and thinned) model.
        side: int. The model's input size in pixels.
        seed: int. Seed of the images.

    Returns:
        `model`, changed in place.
    """
    layers = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    settings = [(layer.trainable, layer.momentum) for layer in layers]
    for layer in layers:
        layer.trainable, layer.momentum = True, 0.0
    images = np.random.default_rng(seed).integers(0, 256, (8, side, side, 3)).astype("float32")
    model(images, training=True)
    for layer, (trainable, momentum) in zip(layers, settings):
        layer.trainable, layer.momentum = trainable, momentum
    return model


def classifier(backbone: str = "mobilenet_v3_small", side: int = 32, **kwargs: Any) -> keras.Model:
    return tt.build_classifier(
        backbone,
        len(OLD),
        weights=None,
        input_shape=(side, side, 3),
        hidden_units=(16,),
        class_names=OLD,
        **kwargs,
    )


def detector(arch: str, **kwargs: Any) -> keras.Model:
    return tt.build_detector(
        arch,
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=(64, 64, 3),
        class_names=OLD[:3],
        **kwargs,
    )


def segmenter() -> keras.Model:
    return tt.build_segmenter(
        "deeplab_v3_plus",
        "mobilenet_v3_small",
        3,
        weights=None,
        input_shape=(64, 64, 3),
        class_names=["background", *OLD[:2]],
    )


def twice_frozen(model: keras.Model) -> keras.Model:
    """Expanded twice with the old columns frozen: three column blocks."""
    step1 = tt.expand_classes(model, new_class_names=NEW, freeze_old=True)
    return tt.expand_classes(step1, new_class_names=NEWER, freeze_old=True)


def frozen(model: keras.Model) -> keras.Model:
    return tt.expand_classes(model, new_class_names=NEW, freeze_old=True)


def branch(model: keras.Model) -> keras.Model:
    return tt.expand_classes(model, new_class_names=NEW, separate_branch=True)


def refined_and_reordered(model: keras.Model) -> keras.Model:
    """Refines "dog" (the other classes in frozen blocks), then reverses the classes with
    sparse ids."""
    refined = tt.refine_classes(model, classes=["dog"])
    return tt.reorder_classes(refined, tt.LabelMap(OLD[::-1], [1, 3, 7, 9]))


def compile_one_cycle(model: keras.Model) -> None:
    """As `tt.fine_tune` compiles a classifier stage with schedule="one_cycle"."""
    model.compile(
        keras.optimizers.Adam(tt.training.OneCycle(1e-3, 100)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def compile_cyclical(model: keras.Model) -> None:
    """A detector compiled with SGD on a cyclical rate, clipped (its own losses)."""
    rate = tt.training.CyclicalLearningRate(1e-4, 1e-3, 50)
    model.compile(optimizer=keras.optimizers.SGD(rate, momentum=0.9, global_clipnorm=10.0))


def compile_adamw(model: keras.Model) -> None:
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A model to save: `expand(build())`, with inputs of `side` x `side` pixels, compiled
    by `compile` (its optimizer built: a checkpoint saved while training holds its state)."""

    recipe: str
    build: Callable[[], keras.Model]
    expand: Callable[[keras.Model], keras.Model]
    side: int
    compile: Callable[[keras.Model], None] | None = None


FIXTURES = {
    "column_blocks": Fixture(
        "classifier on mobilenet_v3_small (32 px, logits), expanded 4 -> 6 -> 9 with "
        "freeze_old=True: predictions is a ColumnBlockDense of 3 blocks; compiled with Adam on "
        "tt.training.OneCycle",
        classifier,
        twice_frozen,
        32,
        compile_one_cycle,
    ),
    "column_blocks_softmax": Fixture(
        "as column_blocks, built with activation='softmax' (a probabilities layer)",
        lambda: classifier(activation="softmax"),
        twice_frozen,
        32,
    ),
    "class_branch": Fixture(
        "classifier on mobilenet_v3_small (32 px), expanded 4 -> 6 with separate_branch=True "
        "(class_logits concatenates the two heads)",
        classifier,
        branch,
        32,
    ),
    "sigmoid_lifecycle": Fixture(
        "classifier on mobilenet_v2 (64 px: at 32 its last map is 1x1 and the outputs hardly "
        "vary; its ImagePreprocessing layer inside), activation='sigmoid', "
        "refine_classes(['dog']), then reorder_classes with a LabelMap (reversed, sparse ids)",
        lambda: classifier("mobilenet_v2", 64, activation="sigmoid"),
        refined_and_reordered,
        64,
    ),
    "retinanet_frozen": Fixture(
        "RetinaNet on mobilenet_v3_small (64 px), expanded 3 -> 5 with freeze_old=True "
        "(FrozenChannels on the class conv); compiled with SGD on "
        "tt.training.CyclicalLearningRate, global_clipnorm",
        lambda: detector("retinanet"),
        frozen,
        64,
        compile_cyclical,
    ),
    "retinanet_branch": Fixture(
        "RetinaNet on mobilenet_v3_small (64 px), expanded 3 -> 5 with separate_branch=True "
        "(BranchedClassificationHead)",
        lambda: detector("retinanet"),
        branch,
        64,
    ),
    "yolov8": Fixture(
        "YOLOv8 on mobilenet_v3_small (64 px), expanded 3 -> 5 with freeze_old=True",
        lambda: detector("yolov8"),
        frozen,
        64,
    ),
    "faster_rcnn": Fixture(
        "Faster R-CNN on mobilenet_v3_small (64 px, 16 feature channels, 32-unit box head), "
        "expanded 3 -> 5 with freeze_old=True; compiled with AdamW",
        lambda: detector("faster_rcnn", **SMALL_FASTER_RCNN),
        frozen,
        64,
        compile_adamw,
    ),
    "segmenter": Fixture(
        "DeepLabV3+ on mobilenet_v3_small (64 px, background + 2 classes), expanded 3 -> 5 "
        "with freeze_old=True",
        segmenter,
        frozen,
        64,
    ),
}


def make(fixture: Fixture) -> keras.Model:
    """Builds the fixture's model, sets its weights as described above and expands it."""
    keras.utils.set_random_seed(0)
    model = calibrate_batchnorm(vary_vectors(thin(fixture.build())), fixture.side)
    model = thin(fixture.expand(model), unused_only=True)
    if fixture.compile is not None:
        fixture.compile(model)
        model.optimizer.build(model.trainable_variables)
    return model


def fixed_images(side: int, seed: int = 0) -> np.ndarray:
    """IMAGES uint8 RGB images of side x side pixels."""
    return np.random.default_rng(seed).integers(0, 256, (IMAGES, side, side, 3), dtype=np.uint8)


def outputs(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The raw outputs of `model` on uint8 images `x`, keyed as in the npz files."""
    result = model(x.astype("float32"), training=False)
    if isinstance(result, dict):
        return {f"output.{key}": keras.ops.convert_to_numpy(v) for key, v in result.items()}
    return {"output": keras.ops.convert_to_numpy(result)}


def registered_names(config: Any) -> list[str]:
    """Every registered name ("package>Class") in a serialized Keras config, sorted."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and ">" in name:
                found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return sorted(found)


def saved_config(path: Path) -> dict[str, Any]:
    """The model config in a `.keras` file."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def deflate(path: Path) -> None:
    """Rewrites the zip archive at `path` with DEFLATE, members and dates unchanged."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info, data in members:
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def entry(model: keras.Model, recipe: str, file: str | None, config: dict) -> dict[str, Any]:
    """The manifest's record of a fixture."""
    info = tt.class_info(model)
    return {
        "recipe": recipe,
        "file": file,
        "model_class": type(model).__name__,
        "compiled": bool(model.compiled),
        "class_names": list(info.class_names),
        "class_metadata": json.loads(json.dumps(info.get_config())),
        "registered_names": registered_names(config),
    }


def write_outputs(path: Path, model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Saves `x` and the model's outputs on it; refuses outputs that ignore the input."""
    result = outputs(model, x)
    for key, value in result.items():
        if np.array_equal(value[0], value[1]):
            raise ValueError(f"{path.name}: {key} is the same for both images.")
    np.savez(path, x=x, **result)
    return result


def make_fixture(out: Path, name: str, fixture: Fixture) -> dict[str, Any]:
    """Saves fixture `name` and checks that it loads back with the same outputs and names."""
    model = make(fixture)
    path = out / f"{name}.keras"
    model.save(path)
    deflate(path)
    expected = write_outputs(out / f"{name}.npz", model, fixed_images(fixture.side))
    record = entry(model, fixture.recipe, path.name, saved_config(path))

    loaded = tt.load_model(path)
    for key, value in outputs(loaded, fixed_images(fixture.side)).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=f"{name}: {key}")
    assert (
        registered_names(keras.saving.serialize_keras_object(loaded)) == record["registered_names"]
    ), name
    assert tt.class_info(loaded).get_config() == tt.class_info(model).get_config(), name
    assert loaded.compiled == model.compiled, name
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # KerasCV builds DeepLabV3+ with a list of one input and warns when called with a tensor.
    warnings.filterwarnings("ignore", "The structure of `inputs`", UserWarning)

    base = tt.demo.base_model()
    write_outputs(out / "base_model.npz", base, fixed_images(base.input_shape[1]))
    fixtures = {
        "base_model": entry(
            base,
            "the shipped base model, tt.demo.base_model() (not copied here)",
            None,
            saved_config(tt.demo.base_model_path()),
        )
    }
    for name, fixture in FIXTURES.items():
        start = time.time()
        fixtures[name] = make_fixture(out, name, fixture)
        size = (out / f"{name}.keras").stat().st_size
        print(f"{name}: {size / 1e6:.2f} MB, {time.time() - start:.1f} s", flush=True)
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_cv": keras_cv.__version__,
        "numpy": np.__version__,
    }
    manifest = {"versions": versions, "fixtures": fixtures}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"{len(fixtures)} fixtures in {out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

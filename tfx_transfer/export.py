"""Versioned, atomic SavedModel export for TF Serving.

`export_saved_model(model, "saved_models/shapes92")` writes
`saved_models/shapes92/<version>/`, the layout TF Serving polls. A version
directory appears only when complete (written under a hidden temporary name,
checked, then renamed), so the server never loads half a model.

Signatures:
    serving_default: `images` float32 [None, H, W, 3], raw 0..255 RGB pixels.
    serving_bytes:   `image_bytes` string [None], encoded JPEG/PNG/GIF/BMP
                     (decoded and resized inside the graph; REST clients send
                     `{"instances": [{"b64": "..."}]}`).
Both return `probabilities` [None, C], `classes` (top-k ids), `scores` (top-k
probabilities) and `labels` (top-k class names, from the `labels.txt` asset).

Detectors (`tt.build_detector`) get the same two signatures with box decoding
and non-max suppression inside the graph (KerasCV's own export has none,
keras-cv #2499). They return `boxes` [None, N, 4] (the detector's
`bounding_box_format`, pixels), `scores` [None, N], `classes` [None, N] int64,
`labels` [None, N] class names and `num_detections` [None] int32; rows past
`num_detections` are padding (class -1, label ""). N is the detector's
`prediction_decoder.max_detections` (100 by default).

Segmenters (`tt.build_segmenter`) get the same two signatures returning
`class_ids` [None, H, W] int32 (the most probable class of each pixel) and
`probabilities` [None, H, W, C]; class names are in the `labels.txt` asset.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.classification.serving import classifier_outputs
from tfx_transfer.core.io import TEMPORARY_PREFIX, remove, write_atomically
from tfx_transfer.core.metadata import class_info
from tfx_transfer.detection.serving import compare_detections, detection_outputs
from tfx_transfer.heads.column_blocks import ColumnBlockDense
from tfx_transfer.heads.locate import detector_kind, is_segmenter
from tfx_transfer.heads.probabilities import probabilities_of
from tfx_transfer.segmentation.serving import segmenter_outputs
from tfx_transfer.surgery import merge_frozen

PIXELS_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
PIXELS_INPUT = "images"
BYTES_INPUT = "image_bytes"
OUTPUTS = ("probabilities", "classes", "scores", "labels")
LABELS_ASSET = "labels.txt"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
TOLERANCE = 1e-5
CLASSIFIER, DETECTOR, SEGMENTER = "classifier", "detector", "segmenter"
DETECTION_TOLERANCE = 1e-4


class ExportVerificationError(RuntimeError):
    """The reloaded SavedModel does not reproduce the in-memory model."""


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    *,
    version: int | None = None,
    class_names: Sequence[str] | None = None,
    top_k: int = 5,
    verify: bool = True,
    warmup: bool = True,
) -> Path:
    """Exports `model` to `export_dir/<version>/` for TF Serving and returns that path.

    Args:
        model: a classifier (models with frozen column blocks are merged first),
            or a detector from `tt.build_detector` (decoding and NMS inside).
        export_dir: path. The model's base directory, e.g. `saved_models/shapes92`.
        version: int. Defaults to one more than the highest existing version (1
            for the first). An existing version is never overwritten.
        class_names: sequence of str. Defaults to the model's class names.
        top_k: int. How many classes `classes`, `scores` and `labels` return
            (classifiers; detectors return up to `max_detections` boxes).
        verify: bool. Reload the export and compare both signatures with the
            model on a few inputs (max abs difference <= 1e-5; detectors: boxes,
            scores and classes against `predict`, <= 1e-4); a mismatch fails the
            export and leaves nothing behind.
        warmup: bool. Write `assets.extra/tf_serving_warmup_requests`.

    Example:

    >>> path = tt.export_saved_model(model, "saved_models/shapes92")
    >>> path.name
    '1'
    >>> tt.export_saved_model(detector, "saved_models/voc_retinanet")   # boxes inside
    PosixPath('saved_models/voc_retinanet/1')
    """
    root = Path(export_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    version = _next_version(root) if version is None else _checked_version(version)
    target = root / str(version)
    if target.exists():
        raise FileExistsError(
            f"Version {version} already exists in {str(root)!r}; exported versions are never "
            f"overwritten. Pass version=None for the next free number ({_next_version(root)})."
        )
    kind = _kind(model)
    model = _without_column_blocks(model)
    names = _class_names(model, class_names)
    top_k = max(1, min(int(top_k), len(names)))

    def write(temporary: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            labels_file = Path(scratch) / LABELS_ASSET
            labels_file.write_text("".join(f"{name}\n" for name in names))
            archive = _archive(model, labels_file, top_k, kind=kind)
            archive.write_out(str(temporary), verbose=False)
        if warmup:
            _write_warmup(temporary, model, root.name)
        if verify:
            (verify_detector_export if kind == DETECTOR else verify_export)(temporary, model)

    return write_atomically(target, write, replace=False)


def verify_export(path: str | os.PathLike, model: keras.Model, *, tolerance: float = TOLERANCE):
    """Reloads the SavedModel at `path` and compares both signatures with `model`."""
    loaded = tf.saved_model.load(str(path))
    height, width = model.input_shape[1:3]
    pixels = np.random.default_rng(0).integers(0, 256, (3, height, width, 3)).astype(np.uint8)
    expected = probabilities_of(model, pixels.astype(np.float32)).numpy()
    encoded = tf.stack([tf.io.encode_png(image) for image in pixels])
    results = {
        PIXELS_SIGNATURE: loaded.signatures[PIXELS_SIGNATURE](
            **{PIXELS_INPUT: tf.constant(pixels, tf.float32)}
        ),
        BYTES_SIGNATURE: loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: encoded}),
    }
    for signature, outputs in results.items():
        difference = float(np.max(np.abs(outputs["probabilities"].numpy() - expected)))
        if not difference <= tolerance:
            raise ExportVerificationError(
                f"Signature {signature!r} of the export differs from the model by {difference:.3g} "
                f"(tolerance {tolerance}); nothing was exported."
            )


def verify_detector_export(
    path: str | os.PathLike, model: keras.Model, *, tolerance: float = DETECTION_TOLERANCE
) -> None:
    """Reloads a detector's SavedModel and compares both signatures with `model.predict`.

    Boxes, scores and classes of the first `num_detections` rows must agree
    within `tolerance`; raises `ExportVerificationError` otherwise.

    Example:

    >>> verify_detector_export("saved_models/voc_retinanet/1", detector)
    """
    loaded = tf.saved_model.load(str(path))
    height, width = _image_size(model)
    pixels = np.random.default_rng(0).integers(0, 256, (3, height, width, 3)).astype(np.uint8)
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    encoded = tf.stack([tf.io.encode_png(image) for image in pixels])
    results = {
        PIXELS_SIGNATURE: loaded.signatures[PIXELS_SIGNATURE](
            **{PIXELS_INPUT: tf.constant(pixels, tf.float32)}
        ),
        BYTES_SIGNATURE: loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: encoded}),
    }
    for signature, outputs in results.items():
        difference = compare_detections(
            expected, {key: value.numpy() for key, value in outputs.items()}, tolerance
        )
        if difference is not None:
            raise ExportVerificationError(
                f"Signature {signature!r} of the export differs from the detector: {difference} "
                f"(tolerance {tolerance}); nothing was exported."
            )


def _image_size(model: keras.Model) -> tuple[int, int]:
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(
            f"Model {model.name!r} needs a fixed input size to be exported (input shape "
            f"{model.input_shape}); build it with input_shape=(height, width, 3)."
        )
    return int(height), int(width)


def _kind(model: keras.Model) -> str:
    if detector_kind(model) is not None:
        return DETECTOR
    return SEGMENTER if is_segmenter(model) else CLASSIFIER


def _archive(
    model: keras.Model, labels_file: Path, top_k: int, *, kind: str = "classifier"
) -> keras.export.ExportArchive:
    height, width = _image_size(model)
    table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            str(labels_file),
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )

    def outputs(images):
        if kind == DETECTOR:
            return detection_outputs(model, images, table)
        if kind == SEGMENTER:
            return segmenter_outputs(model, images)
        return classifier_outputs(model, images, table, top_k)

    def decode(contents):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.image.resize(image, (height, width))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(table)
    archive.add_endpoint(
        PIXELS_SIGNATURE,
        outputs,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name=PIXELS_INPUT)],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        lambda image_bytes: outputs(
            tf.map_fn(
                decode,
                image_bytes,
                fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
            )
        ),
        input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)],
    )
    return archive


def _write_warmup(path: Path, model: keras.Model, model_name: str) -> None:
    """A few generated requests TF Serving replays before serving (one per signature)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    height, width = _image_size(model)
    image = np.random.default_rng(1).integers(0, 256, (1, height, width, 3)).astype(np.uint8)
    png = tf.io.encode_png(image[0]).numpy()
    inputs = {
        PIXELS_SIGNATURE: (PIXELS_INPUT, tf.make_tensor_proto(image.astype(np.float32))),
        BYTES_SIGNATURE: (BYTES_INPUT, tf.make_tensor_proto([png], dtype=tf.string)),
    }
    warmup_path = path / WARMUP_FILE
    warmup_path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(warmup_path)) as writer:
        for signature, (name, tensor) in inputs.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            request.inputs[name].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def _without_column_blocks(model: keras.Model) -> keras.Model:
    """`model`, or a copy with frozen column blocks folded into a plain Dense (for a
    detector: a copy without frozen channels, whose snapshots serving does not need)."""
    if getattr(model, "frozen_channels", None) or any(
        isinstance(layer, ColumnBlockDense) for layer in model.layers
    ):
        return merge_frozen(model)
    return model


def _class_names(model: keras.Model, class_names) -> list[str]:
    names = list(class_names) if class_names is not None else list(class_info(model).class_names)
    detector = detector_kind(model) is not None
    width = int(model.num_classes) if detector else int(model.output_shape[-1])
    if len(names) != width:
        raise ValueError(
            f"Model {model.name!r} has {width} {'classes' if detector else 'outputs'} but "
            f"{len(names)} class names."
        )
    bad = [name for name in names if not name or "\n" in name]
    if bad:
        raise ValueError(f"Class names must be non-empty single lines; got {bad}.")
    return names


def _versions(root: Path) -> list[int]:
    return sorted(
        int(p.name) for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)
    )


def _next_version(root: Path) -> int:
    versions = _versions(root)
    return versions[-1] + 1 if versions else 1


def _checked_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer; got {version!r}.")
    return version


def _remove_stale_temporaries(root: Path) -> None:
    """Leftovers of a killed export (never served: TF Serving reads only integer names)."""
    for leftover in root.glob(f"{TEMPORARY_PREFIX}*"):
        remove(leftover)


def export_tflite(
    model: keras.Model, path: str | os.PathLike, *, verify: bool = True, tolerance: float = 1e-4
) -> Path:
    """Converts a classifier to a TFLite (LiteRT) flatbuffer with Keras' own exporter.

    The file takes one image [1, H, W, 3] of raw 0..255 pixels and returns the
    model's outputs (logits unless the model ends in an activation). It is
    written to a temporary name and renamed when complete; with `verify`, the
    TFLite interpreter's outputs must match the model's within `tolerance`.

    Example:

    >>> tt.export_tflite(model, "shapes92.tflite")
    PosixPath('shapes92.tflite')
    """
    path = Path(path)
    model = _without_column_blocks(model)

    def write(temporary: Path) -> None:
        model.export(str(temporary), format="litert", verbose=False)
        if verify:
            _verify_tflite(temporary, model, tolerance)

    return write_atomically(path, write)


def _verify_tflite(path: Path, model: keras.Model, tolerance: float) -> None:
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (image_input,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    height, width = model.input_shape[1:3]
    for seed in range(3):
        image = (
            np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
        )
        interpreter.set_tensor(image_input["index"], image)
        interpreter.invoke()
        difference = float(
            np.max(
                np.abs(interpreter.get_tensor(output["index"]) - model.predict(image, verbose=0))
            )
        )
        if not difference <= tolerance:
            raise ExportVerificationError(
                f"The TFLite model differs from the Keras model by {difference:.3g} "
                f"(tolerance {tolerance}); nothing was written."
            )

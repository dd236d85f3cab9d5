"""The YAML config of a `tfx-transfer train` run, validated with line numbers.

A config has the sections `model`, `data`, `fine_tune` (a `FineTuneConfig`),
and optionally `expand`, `export`, `run` and `tune` (a search, `tfx-transfer tune`). Every section is a frozen
dataclass; `load_run_config` reads the file with `yaml.safe_load`'s parser and
raises `ConfigError` naming the file, the line, the key and what is allowed.

Example:

>>> config = load_run_config("examples/configs/expand_90_to_92.yaml")
>>> config.expand.new_class_names
('blue_crescent', 'red_arrow')
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tfx_transfer.training.config import FineTuneConfig

DETECTORS = ("retinanet", "yolov8", "faster_rcnn")
CLASSIFICATION_SOURCES = ("image_folder", "manifest", "tfds", "shapes")
DETECTION_SOURCES = ("coco", "voc", "tfds_detection", "synthetic_detection")
INITIALISERS = ("glorot_uniform", "zeros", "mean", "imprint")
ALGORITHMS = ("random", "bayesian", "hyperband")
OBJECTIVES = ("val_accuracy", "val_map", "old_new_balance")


class ConfigError(ValueError):
    """A mistake in a config file; the message names the file, line and key."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Where the model comes from.

    Args:
        load: a `.keras` file to start from, or "base" for the shipped 90-class
            base model. Give either `load` or `backbone`.
        backbone: a registry backbone (`tfx-transfer backbones`) for a new model.
        detector: None for a classifier, or "retinanet" / "yolov8" / "faster_rcnn".
        weights: "imagenet", a weights file, or null (random).
        input_size: int. Square input size; default the backbone's.
        hidden_units: Dense layers of a new classifier's head.
        dropout: float.
    """

    load: str | None = None
    backbone: str | None = None
    detector: str | None = None
    weights: str | None = "imagenet"
    input_size: int | None = None
    hidden_units: tuple[int, ...] = (1024,)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if (self.load is None) == (self.backbone is None):
            raise ValueError("give exactly one of model.load and model.backbone")
        if self.detector is not None and self.detector not in DETECTORS:
            raise ValueError(f"model.detector={self.detector!r} is not one of {DETECTORS}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The images.

    Args:
        source: "image_folder", "manifest" (CSV/JSONL), "tfds", "shapes" (the
            embedded classes) for classifiers; "coco", "voc", "tfds_detection",
            "synthetic_detection" for detectors.
        path: the folder, manifest, TFDS name, COCO JSON or VOC annotations folder.
        images: the image folder of "coco" and "voc".
        image_size: int. Images are resized to this square size.
        batch_size: int.
        validation_split, test_split: fractions held out.
        seed: int. Splits and shuffling.
        strict: bool. Fail on the first unusable image instead of skipping it.
        classes: the classes of "shapes" / "synthetic_detection" (default: the 90
            base classes), or the class names of a manifest / VOC set.
        images_per_class: int. Images per class of "shapes".
        num_images: int. Images of "synthetic_detection" (the held-out splits
            get `validation_split` of that many more each).
    """

    source: str
    path: str | None = None
    images: str | None = None
    image_size: int = 224
    batch_size: int = 32
    validation_split: float | None = 0.2
    test_split: float | None = None
    seed: int = 0
    strict: bool = False
    classes: tuple[str, ...] | None = None
    images_per_class: int = 20
    num_images: int = 200

    def __post_init__(self) -> None:
        sources = CLASSIFICATION_SOURCES + DETECTION_SOURCES
        if self.source not in sources:
            raise ValueError(f"data.source={self.source!r} is not one of {sources}")
        needs_path = self.source not in ("shapes", "synthetic_detection")
        if needs_path and self.path is None:
            raise ValueError(f"data.source={self.source!r} needs data.path")
        if self.source in ("coco", "voc") and self.images is None:
            raise ValueError(f"data.source={self.source!r} needs data.images (the image folder)")

    @property
    def detection(self) -> bool:
        return self.source in DETECTION_SOURCES


@dataclasses.dataclass(frozen=True)
class ExpandConfig:
    """Adding classes to a loaded model (`tt.expand_classes`).

    Args:
        new_class_names: the new classes; default: the data's classes the model lacks.
        init: "glorot_uniform", "zeros", "mean" or "imprint" (from the training images).
        freeze_old: bool. Keep the old columns bit-exact during training.
        teacher: bool. Use the model before expansion as the teacher
            (distillation stages, weight aligning, the old-class change).
    """

    new_class_names: tuple[str, ...] | None = None
    init: str = "imprint"
    freeze_old: bool = True
    teacher: bool = True

    def __post_init__(self) -> None:
        if self.init not in INITIALISERS:
            raise ValueError(f"expand.init={self.init!r} is not one of {INITIALISERS}")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Where the SavedModel goes: `directory/<version>/`.

    Args:
        directory: the model's directory in TF Serving's model base path.
        version: int or None (the next free version).
    """

    directory: str
    version: int | None = None


@dataclasses.dataclass(frozen=True)
class RunSection:
    """The run directory: `root/name/` (name default: a timestamp).

    Args:
        root, name: str. Where the run directory goes.
        lr_find: bool. Before training, run the learning-rate range test
            (classifiers) and save its curve as `plots/lr_find.png`.
    """

    root: str = "runs"
    name: str | None = None
    lr_find: bool = False


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """A hyperparameter search over this config (`tfx-transfer tune`, `tt.tune`).

    Args:
        space: dotted keys of this config -> ranges (see `tfx_transfer.app.tuning.space`).
        algorithm: "random", "bayesian" or "hyperband" (KerasTuner's).
        max_trials: int. Trials to run (Hyperband: its bracket budget decides).
        objective: "val_accuracy" (classifiers), "val_map" (detectors) or
            "old_new_balance" (expanded classifiers); default by model kind.
        max_forgetting: float. The drop in old-class accuracy "old_new_balance"
            accepts before it penalises a trial.
        directory, name: where the trials and results go: `directory/name/`.
        patience: int. Epochs without improvement before a stage stops early.
        overwrite: bool. Start afresh instead of resuming an earlier search.
    """

    space: Mapping[str, Any]
    algorithm: str = "random"
    max_trials: int = 10
    objective: str | None = None
    max_forgetting: float = 0.0
    directory: str = "tuning"
    name: str = "search"
    patience: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"tune.algorithm={self.algorithm!r} is not one of {ALGORITHMS}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"tune.objective={self.objective!r} is not one of {OBJECTIVES}")
        if self.max_trials < 1 or self.patience < 1:
            raise ValueError("tune.max_trials and tune.patience must be at least 1")
        if self.max_forgetting < 0:
            raise ValueError(f"tune.max_forgetting={self.max_forgetting!r} must be >= 0")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole `tfx-transfer train` run (and, with `tune`, a search over it)."""

    model: ModelConfig
    data: DataConfig
    fine_tune: FineTuneConfig = dataclasses.field(default_factory=FineTuneConfig)
    expand: ExpandConfig | None = None
    export: ExportConfig | None = None
    run: RunSection = dataclasses.field(default_factory=RunSection)
    tune: TuneConfig | None = None

    def __post_init__(self) -> None:
        if self.data.detection != (self.model.detector is not None):
            kind = "detection" if self.data.detection else "classification"
            raise ValueError(
                f"data.source={self.data.source!r} is {kind} data but model.detector is "
                f"{self.model.detector!r}"
            )
        if self.run.lr_find and self.data.detection:
            raise ValueError(
                "run.lr_find=true is for classifiers; a detector trains its own losses"
            )
        if self.expand is not None and self.model.load is None:
            raise ValueError("expand needs model.load (a trained model to add classes to)")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what `yaml.safe_dump` writes and `load_run_config` reads)."""
        return _plain(dataclasses.asdict(self))


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Reads and validates a run config; raises `ConfigError` on any mistake."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    lines = _key_lines(node) if node is not None else {}
    return _build(RunConfig, data if data is not None else {}, (), _Where(path, lines))


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> RunConfig:
    """A run config from plain data (as `RunConfig.to_dict` gives), validated like a file;
    `ConfigError`s name `source` and the key.

    Example:

    >>> config_from_dict(config.to_dict()) == config
    True
    """
    return _build(RunConfig, data, (), _Where(Path(source), {}))


@dataclasses.dataclass
class _Where:
    path: Path
    lines: dict[tuple, int]

    def error(self, keys: tuple, message: str) -> ConfigError:
        line = None
        for depth in range(len(keys), -1, -1):
            line = self.lines.get(keys[:depth])
            if line is not None:
                break
        place = f"{self.path}, line {line}" if line else str(self.path)
        key = _dotted(keys)
        return ConfigError(f"{place}{f' ({key})' if key else ''}: {message}")


def _build(schema: type, value: Any, keys: tuple, where: _Where) -> Any:
    """An instance of the dataclass `schema` from `value`, checked key by key."""
    if not isinstance(value, Mapping):
        raise where.error(keys, f"expected a mapping of keys, got {_shown(value)}")
    hints = typing.get_type_hints(schema)
    fields = {field.name: field for field in dataclasses.fields(schema)}
    for key in value:
        if key not in fields:
            raise where.error(
                (*keys, key), f"unknown key {key!r}; allowed keys: {', '.join(fields)}"
            )
    arguments = {}
    for name, field in fields.items():
        if name in value:
            arguments[name] = _convert(hints[name], value[name], (*keys, name), where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise where.error(keys, f"missing key {name!r}")
    try:
        return schema(**arguments)
    except ValueError as error:
        # Point at the key the message names ("schedule='cosine' is not ..."), if any.
        named = re.search(r"(?:^|[ .])(\w+)=", str(error))
        at = (*keys, named.group(1)) if named and named.group(1) in value else keys
        raise where.error(at, str(error)) from None


def _convert(hint: Any, value: Any, keys: tuple, where: _Where) -> Any:
    """`value` checked against the type `hint` (tuples from lists, nested dataclasses)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise where.error(keys, f"must not be null; expected {_describe(hint)}")
    for option in (o for o in options if o is not type(None)):
        try:
            return _convert_one(option, value, keys, where)
        except _Mismatch:
            continue
    raise where.error(keys, f"expected {_describe(hint)}, got {_shown(value)}")


class _Mismatch(Exception):
    """`value` is not of this one type (another of a union's may fit)."""


def _convert_one(option: Any, value: Any, keys: tuple, where: _Where) -> Any:
    origin = typing.get_origin(option)
    if dataclasses.is_dataclass(option):
        if not isinstance(value, Mapping):
            raise _Mismatch()
        return _build(option, value, keys, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Mismatch()
        inner = typing.get_args(option)[0]
        return tuple(_convert(inner, v, (*keys, i), where) for i, v in enumerate(value))
    if origin in (Mapping, dict) or option in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise _Mismatch()
        _, value_type = typing.get_args(option) or (str, Any)
        return {str(k): _convert(value_type, v, (*keys, k), where) for k, v in value.items()}
    if option is Any:
        return value
    if option is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if option in (int, float) and isinstance(value, bool):
        raise _Mismatch()
    if isinstance(option, type) and isinstance(value, option):
        return value
    raise _Mismatch()


def _key_lines(node: yaml.Node, keys: tuple = ()) -> dict[tuple, int]:
    """{key path: 1-based line} for every key and list item in a composed YAML tree."""
    lines = {keys: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*keys, key_node.value)
            lines |= _key_lines(value_node, path)
            lines[path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines |= _key_lines(item, (*keys, index))
    return lines


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _describe(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if origin in (Mapping, dict):
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping of keys"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, Mapping) else "a mapping"


def _dotted(keys: tuple) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

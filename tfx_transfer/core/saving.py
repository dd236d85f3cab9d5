"""Safe loading of models that use the toolkit's registered Keras objects.

Our layers and models are registered with Keras under `tfx_transfer>ClassName`.
`load_model` imports the module of each registered name the file uses (from the
table below) before Keras deserialises it, so a classifier loads without
importing KerasCV, and a detector's file brings in what it needs. Plain
`keras.saving.load_model` finds them once their modules are imported:
`register_keras_objects()` imports them all (`import tfx_transfer` alone stays light).
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile

# Registered name -> the module that registers it (tests check the table is complete).
REGISTERED_IN = {
    "TransferModel": "tfx_transfer.core.metadata",
    "ImagePreprocessing": "tfx_transfer.core.preprocessing",
    "ColumnBlockDense": "tfx_transfer.heads.column_blocks",
    "PyramidBackbone": "tfx_transfer.backbones.pyramid",
    "TransferRetinaNet": "tfx_transfer.detection.models",
    "TransferYOLOV8Detector": "tfx_transfer.detection.models",
    "TransferFasterRCNN": "tfx_transfer.detection.faster_rcnn",
    "BranchedClassificationHead": "tfx_transfer.detection.branch_head",
    "PerClassNonMaxSuppression": "tfx_transfer.detection.class_nms",
    "ROIAlign": "tfx_transfer.detection.roi_align",
    "TransferDeepLabV3Plus": "tfx_transfer.segmentation.build",
    "DistillationLoss": "tfx_transfer.training.anti_forgetting",
    "label_accuracy": "tfx_transfer.training.anti_forgetting",
    "OneCycle": "tfx_transfer.training.schedules",
    "CyclicalLearningRate": "tfx_transfer.training.schedules",
}
_REGISTERED_NAME = re.compile(r'"tfx_transfer>(\w+)"')


def load_model(path: str | os.PathLike, *, compile: bool = True):
    """Loads a `.keras` model with `safe_mode=True` (no arbitrary code runs).

    The toolkit's layers and `TransferModel` are registered Keras objects, so
    models saved with `model.save("model.keras")` load here with their class
    metadata.

    Example:

    >>> model.save("flowers.keras")
    >>> tt.class_info(tt.load_model("flowers.keras")).class_names
    ('daisy', 'rose', 'tulip')
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(
            f"tt.load_model reads Keras v3 `.keras` files; got {path!r}. For a SavedModel "
            "directory use tf.saved_model.load."
        )
    import_registering_modules(path)
    import keras

    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def import_registering_modules(path: str | os.PathLike) -> list[str]:
    """Imports the modules that register the `tfx_transfer>...` objects a `.keras` file
    names (every such module when the file's config cannot be read); returns them.

    Example:

    >>> import_registering_modules("shapes90.keras")
    ['tfx_transfer.core.metadata', 'tfx_transfer.core.preprocessing', ...]
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8")
        names = set(_REGISTERED_NAME.findall(config))
        modules = sorted({REGISTERED_IN[name] for name in names if name in REGISTERED_IN})
        if '"keras_cv' in config:
            modules.append("keras_cv")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        modules = sorted(set(REGISTERED_IN.values()))
    for module in modules:
        importlib.import_module(module)
    return modules


def register_keras_objects() -> None:
    """Registers every Keras object of the toolkit, for plain `keras.saving.load_model`
    (`tt.load_model` needs no such call).

    Example:

    >>> tt.register_keras_objects()
    >>> keras.saving.load_model("flowers.keras", safe_mode=True)
    """
    for module in sorted(set(REGISTERED_IN.values())):
        importlib.import_module(module)

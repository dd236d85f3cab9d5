"""tfx_transfer: transfer learning on images with Keras 3 and TensorFlow.

`import tfx_transfer as tt` imports nothing heavy: each public name loads its
module on first use (PEP 562), so KerasCV, KerasTuner and matplotlib are
imported only by the features that need them. Type checkers and documentation
tools see the static re-exports below.

Example:

>>> import tfx_transfer as tt
>>> model = tt.build_classifier("resnet50", num_classes=90)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.backend import check_backend
from tfx_transfer.core.lazy import lazy_attributes

check_backend()

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer import (
        backbones,
        classification,
        data,
        detection,
        heads,
        segmentation,
        surgery,
        training,
    )
    from tfx_transfer.app import demo, plots, run_dir, tuning
    from tfx_transfer.app.run_dir import RunDirectory
    from tfx_transfer.app.tuning.results import TuneResult
    from tfx_transfer.app.tuning.search import tune
    from tfx_transfer.backbones.build import block_boundaries, build_backbone
    from tfx_transfer.backbones.registry import (
        BackboneSpec,
        feature_layer_names,
        get_backbone_spec,
        list_backbones,
    )
    from tfx_transfer.classification.build import build_classifier
    from tfx_transfer.classification.metrics import EvaluationReport
    from tfx_transfer.classification.predict import predict_images
    from tfx_transfer.core.cost import ModelCost, cost_table, model_cost
    from tfx_transfer.core.label_maps import LabelMap
    from tfx_transfer.core.metadata import ClassMetadata, TransferModel, class_info, class_steps
    from tfx_transfer.core.saving import load_model, register_keras_objects
    from tfx_transfer.core.weights import WeightsUnavailableError
    from tfx_transfer.detection.build import build_detector
    from tfx_transfer.detection.metrics import (
        DetectionReport,
        coco_map,
        detection_predictions,
        evaluate_detector,
    )
    from tfx_transfer.evaluation import evaluate
    from tfx_transfer.export import export_saved_model, export_tflite
    from tfx_transfer.heads.column_blocks import ColumnBlockDense
    from tfx_transfer.segmentation.build import build_segmenter
    from tfx_transfer.segmentation.metrics import SegmentationReport, evaluate_segmenter
    from tfx_transfer.surgery.classes import drop_classes, refine_classes, reorder_classes
    from tfx_transfer.surgery.expand import expand_classes, merge_frozen, restore_old_classes
    from tfx_transfer.surgery.merge import merge_heads
    from tfx_transfer.training.fine_tune import fine_tune
    from tfx_transfer.training.lr_find import lr_find

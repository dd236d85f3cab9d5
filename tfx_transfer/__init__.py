"""tfx_transfer: transfer learning on images with Keras 3 and TensorFlow.

Example:

>>> import tfx_transfer as tt
>>> model = tt.build_classifier("resnet50", num_classes=90)
"""

from tfx_transfer._backend import check_backend

check_backend()

from tfx_transfer import data, demo, detection, plots, training, tuning  # noqa: E402
from tfx_transfer.backbones import (  # noqa: E402
    block_boundaries,
    build_backbone,
    feature_layer_names,
    get_backbone_spec,
    list_backbones,
)
from tfx_transfer.classifier import build_classifier  # noqa: E402
from tfx_transfer.cost import ModelCost, cost_table, model_cost  # noqa: E402
from tfx_transfer.detection import build_detector  # noqa: E402
from tfx_transfer.detection_metrics import (  # noqa: E402
    DetectionReport,
    coco_map,
    detection_predictions,
    evaluate_detector,
)
from tfx_transfer.evaluation import EvaluationReport, evaluate  # noqa: E402
from tfx_transfer.export import export_saved_model, export_tflite  # noqa: E402
from tfx_transfer.label_maps import LabelMap  # noqa: E402
from tfx_transfer.metadata import ClassMetadata, TransferModel, class_info  # noqa: E402
from tfx_transfer.prediction import predict_images  # noqa: E402
from tfx_transfer.run_dir import RunDirectory  # noqa: E402
from tfx_transfer.saving import load_model  # noqa: E402
from tfx_transfer.segmentation import build_segmenter  # noqa: E402
from tfx_transfer.segmentation_metrics import SegmentationReport, evaluate_segmenter  # noqa: E402
from tfx_transfer.surgery import (  # noqa: E402
    ColumnBlockDense,
    drop_classes,
    expand_classes,
    merge_frozen,
    merge_heads,
    refine_classes,
    reorder_classes,
    restore_old_classes,
)
from tfx_transfer.training import fine_tune, lr_find  # noqa: E402
from tfx_transfer.tuning import TuneResult, tune  # noqa: E402
from tfx_transfer.weights import WeightsUnavailableError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ClassMetadata",
    "ColumnBlockDense",
    "DetectionReport",
    "EvaluationReport",
    "LabelMap",
    "ModelCost",
    "RunDirectory",
    "SegmentationReport",
    "TransferModel",
    "TuneResult",
    "WeightsUnavailableError",
    "block_boundaries",
    "build_backbone",
    "build_classifier",
    "build_detector",
    "build_segmenter",
    "class_info",
    "coco_map",
    "cost_table",
    "data",
    "demo",
    "detection",
    "detection_predictions",
    "drop_classes",
    "evaluate_detector",
    "evaluate_segmenter",
    "evaluate",
    "expand_classes",
    "export_saved_model",
    "export_tflite",
    "feature_layer_names",
    "fine_tune",
    "get_backbone_spec",
    "list_backbones",
    "load_model",
    "lr_find",
    "model_cost",
    "merge_frozen",
    "merge_heads",
    "plots",
    "predict_images",
    "refine_classes",
    "reorder_classes",
    "restore_old_classes",
    "training",
    "tune",
    "tuning",
]

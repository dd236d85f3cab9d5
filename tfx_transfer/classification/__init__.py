"""Image classification: `build_classifier`, its Dense head, `predict_images`,
metrics (`evaluate_classifier`) and the serving signatures' outputs."""

from tfx_transfer.classification.build import build_classifier
from tfx_transfer.classification.head import classification_head
from tfx_transfer.classification.metrics import EvaluationReport, evaluate_classifier
from tfx_transfer.classification.predict import predict_images

__all__ = [
    "EvaluationReport",
    "build_classifier",
    "classification_head",
    "evaluate_classifier",
    "predict_images",
]

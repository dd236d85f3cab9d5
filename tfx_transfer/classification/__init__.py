"""Image classification: `build_classifier`, its Dense head, `predict_images`,
metrics (`evaluate_classifier`) and the serving signatures' outputs.

Each name loads its module on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfx_transfer.core.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__)

if TYPE_CHECKING:
    from tfx_transfer.classification.build import build_classifier
    from tfx_transfer.classification.head import classification_head
    from tfx_transfer.classification.metrics import EvaluationReport, evaluate_classifier
    from tfx_transfer.classification.predict import predict_images

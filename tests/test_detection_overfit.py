"""Each detector overfits 8 synthetic scenes to COCO mAP@.5 >= 0.9: boxes, box
format, anchors, losses, decoding and the mAP computation agree end to end (a
swapped coordinate or a wrong box format keeps mAP near 0)."""

import keras
import pytest

import tfx_transfer as tt

SIZE = 128
# At most 300 steps, in rounds of fit then mAP. Each round costs a retrace of the train step
# after predicting (~5 s), and a step ~0.3 s for RetinaNet but ~0.07 s for YOLOv8 at 128 px
# on 2 cores: RetinaNet and Faster R-CNN are checked every 25 steps, YOLOv8 (which needs >100)
# every 150.
MAX_STEPS = 300
STEPS_PER_ROUND = {"retinanet": 25, "yolov8": 150, "faster_rcnn": 25}
LEARNING_RATE = {"retinanet": 1e-3, "yolov8": 3e-3, "faster_rcnn": 1e-3}
# Faster R-CNN smaller than its defaults (256 channels, 1024-wide box head, 128 ROIs, 300
# proposals), which suit 512 px and many classes.
OPTIONS = {
    "faster_rcnn": {
        "feature_channels": 64,
        "roi_samples": 64,
        "train_proposals": 128,
        "test_proposals": 64,
    }
}


def shapes_backbone():
    """mobilenet_v3_small at 128 px with the shipped shapes classifier's weights."""
    backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(SIZE, SIZE, 3))
    backbone.set_weights(tt.demo.base_model().get_layer("mobilenet_v3_small").get_weights())
    return backbone


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["retinanet", "yolov8", "faster_rcnn"])
def test_detector_overfits_eight_synthetic_images(arch):
    keras.utils.set_random_seed(0)
    data = tt.data.synthetic_detection(
        8, image_size=SIZE, classes=["red_circle", "blue_triangle"], max_objects=1,
        batch_size=8, object_size=(0.2, 0.4),
    )  # fmt: skip
    detector = tt.build_detector(
        arch, shapes_backbone(), 2, class_names=data.class_names, **OPTIONS.get(arch, {})
    )
    detector.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE[arch]))
    scores = []
    for _ in range(MAX_STEPS // STEPS_PER_ROUND[arch]):
        detector.fit(data.train.repeat(STEPS_PER_ROUND[arch]), epochs=1, verbose=0)
        truth, found = tt.detection_predictions(detector, data.train, confidence_threshold=0.05)
        scores.append(tt.coco_map(truth, found, class_names=data.class_names).map50)
        if scores[-1] >= 0.9:
            break
    assert scores[-1] >= 0.9, scores

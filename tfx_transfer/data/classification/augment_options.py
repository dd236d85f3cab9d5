"""The names of the augmentations (read by config validation without importing Keras)."""

IMAGE_AUGMENTATIONS = (
    "flip",
    "rotation",
    "translation",
    "zoom",
    "contrast",
    "brightness",
    "randaugment",
)
LABEL_MIXING = ("mixup", "cutmix")

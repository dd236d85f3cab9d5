"""Conventions every task shares, stated once."""

# Mask pixels with this value belong to no class: they never count in a loss or a metric.
IGNORE_INDEX = 255
# Dense batches of boxes pad each image's rows with this class (and box) value.
BOX_PADDING = -1

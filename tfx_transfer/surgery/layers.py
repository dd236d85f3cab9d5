"""`ColumnBlockDense`: a Dense layer whose kernel is a list of column blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ColumnBlockDense(keras.layers.Layer):
    """A linear layer whose output columns come in blocks, each trainable or frozen.

    Block `i` has its own kernel `kernel_i` (input_dim x block_units[i]) and bias
    `bias_i`; the output is the concatenation of the blocks' outputs, so a
    frozen block's logits are computed exactly as before, whatever the other
    blocks do. `expand_classes(freeze_old=True)` puts the original classes in a
    frozen block 0 and the new classes in a trainable block 1;
    `tt.merge_frozen` folds the blocks back into one plain `Dense`.

    Args:
        block_units: sequence of int. Output columns of each block.
        trainable_blocks: sequence of bool. Whether each block trains.

    Example:

    >>> layer = ColumnBlockDense([90, 2], [False, True], name="predictions")
    >>> layer(np.zeros((1, 1024), "float32")).shape
    (1, 92)
    """

    def __init__(
        self,
        block_units: Sequence[int],
        trainable_blocks: Sequence[bool],
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(block_units) != len(trainable_blocks) or not block_units:
            raise ValueError(
                f"block_units {list(block_units)} and trainable_blocks "
                f"{list(trainable_blocks)} must be non-empty and of equal length."
            )
        self.block_units = [int(u) for u in block_units]
        self.trainable_blocks = [bool(t) for t in trainable_blocks]
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernels: list[keras.Variable] = []
        self.biases: list[keras.Variable] = []

    @property
    def units(self) -> int:
        return sum(self.block_units)

    def build(self, input_shape) -> None:
        input_dim = int(input_shape[-1])
        for index, (units, trainable) in enumerate(zip(self.block_units, self.trainable_blocks)):
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{index}",
                    shape=(input_dim, units),
                    initializer=self.kernel_initializer,
                    trainable=trainable,
                )
            )
            self.biases.append(
                self.add_weight(
                    name=f"bias_{index}",
                    shape=(units,),
                    initializer=self.bias_initializer,
                    trainable=trainable,
                )
            )

    def call(self, inputs):
        blocks = [ops.matmul(inputs, k) + b for k, b in zip(self.kernels, self.biases)]
        return blocks[0] if len(blocks) == 1 else ops.concatenate(blocks, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def full_kernel_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The kernel (input_dim x units) and bias (units,) of all blocks, in column order."""
        kernel = np.concatenate([ops.convert_to_numpy(k) for k in self.kernels], axis=1)
        bias = np.concatenate([ops.convert_to_numpy(b) for b in self.biases])
        return kernel, bias

    def assign_full(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Sets every block from a full kernel and bias (by name, not by position)."""
        edges = np.cumsum([0, *self.block_units])
        for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:])):
            self.kernels[index].assign(kernel[:, start:stop])
            self.biases[index].assign(bias[start:stop])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "block_units": self.block_units,
            "trainable_blocks": self.trainable_blocks,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }

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
    `bias_i`; the layer computes `inputs @ [kernel_0 kernel_1 ...] + [bias_0 ...]`,
    so gradients reach only the trainable blocks and a frozen block's logits
    are computed exactly as a plain Dense computes them. `expand_classes(freeze_old=True)` puts the original classes in a
    frozen block 0 and the new classes in a trainable block 1;
    `tt.merge_frozen` folds the blocks back into one plain `Dense`.

    Args:
        block_units: sequence of int. Output columns of each block.
        trainable_blocks: sequence of bool. Whether each block trains.
        activation: an activation applied to the output (a frozen hidden
            layer of a class branch keeps its ReLU); None for logits.

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
        activation: Any = None,
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
        self.activation = keras.activations.get(activation)
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
        # One matmul with the joined kernel: each column is computed exactly as a
        # plain Dense with the same kernel computes it, whatever the blocks.
        kernel, bias = self.kernels[0], self.biases[0]
        if len(self.kernels) > 1:
            kernel = ops.concatenate(self.kernels, axis=1)
            bias = ops.concatenate(self.biases, axis=0)
        return self.activation(ops.matmul(inputs, kernel) + bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    @property
    def trainable_columns(self) -> list[bool]:
        """Whether each output column trains, in column order."""
        return [
            t for units, t in zip(self.block_units, self.trainable_blocks) for _ in range(units)
        ]

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
            "activation": keras.activations.serialize(self.activation),
        }

    @classmethod
    def from_trainable_columns(
        cls, trainable_columns: Sequence[bool], **kwargs: Any
    ) -> ColumnBlockDense:
        """A layer with one block per run of equally trainable columns.

        >>> ColumnBlockDense.from_trainable_columns([False, False, True, False]).block_units
        [2, 1, 1]
        """
        units: list[int] = []
        trainable: list[bool] = []
        for flag in trainable_columns:
            if trainable and trainable[-1] == bool(flag):
                units[-1] += 1
            else:
                units.append(1)
                trainable.append(bool(flag))
        return cls(units, trainable, **kwargs)

"""Class metadata that travels with every model the toolkit returns.

A model carries its class names, the original ids of those classes (e.g. COCO's
sparse category ids), the activation applied to its logits and the history of
class operations (expansions, ...). The metadata lives in `TransferModel`, a
functional `keras.Model` whose config includes it, so it survives
`model.save()` and `tt.load_model()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras

ACTIVATIONS = (None, "softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class ClassMetadata:
    """What a model's outputs mean.

    Args:
        class_names: tuple of str. One name per output column, in column order.
        class_ids: tuple of int. The original id of each class (defaults to
            0..N-1); e.g. COCO's sparse category ids.
        activation: None, "softmax" or "sigmoid". The activation the model
            applies after its logits (None: the model outputs logits).
        multi_label: bool. True when classes are independent (sigmoid), False
            when exactly one class is right (softmax).
        history: tuple of dict. Class operations applied so far, oldest first.

    Example:

    >>> meta = ClassMetadata.from_names(["cat", "dog"])
    >>> meta.num_classes
    2
    """

    class_names: tuple[str, ...]
    class_ids: tuple[int, ...] = ()
    activation: str | None = None
    multi_label: bool = False
    history: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        object.__setattr__(self, "class_names", names)
        ids = tuple(int(i) for i in self.class_ids) or tuple(range(len(names)))
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "history", tuple(dict(h) for h in self.history))
        if not names:
            raise ValueError("A model needs at least one class name; got an empty list.")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Class names must be unique; duplicated: {duplicates}.")
        if len(ids) != len(names):
            raise ValueError(
                f"Got {len(names)} class names but {len(ids)} class ids; give one id per name."
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {self.activation!r}; expected one of {ACTIVATIONS}."
            )

    @classmethod
    def from_names(
        cls, class_names: Sequence[str], *, activation: str | None = None
    ) -> ClassMetadata:
        """Metadata for `class_names`, multi-label when `activation="sigmoid"`."""
        return cls(tuple(class_names), activation=activation, multi_label=activation == "sigmoid")

    @classmethod
    def for_classes(
        cls,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        activation: str | None = None,
        multi_label: bool | None = None,
    ) -> ClassMetadata:
        """Metadata for a model built with `num_classes` classes, checking the builder's
        arguments: a positive integer count, and one name per class (default `class_0`, ...).

        Example:

        >>> ClassMetadata.for_classes(2, ["cat", "dog"], activation="softmax").class_names
        ('cat', 'dog')
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; expected one of {ACTIVATIONS}.")
        names = cls.default(num_classes).class_names if class_names is None else class_names
        if len(names) != num_classes:
            raise ValueError(f"Got {len(names)} class_names for num_classes={num_classes}.")
        if multi_label is None:
            multi_label = activation == "sigmoid"
        return cls(tuple(names), activation=activation, multi_label=multi_label)

    @classmethod
    def default(cls, num_classes: int) -> ClassMetadata:
        """Names `class_0`, `class_1`, ... for a model that carries no metadata."""
        return cls(tuple(f"class_{i}" for i in range(num_classes)))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes: Any) -> ClassMetadata:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def get_config(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "class_ids": list(self.class_ids),
            "activation": self.activation,
            "multi_label": self.multi_label,
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClassMetadata:
        return cls(
            class_names=tuple(config["class_names"]),
            class_ids=tuple(config.get("class_ids", ())),
            activation=config.get("activation"),
            multi_label=bool(config.get("multi_label", False)),
            history=tuple(config.get("history", ())),
        )


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransferModel(keras.Model):
    """A functional `keras.Model` that carries `ClassMetadata`.

    It behaves exactly like `keras.Model(inputs, outputs)`: `fit`, callbacks,
    `save` and `keras.saving.load_model` work as usual; the metadata is part of
    the model config.

    Example:

    >>> inputs = keras.Input((4,))
    >>> outputs = keras.layers.Dense(2, name="predictions")(inputs)
    >>> model = TransferModel(inputs, outputs, class_metadata=ClassMetadata.from_names(["a", "b"]))
    >>> model.class_metadata.class_names
    ('a', 'b')
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        metadata = kwargs.pop("class_metadata", None)
        if isinstance(metadata, dict):
            metadata = ClassMetadata.from_config(metadata)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._class_metadata = metadata or ClassMetadata.default(_output_width(self))

    @property
    def class_metadata(self) -> ClassMetadata:
        return self._class_metadata

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["class_metadata"] = self._class_metadata.get_config()
        return config


def with_metadata(
    inputs: Any, outputs: Any, metadata: ClassMetadata, *, name: str | None = None
) -> TransferModel:
    """Builds a `TransferModel`, checking that `metadata` fits the output width."""
    model = TransferModel(inputs, outputs, name=name, class_metadata=metadata)
    width = _output_width(model)
    if width != metadata.num_classes:
        raise ValueError(
            f"Model {model.name!r} outputs {width} classes but {metadata.num_classes} "
            f"class names were given: {list(metadata.class_names)[:10]}..."
        )
    return model


def class_info(model: keras.Model) -> ClassMetadata:
    """Returns the class metadata of `model`.

    Models built elsewhere (no metadata) get default names `class_0`, `class_1`, ...

    Example:

    >>> tt.class_info(model).class_names[:3]
    ('red_circle', 'red_square', 'red_triangle')
    """
    metadata = getattr(model, "class_metadata", None)
    if isinstance(metadata, ClassMetadata):
        return metadata
    return ClassMetadata.default(_output_width(model))


ADDING_OPERATIONS = ("expand_classes", "merge_heads")


def class_steps(metadata: ClassMetadata) -> dict[str, tuple[str, ...]]:
    """The model's classes grouped by the step that brought them, oldest first.

    "original" holds the classes the model started with; "step 1", "step 2",
    ... the classes each expansion (or merge) added, in the order of the
    history. Classes dropped since are left out.

    Example:

    >>> steps = class_steps(tt.class_info(model))      # expanded 90 -> 92 -> 95
    >>> {step: len(names) for step, names in steps.items()}
    {'original': 90, 'step 1': 2, 'step 2': 3}
    """
    additions = [
        tuple(entry.get("added", ()))
        for entry in metadata.history
        if entry.get("operation") in ADDING_OPERATIONS
    ]
    added = {name for names in additions for name in names}
    present = set(metadata.class_names)
    steps = {"original": tuple(n for n in metadata.class_names if n not in added)}
    for index, names in enumerate(additions, start=1):
        steps[f"step {index}"] = tuple(n for n in names if n in present)
    return steps


def expanded_from(metadata: ClassMetadata, reference: Any = None) -> int | None:
    """How many classes the model had before its last expansion (from its history),
    else the `reference` model's class count, else None.

    Example:

    >>> expanded_from(tt.class_info(tt.expand_classes(base, 2)))
    90
    """
    expansions = [h for h in metadata.history if h.get("operation") == "expand_classes"]
    if expansions:
        return int(expansions[-1]["old_classes"])
    if reference is not None:
        return class_info(reference).num_classes
    return None


def old_class_count(
    old_classes: int | Sequence[str] | None, class_names: Sequence[str]
) -> int | None:
    """`old_classes` (a count, or the first class names in order) as a count, checked
    against `class_names`; None stays None.

    Example:

    >>> old_class_count(["cat", "dog"], ["cat", "dog", "owl"])
    2
    """
    names = [str(name) for name in class_names]
    if old_classes is None:
        return None
    if isinstance(old_classes, int) or hasattr(old_classes, "__index__"):
        count = int(old_classes)
        if not 0 < count <= len(names):
            raise ValueError(f"old_classes must be in 1..{len(names)}; got {old_classes}.")
        return count
    given = [str(name) for name in old_classes]
    if given != names[: len(given)]:
        raise ValueError(
            f"old_classes must be the first class names, in order; got {given[:5]}... but the "
            f"classes start with {names[:5]}..."
        )
    return len(given)


def _output_width(model: keras.Model) -> int:
    outputs = model.outputs
    if len(outputs) != 1 or outputs[0].shape[-1] is None:
        raise ValueError(
            f"Model {model.name!r} does not have a single classification output with a "
            f"known number of classes (outputs: {[tuple(o.shape) for o in outputs]})."
        )
    return int(outputs[0].shape[-1])

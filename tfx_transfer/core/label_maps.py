"""Label maps: class names with their original ids, e.g. COCO's sparse category ids.

Models index classes contiguously (output column k); data sets often use other
ids (COCO's 80 categories use ids 1..90 with gaps). A `LabelMap` converts both
ways and reads and writes JSON files of the form
`{"classes": [{"id": 1, "name": "person"}, ...]}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfx_transfer.core.metadata import ClassMetadata

# COCO category ids run from 1 to 90; these ten are not used.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Class names and their original ids; column `k` of a model is `names[k]`.

    Example:

    >>> label_map = LabelMap.coco(coco_names)        # 80 names, ids 1..90 with gaps
    >>> label_map.to_indices([1, 13, 90])
    array([ 0, 11, 79])
    >>> label_map.to_ids([11])
    array([13])
    """

    names: tuple[str, ...]
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))
        ClassMetadata(self.names, class_ids=self.ids)  # same checks: non-empty, unique names
        duplicated = sorted({i for i in self.ids if self.ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"Label map ids must be unique; duplicated: {duplicated}.")

    @classmethod
    def coco(cls, names: Sequence[str]) -> LabelMap:
        """The 80 COCO categories in id order, with their sparse ids."""
        if len(names) != len(COCO_IDS):
            raise ValueError(f"COCO has {len(COCO_IDS)} categories; got {len(names)} names.")
        return cls(tuple(names), COCO_IDS)

    @classmethod
    def from_metadata(cls, metadata: ClassMetadata) -> LabelMap:
        return cls(metadata.class_names, metadata.class_ids)

    def to_indices(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Original ids -> contiguous column indices (unknown ids are an error naming them)."""
        lookup = {class_id: index for index, class_id in enumerate(self.ids)}
        ids = np.asarray(ids)
        unknown = sorted({int(i) for i in ids.ravel() if int(i) not in lookup})
        if unknown:
            raise ValueError(
                f"Class ids not in the label map: {unknown}; known ids: {list(self.ids)}."
            )
        return np.vectorize(lookup.__getitem__, otypes=[np.int64])(ids)

    def to_ids(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Contiguous column indices -> original ids."""
        indices = np.asarray(indices)
        bad = sorted({int(i) for i in indices.ravel() if not 0 <= int(i) < len(self.ids)})
        if bad:
            raise ValueError(f"Class indices out of range 0..{len(self.ids) - 1}: {bad}.")
        return np.asarray(self.ids)[indices]

    def save(self, path: str | os.PathLike) -> Path:
        """Writes `{"classes": [{"id": ..., "name": ...}, ...]}`."""
        path = Path(path)
        classes = [{"id": i, "name": n} for i, n in zip(self.ids, self.names)]
        path.write_text(json.dumps({"classes": classes}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        """Reads a label-map JSON file; errors name the file and the bad entry."""
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"Label map file not found: {str(path)!r}.") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"Label map {str(path)!r} is not valid JSON: {error}.") from None
        classes = document.get("classes") if isinstance(document, dict) else None
        if not isinstance(classes, list) or not classes:
            raise ValueError(
                f'Label map {str(path)!r} must hold {{"classes": [{{"id": 1, "name": "..."}}, ...]}}.'
            )
        for position, entry in enumerate(classes):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("id"), int)
                or isinstance(entry.get("id"), bool)
                or not isinstance(entry.get("name"), str)
            ):
                raise ValueError(
                    f"Label map {str(path)!r}, entry {position}: expected an integer 'id' and a "
                    f"string 'name'; got {entry!r}."
                )
        try:
            return cls(tuple(e["name"] for e in classes), tuple(e["id"] for e in classes))
        except ValueError as error:
            raise ValueError(f"Label map {str(path)!r}: {error}") from None

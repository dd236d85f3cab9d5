"""`manifest`: labelled images listed in a CSV or JSON-lines file."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfx_transfer.core.label_maps import LabelMap
from tfx_transfer.data.common import ImageData, labelled_files
from tfx_transfer.data.images import as_size

MULTI_LABEL_SEPARATOR = "|"


def manifest(
    path: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    class_names: Sequence[str] | str | os.PathLike | None = None,
    multi_label: bool | None = None,
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    cache: str | None = None,
    deterministic: bool = True,
) -> ImageData:
    """Loads images listed in a manifest: CSV (`path,label`) or JSON lines.

    Paths are relative to the manifest's folder (absolute paths work too). A
    CSV may start with a `path,label` header; JSON lines look like
    `{"path": "a.jpg", "label": "cat"}`. Several labels per image
    (`cat|dog`, or a JSON list) make a multi-label data set with multi-hot
    float32 labels. Lines pointing to missing or unusable files are skipped
    and listed in `.skipped` (`strict=True` raises instead).

    Args:
        path: the manifest file (`.csv`, `.jsonl` or `.json`).
        image_size: int or (height, width).
        class_names: the classes, in column order: a list, or the path of a
            label-map JSON file (`tt.LabelMap.save`); default: the sorted labels
            found. A label outside a given list is an error naming the line.
        multi_label: bool. Default: True when any line has several labels.
        batch_size, validation_split, test_split, seed, strict, cache,
        deterministic: as in `tt.data.image_folder`.

    Example:

    >>> data = tt.data.manifest("train.csv", image_size=224, validation_split=0.1)
    >>> data.class_names
    ['cat', 'dog']
    """
    manifest_path = Path(path)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"Manifest file not found: {str(manifest_path)!r}.")
    rows = _read_rows(manifest_path)
    if not rows:
        raise ValueError(f"Manifest {str(manifest_path)!r} lists no images.")
    if multi_label is None:
        multi_label = any(len(labels) > 1 for _, _, labels in rows)
    names = _class_names(class_names, rows, manifest_path)
    index = {name: i for i, name in enumerate(names)}
    paths, labels, missing = [], [], {}
    for line, image_path, row_labels in rows:
        unknown = [label for label in row_labels if label not in index]
        if unknown:
            raise ValueError(
                f"{manifest_path}:{line}: label {unknown[0]!r} is not one of the classes "
                f"{names[:20]}{'...' if len(names) > 20 else ''}."
            )
        if len(row_labels) > 1 and not multi_label:
            raise ValueError(
                f"{manifest_path}:{line}: several labels {row_labels} but multi_label=False."
            )
        full = image_path if os.path.isabs(image_path) else str(manifest_path.parent / image_path)
        if not os.path.isfile(full):
            missing[full] = f"missing file (manifest line {line})"
        paths.append(full)
        if multi_label:
            row = np.zeros(len(names), np.float32)
            row[[index[label] for label in row_labels]] = 1.0
            labels.append(row)
        else:
            labels.append(index[row_labels[0]])
    return labelled_files(
        paths,
        np.array(labels, dtype=np.float32 if multi_label else np.int32),
        names,
        source=repr(str(manifest_path)),
        image_size=as_size(image_size),
        batch_size=batch_size,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        strict=strict,
        cache=cache,
        deterministic=deterministic,
        missing=missing,
        require_every_class=class_names is None,
    )


def _read_rows(path: Path) -> list[tuple[int, str, list[str]]]:
    """[(line number, image path, labels)] from a CSV or JSON-lines manifest."""
    rows = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
                image = entry["path"]
                labels = entry.get("labels", entry.get("label"))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ValueError(
                    f'{path}:{line}: expected {{"path": ..., "label": ...}}; got {text[:80]!r}.'
                ) from None
            rows.append((line, str(image), _labels(labels, path, line)))
        return rows
    with path.open(newline="") as handle:
        for line, record in enumerate(csv.reader(handle), start=1):
            if not record or not "".join(record).strip():
                continue
            if line == 1 and [c.strip().lower() for c in record] == ["path", "label"]:
                continue
            if len(record) != 2:
                raise ValueError(f"{path}:{line}: expected 'path,label'; got {record}.")
            rows.append((line, record[0].strip(), _labels(record[1], path, line)))
    return rows


def _labels(value, path: Path, line: int) -> list[str]:
    if isinstance(value, list):
        labels = [str(v).strip() for v in value]
    elif isinstance(value, (str, int)):
        labels = [part.strip() for part in str(value).split(MULTI_LABEL_SEPARATOR)]
    else:
        labels = []
    if not labels or not all(labels):
        raise ValueError(f"{path}:{line}: missing or empty label ({value!r}).")
    return labels


def _class_names(class_names, rows, manifest_path: Path) -> list[str]:
    if class_names is None:
        return sorted({label for _, _, labels in rows for label in labels})
    if isinstance(class_names, (str, os.PathLike)):
        return list(LabelMap.load(class_names).names)
    return [str(name) for name in class_names]

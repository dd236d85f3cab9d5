"""Preparing a TFDS data set, or failing fast with a clear message when it cannot be
downloaded (shared by the classification, detection and segmentation TFDS sources)."""

from __future__ import annotations

import socket
import urllib.parse

CONNECT_TIMEOUT_SECONDS = 3.0


class DatasetUnavailableError(OSError):
    """A TFDS data set is not prepared locally and cannot be downloaded now."""


def prepare(builder, name: str, download: bool) -> None:
    urls = list(builder.url_infos or {})
    size = sum(info.size for info in (builder.url_infos or {}).values()) or None
    if not download:
        raise DatasetUnavailableError(_unavailable(builder, name, size, "download=False"))
    host = urllib.parse.urlparse(urls[0]).hostname if urls else "storage.googleapis.com"
    if not can_connect(host):
        raise DatasetUnavailableError(_unavailable(builder, name, size, f"no connection to {host}"))
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise DatasetUnavailableError(_unavailable(builder, name, size, str(error))) from error


def can_connect(host: str) -> bool:
    """True when `host` answers on port 443 within a few seconds."""
    try:
        with socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def _unavailable(builder, name: str, size, reason: str) -> str:
    return (
        f"TFDS data set {name!r} is not prepared in {builder.data_dir} and cannot be downloaded "
        f"now ({reason}).\n"
        f"  download size: {f'{size / 2**20:.2f} MiB' if size else 'unknown'}\n"
        f"  data_dir:      {builder.data_dir_root}\n"
        f"On a machine with internet access run `tfds build {name} --data_dir <folder>` (or "
        f"`tfds.load({name!r}, data_dir=<folder>)`), copy <folder> here and pass "
        "data_dir=<folder>."
    )

"""Helpers for tasks that read text files through ``datasets``: a readable-text check with a
one-line error, and ``datasets`` without its log lines and progress bars.

No torch and no ``datasets`` at import time.
"""

from __future__ import annotations

import codecs
import contextlib
from pathlib import Path
from typing import Iterator

from zoo_core.config import ConfigError


def check_text_file(path: str | Path, field: str = "data") -> None:
    """``path`` exists, is not empty and is UTF-8 throughout (read in 1 MiB chunks, so a large file
    costs no memory); otherwise a :class:`ConfigError` on ``field`` naming the file and the offset."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(field, f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ConfigError(field, f"{path}: empty file", "give a file with text in it")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise ConfigError(field, f"{path}: not UTF-8 text (undecodable byte at offset {offset + e.start})",
                                  "convert the file to UTF-8") from None
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ConfigError(field, f"{path}: not UTF-8 text (truncated character at the end)",
                          "convert the file to UTF-8") from None


@contextlib.contextmanager
def quiet_datasets(progress: bool = False) -> Iterator:
    """The ``datasets`` module with its logging at errors only and, unless ``progress``, its progress
    bars off for the duration (a user's setting is restored after)."""
    import datasets

    datasets.logging.set_verbosity_error()
    bars = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if bars:
            datasets.enable_progress_bars()


def hub_splits(datasets, data: str, config: str | None, *, what: str, fix: str,
               validation: tuple[str, ...] = ("validation", "valid", "val")) -> dict:
    """``{"train", "validation", "test"}`` of the hub dataset ``data`` (``validation`` lists the names
    its validation split may have). Failing to load it, or a missing split, is a one-line
    :class:`ConfigError` on ``data``: "``data`` is not a local ``what``, and ...", then ``fix``."""
    try:
        dd = datasets.load_dataset(data, config)
    except Exception as e:   # offline, unknown id, missing config: one line, whatever datasets raised
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError("data", f"{data!r} is not a local {what}, and loading it as a hub dataset failed "
                                  f"({reason[:200]})", fix) from None
    out = {}
    for split, names in (("train", ("train",)), ("validation", validation), ("test", ("test",))):
        found = next((dd[n] for n in names if n in dd), None)
        if found is None:
            raise ConfigError("data", f"hub dataset {data!r} has no {split} split (has {', '.join(dd)})")
        out[split] = found
    return out


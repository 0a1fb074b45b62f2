"""Corpora -> tokenizer -> one token stream per split -> contiguous BPTT windows.

Text goes through ``datasets`` (Arrow, memory-mapped) line by line: the tokenizer trains from an
iterator over the training split and each split is encoded with ``Dataset.map`` into the Arrow
cache, then flattened into one int32 ``.npy`` next to it, opened memory-mapped. So a corpus
larger than memory is never held whole in Python lists (or in RAM).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zoo_core import ConfigError, ZooError
from zoo_core.textdata import check_text_file, hub_splits, quiet_datasets
from zoo_lm import EOS, UNK

SPLITS = ("train", "validation", "test")
# Folder layouts, tried in order: split -> file name.
LAYOUTS = {
    "ptb": {"train": "ptb.train.txt", "validation": "ptb.valid.txt", "test": "ptb.test.txt"},
    "wikitext": {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
    "wikitext-tokens": {"train": "wiki.train.tokens", "validation": "wiki.valid.tokens", "test": "wiki.test.tokens"},
    "wikitext-raw": {"train": "wiki.train.raw", "validation": "wiki.valid.raw", "test": "wiki.test.raw"},
}
TOKENIZER = "tokenizer.json"
DEFAULT_BPE_VOCAB = 8000


# ---- files ---------------------------------------------------------------------------------------


def split_files(folder: Path) -> dict[str, Path]:
    """The train/validation/test files of a folder in a known layout, or a one-line error naming what is missing."""
    for name, layout in LAYOUTS.items():
        if (folder / layout["train"]).is_file():
            files = {s: folder / f for s, f in layout.items()}
            for s, p in files.items():
                if not p.is_file():
                    raise ConfigError("data", f"{p}: missing {s} file (the {name} layout is "
                                              f"{', '.join(layout.values())})")
            return files
    known = "; ".join(", ".join(layout.values()) for layout in LAYOUTS.values())
    raise ConfigError("data", f"{folder}: no training file found", f"expected one of: {known}")


def _looks_like_path(data: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else that does not exist is a missing path."""
    return data.startswith((".", "/", "~")) or data.count("/") > 1 or data.endswith((".txt", ".tokens", ".raw"))


# ---- datasets ------------------------------------------------------------------------------------


def raw_splits(cfg, keep_linebreaks: bool):
    """``{split: Dataset}`` with one ``text`` column of lines; resolves ``cfg.data`` to an absolute path."""
    if not cfg.data:
        raise ConfigError("data", "no corpus given",
                          "pass --data DIR (train/valid/test files), --data FILE.txt or --data HUB_ID")
    path = Path(cfg.data).expanduser()
    with quiet_datasets() as datasets:
        if path.is_dir():
            files = split_files(path)
            for p in files.values():
                check_text_file(p)
            cfg.data = str(path.resolve())   # so `zoo eval` finds the corpus from any directory
            dd = _load_text(datasets, {s: str(p) for s, p in files.items()}, keep_linebreaks)
            return {s: dd[s] for s in SPLITS}
        if path.is_file():
            check_text_file(path)
            cfg.data = str(path.resolve())
            ds = _load_text(datasets, {"train": str(path)}, keep_linebreaks)["train"]
            return _split_by_fraction(ds, cfg.split_fraction, path)
        if _looks_like_path(cfg.data):
            raise ConfigError("data", f"{cfg.data}: no such file or folder")
        return _hub_splits(datasets, cfg)


def _load_text(datasets, files: dict[str, str], keep_linebreaks: bool):
    """``datasets``' text loader, its failures on unreadable content turned into one line naming the files."""
    try:
        return datasets.load_dataset("text", data_files=files, keep_linebreaks=keep_linebreaks)
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__ or e
        raise ConfigError("data", f"cannot read {', '.join(files.values())} as text "
                                  f"({type(cause).__name__}: {str(cause).splitlines()[0][:160]})",
                          "pass UTF-8 text files with line breaks") from None


def _split_by_fraction(ds, fraction: float, path: Path):
    """Leading lines holding ``fraction`` of the characters train; the rest is validation (and test, as nanoGPT has none)."""
    lengths = ds.map(lambda b: {"n": [len(t) for t in b["text"]]}, batched=True, remove_columns=["text"])
    cum = np.cumsum(lengths.with_format("numpy")["n"])
    if len(cum) < 2:
        raise ConfigError("data", f"{path}: a single line cannot be split into training and validation text",
                          "give a file of several lines, or a folder with train/valid/test files")
    k = int(np.searchsorted(cum, fraction * cum[-1], side="left")) + 1
    k = min(max(k, 1), len(cum) - 1)
    train, valid = ds.select(range(k)), ds.select(range(k, len(cum)))
    return {"train": train, "validation": valid, "test": valid}


def _hub_splits(datasets, cfg):
    out = {}
    for split, found in hub_splits(datasets, cfg.data, cfg.data_config, what="file or folder",
                                   fix="pass a folder with train/valid/test files or a text file").items():
        column = next((c for c in ("text", "sentence") if c in found.column_names), None)
        if column is None:
            column = next((c for c, f in found.features.items() if getattr(f, "dtype", None) == "string"), None)
        if column is None:
            raise ConfigError("data", f"hub dataset {cfg.data!r} has no text column")
        found = found.select_columns([column])
        out[split] = found.rename_column(column, "text") if column != "text" else found
    return out


# ---- tokenizers ----------------------------------------------------------------------------------


def _text_batches(ds, newline: bool, size: int = 1000) -> Iterator[list[str]]:
    for batch in ds.iter(batch_size=size):
        yield _lines(batch["text"], newline)


def _lines(texts: list[str], newline: bool) -> list[str]:
    # char/bpe keep line breaks as tokens; the last line of a file (or hub rows) may lack one
    return [t if t.endswith("\n") else t + "\n" for t in texts] if newline else texts


def train_tokenizer(level: str, train, vocab_size: int | None):
    """A ``tokenizers.Tokenizer`` for ``level`` fitted on the training split (streamed, never listed whole)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if level == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size or DEFAULT_BPE_VOCAB, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_text_batches(train, newline=True), trainer=trainer)
        return tok
    # word/char: counted here rather than by WordLevelTrainer, whose ids have holes when the text
    # holds a special token (PTB is full of <unk>) and whose order of equally frequent words varies
    # from run to run. Ties break alphabetically, so the vocabulary is a function of the text.
    counts: Counter = Counter()
    for lines in _text_batches(train, newline=level == "char"):
        for line in lines:
            counts.update(line.split() if level == "word" else line)
    specials = [UNK, EOS] if level == "word" else [UNK]
    words = sorted((w for w in counts if w not in specials), key=lambda w: (-counts[w], w))
    vocab = specials + words
    if vocab_size is not None:
        vocab = vocab[:vocab_size]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    if level == "word":
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:   # every character (spaces and line breaks included) is a token
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        tok.decoder = decoders.Fuse()
    return tok


def save_tokenizer(tok, run_dir: str) -> None:
    from zoo_core.checkpoint import atomic_write

    atomic_write(Path(run_dir) / TOKENIZER, tok.to_str(pretty=True))


def load_tokenizer(run_dir: str):
    from tokenizers import Tokenizer

    path = Path(run_dir) / TOKENIZER
    if not path.is_file():
        raise ZooError(f"{path}: not found; the run's tokenizer is missing")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise ZooError(f"{path}: not a valid tokenizers file ({str(e)[:200]})") from None


def eos_ids(tok, level: str) -> list[int]:
    """Ids appended to every line: ``<eos>`` at word level, nothing otherwise (line breaks are tokens)."""
    return [tok.token_to_id(EOS)] if level == "word" else []


# ---- token streams -------------------------------------------------------------------------------


def token_stream(ds, tok, level: str) -> torch.Tensor:
    """A split as one 1-D int32 tensor of token ids, memory-mapped from a ``.npy`` beside the Arrow cache."""
    from datasets.fingerprint import Hasher

    tail = eos_ids(tok, level)
    newline = level != "word"
    fingerprint = Hasher.hash([ds._fingerprint, hashlib.sha256(tok.to_str().encode()).hexdigest(), tail, newline])

    def encode(batch):
        ids = [e.ids + tail for e in tok.encode_batch(_lines(batch["text"], newline), add_special_tokens=False)]
        return {"ids": ids, "n": [len(i) for i in ids]}

    encoded = ds.map(encode, batched=True, batch_size=1000, remove_columns=ds.column_names,
                     new_fingerprint=fingerprint)
    import pyarrow.compute as pc

    table = encoded.data
    total = int(pc.sum(table.column("n")).as_py() or 0)
    chunks = table.column("ids").chunks
    if not encoded.cache_files:   # an in-memory dataset: an in-memory stream
        parts = [np.asarray(c.flatten().to_numpy(zero_copy_only=False), dtype=np.int32) for c in chunks]
        return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, np.int32))
    path = Path(encoded.cache_files[0]["filename"]).parent / f"zoo-lm-stream-{fingerprint}.npy"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(total,))
        at = 0
        for c in chunks:
            flat = c.flatten().to_numpy(zero_copy_only=False)
            out[at:at + len(flat)] = flat
            at += len(flat)
        out.flush()
        del out
        os.replace(tmp, path)
    return torch.from_numpy(np.load(path, mmap_mode="c"))


def load(task) -> None:
    """Fill ``task.tokenizer`` (trained on train unless loaded from a run) and ``task.streams``."""
    cfg = task.config
    splits = raw_splits(cfg, keep_linebreaks=cfg.level != "word")
    with quiet_datasets(progress=len(splits["train"]) >= 200_000):   # bars only where encoding takes a while
        _load(task, splits)


def _load(task, splits) -> None:
    cfg = task.config
    if task.tokenizer is None:
        task.tokenizer = train_tokenizer(cfg.level, splits["train"], cfg.vocab_size)
    streams = {}
    for split in SPLITS:
        if split == "test" and splits["test"] is splits["validation"]:
            streams[split] = streams["validation"]
            continue
        streams[split] = token_stream(splits[split], task.tokenizer, cfg.level)
        if len(streams[split]) < 2:
            raise ConfigError("data", f"the {split} split of {cfg.data} has {len(streams[split])} token(s); "
                                      f"it needs at least 2")
    n_train = len(streams["train"])
    if n_train < cfg.bptt + 1:
        raise ConfigError("bptt", f"{cfg.bptt} is longer than the training split ({n_train} tokens)",
                          f"use --bptt {max(1, n_train - 1)} or less")
    task.streams = streams


# ---- batches -------------------------------------------------------------------------------------


def columns(stream: torch.Tensor, n: int) -> torch.Tensor:
    """The stream cut into ``n`` contiguous columns: ``[n, len // n]`` (a view; the tail is dropped)."""
    length = len(stream) // n
    return stream[: n * length].view(n, length)


def windows(task, split: str, batch_size: int, *, start: int = 0, rank: int = 0, world_size: int = 1,
            bptt: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """``{"x", "y"}`` ``[batch_size, <= bptt]`` int64 windows, in order: window k+1 continues window k
    in every row, so a carried recurrent state sees one unbroken text per row."""
    if split not in task.streams:
        raise ZooError(f"split {split!r}: data not loaded (call load_data first)")
    stream = task.streams[split]
    bptt = bptt or task.config.bptt
    length = len(stream) // (batch_size * world_size)
    if length < bptt + 1:
        most = len(stream) // ((bptt + 1) * world_size)
        procs = f" x {world_size} processes" if world_size > 1 else ""
        raise ConfigError("batch_size", f"{batch_size}{procs} columns of the {split} split ({len(stream)} tokens) "
                                        f"hold {length} tokens each, fewer than bptt + 1 = {bptt + 1}",
                          f"use --batch-size {most} or less, or a smaller --bptt" if most else "use a smaller --bptt")
    data = columns(stream, batch_size * world_size)[rank * batch_size:(rank + 1) * batch_size]
    return _windows(data, bptt, start)


def _windows(data: torch.Tensor, bptt: int, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    for k, i in enumerate(range(0, data.shape[1] - 1, bptt)):
        if k < start:
            continue
        t = min(bptt, data.shape[1] - 1 - i)
        chunk = data[:, i:i + t + 1].long()
        yield {"x": chunk[:, :-1], "y": chunk[:, 1:]}

"""Parallel corpora -> tokenizers -> token ids (Arrow, memory-mapped) -> length-bucketed batches.

A split is a ``datasets.Dataset`` with columns ``src`` and ``tgt`` (the text, one sentence each)
and, after encoding, ``src_ids`` and ``tgt_ids``. Encoding runs through ``Dataset.map``, so the
ids live in the Arrow cache rather than in Python lists.

Sentences are pre-tokenized into words and punctuation marks with a space marker (``▁``) on the
tokens that follow a space, so decoding restores the original spacing exactly: BLEU and chrF
score detokenized text, as sacreBLEU expects.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from zoo_core import ConfigError, ZooError
from zoo_core.textdata import check_text_file, hub_splits, quiet_datasets
from zoo_translation import EOS, PAD, SOS, SPECIALS, UNK

SPLITS = ("train", "validation", "test")
# File stems tried for each split, in order (Multi30k calls its test set test_2016_flickr).
STEMS = {"train": ("train",), "validation": ("val", "valid", "validation", "dev"),
         "test": ("test", "test_2016_flickr", "test2016", "tst")}
DEFAULT_BPE_VOCAB = 8000
MARK = "\u2581"   # ▁, the space marker of SentencePiece


# ---- files ---------------------------------------------------------------------------------------


def find_split_files(folder: Path, src: str, tgt: str) -> dict[str, tuple[str, list[Path]]]:
    """``{split: (format, files)}``: format ``text`` (two files, src then tgt), ``tsv`` or ``jsonl`` (one)."""
    out = {}
    for split, stems in STEMS.items():
        found = None
        for stem in stems:
            pair = [folder / f"{stem}.{src}", folder / f"{stem}.{tgt}"]
            if pair[0].is_file() or pair[1].is_file():
                missing = [p for p in pair if not p.is_file()]
                if missing:
                    raise ConfigError("data", f"{missing[0]}: missing (its other side {pair[pair[0] in missing]} "
                                              f"exists)", f"add the {split} file, or check --src-lang/--tgt-lang")
                found = ("text", pair)
                break
            for fmt in ("tsv", "jsonl"):
                if (folder / f"{stem}.{fmt}").is_file():
                    found = (fmt, [folder / f"{stem}.{fmt}"])
                    break
            if found:
                break
        if found is None:
            names = ", ".join(f"{s}.{src}/{s}.{tgt}" for s in stems)
            raise ConfigError("data", f"{folder}: no {split} split (looked for {names}, or .tsv/.jsonl)",
                              f"add the {split} files, or check --src-lang {src} --tgt-lang {tgt}")
        for p in found[1]:
            check_text_file(p)
        out[split] = found
    return out


def _looks_like_path(data: str) -> bool:
    return data.startswith((".", "/", "~")) or data.count("/") > 1


def _read_text_pair(datasets, files: list[Path]):
    """Two aligned text files -> one Dataset with ``src`` and ``tgt`` (line counts checked)."""
    sides = []
    for path in files:
        try:
            ds = datasets.load_dataset("text", data_files={"x": str(path)}, keep_linebreaks=False)["x"]
        except datasets.exceptions.DatasetGenerationError as e:
            cause = e.__cause__ or e
            raise ConfigError("data", f"cannot read {path} as text ({str(cause).splitlines()[0][:160]})",
                              "pass UTF-8 text, one sentence per line") from None
        sides.append(ds)
    if len(sides[0]) != len(sides[1]):
        raise ConfigError("data", f"{files[0]} has {len(sides[0])} lines but {files[1]} has {len(sides[1])}",
                          "line i of one file must translate line i of the other")
    return datasets.concatenate_datasets([sides[0].rename_column("text", "src"),
                                          sides[1].rename_column("text", "tgt")], axis=1)


def _read_table(datasets, fmt: str, path: Path, src: str, tgt: str):
    """A TSV (``src<TAB>tgt`` per line, or a header naming the languages) or JSON lines file."""
    if fmt == "tsv":
        rows = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if i == 1 and line.split("\t") == [src, tgt]:
                    continue   # a header
                parts = line.split("\t")
                if len(parts) != 2:
                    raise ConfigError("data", f"{path}:{i}: {len(parts)} tab-separated fields, expected 2 "
                                              f"({src}, {tgt})", "write one 'source<TAB>target' pair per line")
                rows.append(parts)
        return datasets.Dataset.from_dict({"src": [r[0] for r in rows], "tgt": [r[1] for r in rows]})
    try:
        ds = datasets.load_dataset("json", data_files={"x": str(path)})["x"]
    except Exception as e:
        cause = e.__cause__ or e
        raise ConfigError("data", f"{path}: not JSON lines ({str(cause).splitlines()[0][:160]})",
                          'write one {"' + src + '": ..., "' + tgt + '": ...} object per line') from None
    return _pick_columns(ds, src, tgt, str(path))


def _pick_columns(ds, src: str, tgt: str, where: str):
    """``src``/``tgt`` from columns named by language, or from a ``translation`` dict (WMT style)."""
    if "translation" in ds.column_names:
        ds = ds.map(lambda b: {"src": [t[src] for t in b["translation"]], "tgt": [t[tgt] for t in b["translation"]]},
                    batched=True, remove_columns=ds.column_names)
        return ds
    missing = [lang for lang in (src, tgt) if lang not in ds.column_names]
    if missing:
        raise ConfigError("data", f"{where} has no {missing[0]!r} field (has {', '.join(ds.column_names)})",
                          "set --src-lang/--tgt-lang to its field names")
    return ds.select_columns([src, tgt]).rename_columns({src: "src", tgt: "tgt"})


def _check_pairs(ds, where: str) -> "object":
    """Drop pairs empty on both sides; refuse a pair empty on one side only, naming its line.
    The emptiness flags come from a batched map, so the text itself is never listed whole."""
    flags = ds.map(lambda b: {"src_empty": [not s.strip() for s in b["src"]],
                              "tgt_empty": [not t.strip() for t in b["tgt"]]},
                   batched=True, batch_size=10_000, remove_columns=ds.column_names).data
    src_empty, tgt_empty = (flags.column(c).to_numpy().astype(bool) for c in ("src_empty", "tgt_empty"))
    one_sided = np.flatnonzero(src_empty != tgt_empty)
    if len(one_sided):
        i = int(one_sided[0])
        side = "source" if src_empty[i] else "target"
        raise ConfigError("data", f"{where}: line {i + 1} is empty on the {side} side only "
                                  f"({len(one_sided)} such line(s))", "remove the pair or fill in its translation")
    keep = np.flatnonzero(~src_empty)
    if len(keep) == 0:
        raise ConfigError("data", f"{where}: no sentence pairs", "give files with text in them")
    return ds if len(keep) == len(ds) else ds.select(keep)


def raw_splits(cfg) -> dict:
    """``{split: Dataset(src, tgt)}``; resolves ``cfg.data`` to an absolute path."""
    if not cfg.data:
        raise ConfigError("data", "no corpus given", "pass --data DIR (e.g. multi30k with train.de/train.en, "
                                                     "val.*, test_2016_flickr.*) or --data HUB_ID")
    path = Path(cfg.data).expanduser()
    with quiet_datasets() as datasets:
        if path.is_dir():
            found = find_split_files(path, cfg.src_lang, cfg.tgt_lang)
            cfg.data = str(path.resolve())
            out = {}
            for split, (fmt, files) in found.items():
                ds = (_read_text_pair(datasets, files) if fmt == "text"
                      else _read_table(datasets, fmt, files[0], cfg.src_lang, cfg.tgt_lang))
                out[split] = _check_pairs(ds, " / ".join(str(p) for p in files))
            return out
        if path.is_file():
            raise ConfigError("data", f"{path}: a file; translation reads a folder of split files",
                              "put train/val/test files in a folder and pass --data FOLDER")
        if _looks_like_path(cfg.data):
            raise ConfigError("data", f"{cfg.data}: no such folder")
        return _hub_splits(datasets, cfg)


def _hub_splits(datasets, cfg):
    splits = hub_splits(datasets, cfg.data, cfg.data_config, what="folder", fix="pass a folder of parallel files",
                        validation=("validation", "valid", "val", "dev"))
    return {split: _check_pairs(_pick_columns(found, cfg.src_lang, cfg.tgt_lang, cfg.data), f"{cfg.data} {split}")
            for split, found in splits.items()}


# ---- tokenizers ----------------------------------------------------------------------------------


def _base_tokenizer(model, lowercase: bool):
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers

    tok = Tokenizer(model)
    steps = [normalizers.NFKC(), normalizers.Strip()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(steps)
    # "▁word" after a space, punctuation marks apart: reversible by the Metaspace decoder
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="always"),
        pre_tokenizers.Split(Regex(rf"[^\w\s{MARK}]"), "isolated")])
    tok.decoder = decoders.Metaspace(replacement=MARK, prepend_scheme="always")
    return tok


def _texts(datasets_list, column_of) -> Iterator[list[str]]:
    for ds, column in zip(datasets_list, column_of):
        for batch in ds.iter(batch_size=1000):
            yield batch[column]


def train_tokenizer(cfg, sources: list[tuple[object, str]]):
    """A tokenizer fitted on ``sources`` ((dataset, column) pairs), streamed in batches."""
    from tokenizers import models, trainers

    if cfg.tokenizer == "bpe":
        tok = _base_tokenizer(models.BPE(unk_token=UNK), cfg.lowercase)
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size or DEFAULT_BPE_VOCAB, special_tokens=list(SPECIALS),
                                      min_frequency=cfg.min_freq, show_progress=False)
        tok.train_from_iterator(_texts(*zip(*sources)), trainer=trainer)
        return tok
    # word level, counted here so ties break alphabetically (the vocabulary is a function of the text)
    probe = _base_tokenizer(models.WordLevel({UNK: 0}, unk_token=UNK), cfg.lowercase)
    counts: Counter = Counter()
    for texts in _texts(*zip(*sources)):
        for text in texts:
            normalized = probe.normalizer.normalize_str(text)
            counts.update(w for w, _ in probe.pre_tokenizer.pre_tokenize_str(normalized))
    words = sorted((w for w, n in counts.items() if n >= cfg.min_freq and w not in SPECIALS),
                   key=lambda w: (-counts[w], w))
    if cfg.vocab_size is not None:
        words = words[: max(cfg.vocab_size - len(SPECIALS), 0)]
    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    return _base_tokenizer(models.WordLevel(vocab, unk_token=UNK), cfg.lowercase)


def save_tokenizers(toks: dict, run_dir: str) -> None:
    from zoo_core.checkpoint import atomic_write

    for side in ("src", "tgt"):
        atomic_write(Path(run_dir) / f"tokenizer.{side}.json", toks[side].to_str(pretty=True))


def load_tokenizers(run_dir: str) -> dict:
    from tokenizers import Tokenizer

    out = {}
    for side in ("src", "tgt"):
        path = Path(run_dir) / f"tokenizer.{side}.json"
        if not path.is_file():
            raise ZooError(f"{path}: not found; the run's {side} tokenizer is missing")
        try:
            out[side] = Tokenizer.from_file(str(path))
        except Exception as e:
            raise ZooError(f"{path}: not a valid tokenizers file ({str(e)[:200]})") from None
        for i, special in enumerate(SPECIALS):
            if out[side].token_to_id(special) != i:
                raise ZooError(f"{path}: {special} is not id {i}; not a zoo translation tokenizer")
    return out


def encode(tok, texts: list[str], max_len: int, *, reverse: bool = False, sos: bool = False) -> list[list[int]]:
    """Token ids of each text, cut to ``max_len``, then ``<eos>`` (and ``<sos>`` first for targets)."""
    out = []
    for e in tok.encode_batch(texts, add_special_tokens=False):
        ids = e.ids[:max_len]
        if reverse:
            ids = ids[::-1]
        out.append(([SPECIALS.index(SOS)] if sos else []) + ids + [SPECIALS.index(EOS)])
    return out


def decode(tok, ids: list[int]) -> str:
    """Ids (after ``<sos>``, up to ``<eos>``) -> text with its original spacing."""
    eos, unk = SPECIALS.index(EOS), SPECIALS.index(UNK)
    if eos in ids:
        ids = ids[: ids.index(eos)]
    # <unk> stands for a word, which followed a space ("▁word"): give it one too
    tokens = [MARK + UNK if i == unk else tok.id_to_token(i) for i in ids if i >= len(SPECIALS) or i == unk]
    return tok.decoder.decode(tokens) if tokens else ""


# ---- loading -------------------------------------------------------------------------------------


def load(task) -> None:
    """Fill ``task.tokenizers`` (trained on train unless loaded from a run) and ``task.splits_data``."""
    cfg = task.config
    splits = raw_splits(cfg)
    with quiet_datasets():
        if task.tokenizers is None:
            train = splits["train"]
            if cfg.shared_vocab:
                shared = train_tokenizer(cfg, [(train, "src"), (train, "tgt")])
                task.tokenizers = {"src": shared, "tgt": shared}
            else:
                task.tokenizers = {"src": train_tokenizer(cfg, [(train, "src")]),
                                   "tgt": train_tokenizer(cfg, [(train, "tgt")])}
        src_tok, tgt_tok = task.tokenizers["src"], task.tokenizers["tgt"]
        key = (src_tok.to_str(), tgt_tok.to_str(), cfg.max_len, cfg.reverse_source)
        from datasets.fingerprint import Hasher

        out = {}
        for split, ds in splits.items():
            def enc(batch):
                src = encode(src_tok, batch["src"], cfg.max_len, reverse=cfg.reverse_source)
                tgt = encode(tgt_tok, batch["tgt"], cfg.max_len, sos=True)
                return {"src_ids": src, "tgt_ids": tgt, "src_len": [len(s) for s in src],
                        "tgt_len": [len(t) for t in tgt]}

            out[split] = ds.map(enc, batched=True, batch_size=1000,
                                new_fingerprint=Hasher.hash([ds._fingerprint, key]))
        task.splits_data = out


# ---- batches -------------------------------------------------------------------------------------


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)   # <pad> is id 0
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate(src: list[list[int]], tgt: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    batch = {"src": _pad(src)}
    batch["src_mask"] = batch["src"] != 0
    if tgt is not None:
        batch["tgt"] = _pad(tgt)
    return batch


def order(task, split: str, batch_size: int, *, epoch: int, seed: int) -> list[np.ndarray]:
    """Batches of row indices. Training: shuffled, then sorted by length within pools of 50 batches
    (little padding), the batches shuffled again; other splits: in corpus order."""
    ds = task.splits_data[split]
    n = len(ds)
    if split != "train":
        return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    lengths = np.asarray(ds["src_len"]) + np.asarray(ds["tgt_len"])
    pool = batch_size * 50
    out = []
    for i in range(0, n, pool):
        chunk = perm[i:i + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def batches(task, split, batch_size, *, epoch=0, seed=0, start=0, rank=0, world_size=1):
    if split not in task.splits_data:
        raise ZooError(f"split {split!r}: data not loaded (call load_data first)")
    ds = task.splits_data[split]
    groups = order(task, split, batch_size, epoch=epoch, seed=seed)
    if world_size > 1:   # every rank the same number of batches
        per_rank = len(groups) // world_size
        if per_rank == 0:
            raise ConfigError("batch_size", f"{len(ds)} {split} pairs make {len(groups)} batch(es) of "
                                            f"{batch_size}, fewer than the {world_size} processes",
                              "lower --batch-size")
        groups = groups[rank::world_size][:per_rank]
    ratio = task.config.teacher_forcing * task.config.teacher_forcing_decay ** epoch
    for k, rows in enumerate(groups):
        if k < start:
            continue
        picked = ds.select_columns(["src_ids", "tgt_ids"])[rows.tolist()]
        batch = collate(picked["src_ids"], picked["tgt_ids"])
        if split == "train" and ratio < 1.0:
            batch["teacher_forcing"] = torch.tensor(ratio)
        yield batch


def references(task, split: str) -> list[str]:
    return list(task.splits_data[split]["tgt"])

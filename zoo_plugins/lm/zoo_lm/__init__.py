"""Language modelling for zoo: predict the next token of a text stream, with any architecture.

Data: a folder of ``train/valid/test`` text files (Penn Treebank ``ptb.*.txt`` or WikiText
``*.txt`` layout), one text file split by ``split_fraction`` (tiny shakespeare, as nanoGPT), or
a hub dataset id (``ptb_text_only``; ``wikitext`` with ``--data-config wikitext-2-raw-v1``).
Levels: ``word`` (whitespace tokens, ``<eos>`` at each line end), ``char`` and ``bpe``
(byte-level), all as a ``tokenizers`` tokenizer trained on the training split and saved in the
run as ``tokenizer.json``. Each split is tokenized through ``datasets`` (memory-mapped Arrow)
into one token stream, cut into ``batch_size`` contiguous columns and BPTT windows of ``bptt``.

Recurrent backbones carry their state across windows (reset at epoch start); attention
backbones see one causal window at a time. Metrics: loss and perplexity (word, bpe) or bits
per character (char); the test split is evaluated as one continuous stream (batch 1).

Commands: ``zoo generate RUN`` (sampling with a carried state / key-value cache) and
``zoo analyze RUN --per-step-loss --grad-norms``.

No torch at import time: ``zoo list`` imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zoo_core import ConfigError, Task, hookimpl, option

zoo_plugin_api = ">=1,<2"  # the zoo plugin API versions this plugin supports (zoo_core.PLUGIN_API)

LEVELS = ("word", "char", "bpe")
UNK, EOS = "<unk>", "<eos>"

SMOKE_TEXT = """the cat sat on the mat
the dog sat on the log
a cat and a dog met on the mat
the log and the mat sat still
"""


@dataclass
class LMConfig:
    data: str | None = option(None, help="Corpus: a folder with train/valid/test text files (ptb.train.txt or "
                                         "train.txt layout), one text file (split by split_fraction), or a "
                                         "hub dataset id (online only).")
    data_config: str | None = option(None, help="Hub dataset config, e.g. wikitext-2-raw-v1 for --data wikitext.")
    level: str = option("word", help="Tokens: words (+<eos> per line), characters or byte-level BPE.",
                        choices=LEVELS)
    vocab_size: int | None = option(None, help="word/char: keep the most frequent, the rest become <unk> "
                                               "(none: all); bpe: vocabulary size (none: 8000).", min=2)
    split_fraction: float = option(0.9, help="Single text file: the leading fraction (by characters, at a line "
                                             "boundary) that trains; the rest is validation and test.",
                                   min=0.0, max=1.0, min_exclusive=True, max_exclusive=True)
    bptt: int = option(35, help="Tokens per training window (truncated backpropagation through time).", min=1)
    embed_size: int | None = option(None, help="Token embedding size (none: the architecture's width).", min=1)
    tie_weights: bool = option(False, help="Share the input embedding and output layer (a projection is "
                                           "added when the backbone width differs from embed_size).")
    embed_dropout: float = option(0.0, help="Dropout on the token embeddings.", min=0.0, max=1.0,
                                  max_exclusive=True)
    output_dropout: float = option(0.0, help="Dropout on the backbone outputs, before the softmax layer.",
                                   min=0.0, max=1.0, max_exclusive=True)
    init_range: float = option(0.1, help="Embedding and output weights start uniform in [-r, r].", min=0.0)


class LanguageModeling(Task):
    name = "lm"
    Config = LMConfig
    description = "Language modelling (word, char or BPE) on PTB, WikiText, tiny shakespeare or any text."
    metric, mode = "loss", "min"
    # PyTorch's examples/word_language_model: SGD at lr 20, clipping 0.25, batch 20, bptt 35.
    trainer_defaults = {"optimizer": "sgd", "lr": 20.0, "clip_grad_norm": 0.25, "batch_size": 20,
                        "eval_every": 0, "max_steps": None, "max_epochs": 6, "log_every": 100}

    def __init__(self, config):
        super().__init__(config)
        self.tokenizer = None   # a tokenizers.Tokenizer, from load_data or load_artifacts
        self.streams = {}       # split -> 1-D int32 tensor of token ids (memory-mapped)

    @staticmethod
    def smoke_config(directory):
        """A tiny word-level corpus for the conformance checks (``zoo_core.testing``)."""
        from pathlib import Path

        folder = Path(directory) / "lm-smoke"
        folder.mkdir(parents=True, exist_ok=True)
        for split, repeat in (("train", 4), ("valid", 1), ("test", 1)):
            (folder / f"{split}.txt").write_text(SMOKE_TEXT * repeat, encoding="utf-8")
        return {"data": str(folder), "bptt": 5, "embed_size": 16}

    # ---- data ----------------------------------------------------------------------------------

    def load_data(self, run_dir=None):
        from zoo_lm import data

        data.load(self)

    def save_artifacts(self, run_dir):
        from zoo_lm import data

        data.save_tokenizer(self.tokenizer, run_dir)

    def load_artifacts(self, run_dir):
        from zoo_lm import data

        self.tokenizer = data.load_tokenizer(run_dir)

    @property
    def vocab_size(self) -> int:
        if self.tokenizer is None:
            raise ConfigError("data", "the vocabulary is not known before the data is loaded",
                              "call load_data() (or load_artifacts(run_dir)) first")
        return self.tokenizer.get_vocab_size()

    def batches(self, split, batch_size, *, epoch=0, seed=0, start=0, rank=0, world_size=1):
        from zoo_lm import data

        return data.windows(self, split, batch_size, start=start, rank=rank, world_size=world_size)

    # ---- model ---------------------------------------------------------------------------------

    def build_model(self, arch, arch_config):
        from zoo_lm.model import LanguageModel

        cfg = self.config
        embed = cfg.embed_size or arch.width(arch_config)
        backbone = arch.build(arch_config, embed, "decoder")
        return LanguageModel(backbone, self.vocab_size, embed, tie_weights=cfg.tie_weights,
                             embed_dropout=cfg.embed_dropout, output_dropout=cfg.output_dropout,
                             init_range=cfg.init_range)

    def step(self, model, batch, state=None):
        from zoo_lm.model import step

        return step(model, batch, state)

    def summarize(self, totals):
        loss = totals.get("loss_sum", 0.0) / max(totals.get("count", 0.0), 1.0)
        return metrics_from_loss(loss, self.config.level)

    def evaluate(self, model, split, batch_size):
        from zoo_lm.model import evaluate

        return evaluate(self, model, split, batch_size)

    def predict(self, model, text):
        from zoo_lm.generate import generate_text

        return generate_text(self, model, text, max_tokens=50)


def metrics_from_loss(loss: float, level: str) -> dict[str, float]:
    """Mean cross-entropy (nats per token) -> ``loss`` and ``perplexity``, or ``bits_per_char`` at char level."""
    if level == "char":
        return {"loss": loss, "bits_per_char": loss / math.log(2)}
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


@hookimpl
def register_tasks(register):
    register(LanguageModeling)


@hookimpl
def register_commands(cli):
    from zoo_lm.cli import analyze, generate

    cli.add_command(generate)
    cli.add_command(analyze)


__all__ = ["LMConfig", "LanguageModeling", "metrics_from_loss"]

"""Translation for zoo: an encoder-decoder over any architecture, trained with teacher forcing.

Data: a folder of parallel text files (``train.de``/``train.en``, ``val.*``, ``test*.*``: the
Multi30k layout), of ``{split}.tsv`` or ``{split}.jsonl`` files with the two languages as fields,
or a hub dataset id (``bentrevett/multi30k``; ``wmt16`` with ``--data-config de-en``). Text goes
through ``datasets``; tokenizers (word-level or BPE, shared or separate) are trained on the
training split with ``tokenizers`` and saved with the run.

Model: embeddings -> encoder backbone -> decoder backbone -> softmax layer. A recurrent
decoder starts from the encoder's final state (Sutskever et al. 2014) and may attend over the
encoder outputs (``attention``); a Transformer decoder cross-attends to them itself.

Decoding: greedy or beam search on the decoder's incremental state; BLEU and chrF by sacreBLEU.
Commands: ``zoo translate RUN TEXT`` (or ``--input FILE --output FILE``).

No torch at import time: ``zoo list`` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo_core import ConfigError, Task, hookimpl, option

zoo_plugin_api = ">=1.1,<2"  # Backbone.reorder_state (beam search) arrived in plugin API 1.1

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
SPECIALS = (PAD, UNK, SOS, EOS)   # ids 0..3 in every vocabulary
ATTENTION = ("none", "bahdanau", "dot")

# A tiny German-English corpus for the conformance checks and the smoke tests.
SMOKE_PAIRS = [
    ("ein hund läuft im park .", "a dog runs in the park ."),
    ("eine katze schläft .", "a cat sleeps ."),
    ("ein mann fährt ein rotes auto .", "a man drives a red car ."),
    ("zwei kinder spielen im wasser .", "two children play in the water ."),
    ("eine frau liest ein buch .", "a woman reads a book ."),
    ("ein hund schläft im gras .", "a dog sleeps in the grass ."),
    ("der mann läuft .", "the man runs ."),
    ("die kinder lesen .", "the children read ."),
]


@dataclass
class TranslationConfig:
    data: str | None = option(None, help="Parallel corpus: a folder of {train,val,test}.{SRC,TGT} text files "
                                         "(Multi30k layout) or {split}.tsv / {split}.jsonl, or a hub dataset "
                                         "id (online only).")
    data_config: str | None = option(None, help="Hub dataset config, e.g. de-en for --data wmt16.")
    src_lang: str = option("de", help="Source language: the file suffix, TSV/JSON field or hub column.")
    tgt_lang: str = option("en", help="Target language: the file suffix, TSV/JSON field or hub column.")
    tokenizer: str = option("word", help="word: words and punctuation marks; bpe: subwords (byte-pair "
                                         "encoding). Both decode back to the original spacing.",
                            choices=("word", "bpe"))
    vocab_size: int | None = option(None, help="word: keep at most this many tokens per vocabulary (none: all "
                                               "that meet min_freq); bpe: vocabulary size (none: 8000).", min=8)
    min_freq: int = option(2, help="word: tokens seen fewer times in training become <unk>.", min=1)
    shared_vocab: bool = option(False, help="One tokenizer for both languages (trained on both sides).")
    lowercase: bool = option(True, help="Lower-case the text (the classic Multi30k setup); BLEU and chrF are "
                                        "then case-insensitive (sacreBLEU case:lc).")
    max_len: int = option(100, help="Tokens kept per sentence (longer ones are truncated); also the longest "
                                    "translation decoded.", min=1)
    reverse_source: bool = option(False, help="Feed the source backwards (Sutskever et al. 2014).")
    embed_size: int | None = option(None, help="Token embedding size (none: the architecture's width).", min=1)
    decoder_layers: int | None = option(None, help="Decoder depth (none: the architecture's num_layers). A "
                                                   "recurrent decoder starts from the encoder's final state, so "
                                                   "its depth must equal the encoder's.", min=1)
    decoder_hidden_size: int | None = option(None, help="Decoder width (none: the architecture's hidden_size); "
                                                        "for a recurrent decoder it must equal the encoder's.", min=1)
    attention: str = option("bahdanau", help="Recurrent decoders: attention over the encoder outputs "
                                             "(bahdanau: additive, dot: Luong dot product) or none (the "
                                             "encoder's final state only). A Transformer always cross-attends.",
                            choices=ATTENTION)
    embed_dropout: float = option(0.1, help="Dropout on the source and target embeddings.", min=0.0, max=1.0,
                                  max_exclusive=True)
    output_dropout: float = option(0.1, help="Dropout on the decoder output, before the softmax layer.",
                                   min=0.0, max=1.0, max_exclusive=True)
    tie_weights: bool = option(False, help="Share the target embedding and the output layer.")
    label_smoothing: float = option(0.0, help="Label smoothing of the training loss (perplexity is reported "
                                              "without it).", min=0.0, max=1.0, max_exclusive=True)
    teacher_forcing: float = option(1.0, help="Probability of feeding the true previous word to the decoder "
                                              "in training (else its own prediction; < 1 decodes step by step).",
                                    min=0.0, max=1.0)
    teacher_forcing_decay: float = option(1.0, help="Multiply the teacher-forcing ratio by this each epoch.",
                                          min=0.0, max=1.0)
    beam: int = option(1, help="Beam size for BLEU in evaluation (1: greedy).", min=1)
    length_penalty: float = option(1.0, help="Beam search ranks finished translations by log-probability / "
                                             "((5 + length) / 6) ** this (GNMT; 0: raw log-probability).", min=0.0)
    bleu_batches: int | None = option(None, help="Validation: decode only this many batches for BLEU during "
                                                 "training (none: all).", min=1)

    def validate(self):
        if self.src_lang == self.tgt_lang:
            raise ConfigError("tgt_lang", f"source and target are both {self.src_lang!r}",
                              "set --src-lang and --tgt-lang to two languages")


class Translation(Task):
    name = "translation"
    Config = TranslationConfig
    description = "Translation (Multi30k, WMT, any parallel text) with encoder-decoder models, beam search, BLEU."
    metric, mode = "bleu", "max"
    # bentrevett/pytorch-seq2seq: batch 128, Adam, clipping 1.
    trainer_defaults = {"optimizer": "adam", "lr": 1e-3, "clip_grad_norm": 1.0, "batch_size": 128,
                        "eval_every": 0, "max_steps": None, "max_epochs": 10, "log_every": 100}
    smoke_inputs = ["ein hund läuft im park .", "eine katze"]

    def __init__(self, config):
        super().__init__(config)
        self.tokenizers = None   # {"src": Tokenizer, "tgt": Tokenizer} (the same object when shared)
        self.splits_data = {}    # split -> datasets.Dataset with src_ids, tgt_ids, src_text, tgt_text

    @staticmethod
    def smoke_config(directory):
        from pathlib import Path

        folder = Path(directory) / "translation-smoke"
        folder.mkdir(parents=True, exist_ok=True)
        for split, pairs in (("train", SMOKE_PAIRS * 3), ("val", SMOKE_PAIRS[:4]), ("test", SMOKE_PAIRS[4:])):
            for side, lang in ((0, "de"), (1, "en")):
                (folder / f"{split}.{lang}").write_text("\n".join(p[side] for p in pairs) + "\n", encoding="utf-8")
        return {"data": str(folder), "min_freq": 1, "embed_size": 16, "max_len": 12}

    # ---- data ----------------------------------------------------------------------------------

    def load_data(self, run_dir=None):
        from zoo_translation import data

        data.load(self)

    def save_artifacts(self, run_dir):
        from zoo_translation import data

        data.save_tokenizers(self.tokenizers, run_dir)

    def load_artifacts(self, run_dir):
        from zoo_translation import data

        self.tokenizers = data.load_tokenizers(run_dir)

    def vocab_size(self, side: str) -> int:
        if self.tokenizers is None:
            raise ConfigError("data", "the vocabularies are not known before the data is loaded",
                              "call load_data() (or load_artifacts(run_dir)) first")
        return self.tokenizers[side].get_vocab_size()

    def batches(self, split, batch_size, *, epoch=0, seed=0, start=0, rank=0, world_size=1):
        from zoo_translation import data

        return data.batches(self, split, batch_size, epoch=epoch, seed=seed, start=start, rank=rank,
                            world_size=world_size)

    # ---- model ---------------------------------------------------------------------------------

    def build_model(self, arch, arch_config):
        from zoo_translation.model import build

        return build(self, arch, arch_config)

    def step(self, model, batch, state=None):
        from zoo_translation.model import step

        return step(self, model, batch)

    def summarize(self, totals):
        from zoo_translation.model import summarize

        return summarize(totals)

    def evaluate(self, model, split, batch_size):
        from zoo_translation.model import evaluate

        return evaluate(self, model, split, batch_size)

    def predict(self, model, text):
        from zoo_translation.decode import translate

        return translate(self, model, [text])[0]


@hookimpl
def register_tasks(register):
    register(Translation)


@hookimpl
def register_commands(cli):
    from zoo_translation.cli import translate

    cli.add_command(translate)


__all__ = ["Translation", "TranslationConfig"]

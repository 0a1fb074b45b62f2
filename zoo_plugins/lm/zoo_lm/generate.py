"""Sampling: temperature, top-k, top-p, and O(1) work per new token in the prefix length.

A recurrent backbone's state summarises the whole prefix; an attention backbone's state is its
key/value cache, so each new token is one position through the backbone. Attention models see at
most ``context`` positions (default: the training window): when the cache is full, the last
``context // 2`` tokens are re-encoded and generation continues from there (amortised O(1), and
the model never attends further back than it was trained to).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from zoo_core import ConfigError, ZooError
from zoo_lm import EOS


def filtered_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None) -> torch.Tensor:
    """Next-token distribution from ``logits`` [..., V]: softmax(logits / temperature) restricted to the
    ``top_k`` most likely tokens and to the smallest set whose probability reaches ``top_p`` (nucleus),
    renormalised. ``temperature`` 0 is greedy (all mass on the argmax)."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    if temperature != 1:   # x / 1 == x exactly: skipped, the same numbers
        logits = logits / temperature   # the logits, not the probabilities: p_i ∝ exp(z_i / T)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs            # mass of the strictly more likely tokens
        drop = before >= top_p                       # the most likely token always stays
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    return logits.softmax(-1)


class _Sampler:
    """Draws one token from ``filtered_probs(logits, ...)`` by the exponential race: with E_i ~ Exp(1)
    independent, argmax_i p_i / E_i is token i with probability p_i (what torch.multinomial does on
    the CPU). Written out, it costs one vectorised draw per token: a third of torch.multinomial's
    time on a 10k vocabulary, the largest cost of a step after the output layer. Float64 noise, so a
    zero draw (an infinite ratio) has probability ~V * 2^-53. Cached and re-run sampling use the same
    sampler, so they give the same tokens for a seed."""

    def __init__(self, device: torch.device, seed: int, temperature, top_k, top_p):
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.args = (temperature, top_k, top_p)
        self.noise = None
        self.nan = torch.zeros((), dtype=torch.bool, device=device)   # a non-finite distribution was seen

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:   # logits [V] -> token [1]
        probs = filtered_probs(logits, *self.args)
        if self.noise is None:
            self.noise = torch.empty(probs.shape[-1], dtype=torch.float64, device=probs.device)
        exp = self.noise.uniform_(generator=self.generator).neg_().log1p_().neg_()   # -log(1 - U) ~ Exp(1)
        tok = (probs / exp).argmax(-1, keepdim=True)
        self.nan |= probs[tok[0]].isnan()   # checked once at the end: no host sync per token
        return tok

    def check(self) -> None:
        if self.nan:
            raise ZooError("generate: the model's next-token distribution holds NaN (non-finite logits); "
                           "the weights are broken, retrain or use an earlier checkpoint")


@contextlib.contextmanager
def _single_step_kernels(device: torch.device):
    """No oneDNN (mkldnn) for one-token steps on the CPU: its fused LSTM layer costs ~150 us more per
    call than torch's own kernel there (~2.5x for a 2x200 LSTM), though it is the faster one for long
    sequences (the prompt, the re-run baseline). Off while stepping, restored after; not thread-safe
    (a global switch), and GPUs never use it."""
    if device.type != "cpu":
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


@torch.inference_mode()
def sample(model: Any, prompt: list[int], max_tokens: int, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, context: int | None = None,
           cached: bool = True) -> list[int]:
    """``max_tokens`` new token ids after ``prompt``.

    ``cached``: feed one token per step with the carried state (recurrent state or key/value cache).
    Otherwise re-run the whole prefix (its last ``context`` tokens) every step: the O(n^2) baseline.
    ``context`` limits what an attention model sees (none: everything); recurrent models ignore it.
    Tokens stay on the device until the end: no host synchronisation per token.
    """
    if not prompt:
        raise ZooError("generate: the prompt encodes to no tokens")
    if max_tokens <= 0:
        return []
    device = next(model.parameters()).device
    draw = _Sampler(device, seed, temperature, top_k, top_p)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    toks: list[torch.Tensor] = []   # each [1]
    if model.stateful:
        context = None
    was_training = model.training
    model.eval()
    try:
        if cached:
            window = ids if context is None else ids[:, -context:]
            logits, state = model(window, None, last_only=True)
            held = window.shape[1]
            with _single_step_kernels(device):
                for i in range(max_tokens):
                    tok = draw(logits[0, -1])
                    toks.append(tok)
                    if i == max_tokens - 1:
                        break
                    if context is not None and held >= context:   # cache full: slide to the last half
                        keep = max(1, context // 2)
                        recent = torch.cat([ids[0], *toks])[-keep:]
                        logits, state = model(recent.view(1, -1), None, last_only=True)
                        held = keep
                    else:
                        logits, state = model(tok.view(1, 1), state)
                        held += 1
        else:
            seq = ids
            for i in range(max_tokens):
                window = seq if context is None else seq[:, -context:]
                logits, _ = model(window, None, last_only=True)
                tok = draw(logits[0, -1])
                toks.append(tok)
                seq = torch.cat([seq, tok.view(1, 1)], dim=1)
    finally:
        model.train(was_training)
    draw.check()
    return torch.cat(toks).tolist()


# ---- text <-> ids --------------------------------------------------------------------------------


def start_ids(task) -> list[int]:
    """What an empty prompt starts from: a line end (``<eos>`` or a newline)."""
    tok = task.tokenizer
    if task.config.level == "word":
        return [tok.token_to_id(EOS)]
    if task.config.level == "char":
        nl = tok.token_to_id("\n")
        return [nl if nl is not None else 0]
    return tok.encode("\n").ids


def encode_prompt(task, text: str) -> list[int]:
    tok, level = task.tokenizer, task.config.level
    if level == "char":
        ids = [tok.token_to_id(ch) for ch in text]
        unknown = list(dict.fromkeys(ch for ch, i in zip(text, ids) if i is None))
        if unknown:
            known = "".join(sorted(t for t in tok.get_vocab() if len(t) == 1))
            chars = ", ".join(map(repr, unknown))
            raise ConfigError("--prompt", f"character{'s' * (len(unknown) > 1)} {chars} not in this model's "
                              f"vocabulary of {tok.get_vocab_size()} characters",
                              f"use only characters of its training text: {known!r}" if len(known) <= 200
                              else "use only characters of its training text")
        return ids
    if level == "word":
        eos = tok.token_to_id(EOS)
        ids = []
        lines = text.split("\n")
        for n, line in enumerate(lines):
            ids += tok.encode(line, add_special_tokens=False).ids
            if n < len(lines) - 1:
                ids.append(eos)
        return ids
    return tok.encode(text, add_special_tokens=False).ids


def decode(task, ids: list[int]) -> str:
    tok = task.tokenizer
    if task.config.level == "word":
        lines, line = [], []
        for word in (tok.id_to_token(i) for i in ids):
            if word == EOS:
                lines.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(word)
        return "".join(lines) + " ".join(line)
    return tok.decode(ids, skip_special_tokens=False)


def generate_text(task, model, prompt: str, *, max_tokens: int = 200, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                  context: int | None = -1) -> str:
    """The continuation of ``prompt`` as text. ``context`` -1: the training window (``bptt``)."""
    ids = encode_prompt(task, prompt) if prompt else start_ids(task)
    if not ids:
        ids = start_ids(task)
    if context == -1:
        context = task.config.bptt
    new = sample(model, ids, max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                 context=context or None)
    return decode(task, new)


def join(task, prompt: str, continuation: str) -> str:
    """Prompt and continuation as one text (words need a space between them)."""
    if task.config.level == "word" and prompt and not prompt.endswith(("\n", " ")) \
            and continuation and not continuation.startswith("\n"):
        return prompt + " " + continuation
    return prompt + continuation

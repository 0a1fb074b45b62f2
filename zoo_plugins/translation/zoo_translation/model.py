"""Encoder-decoder over any pair of backbones built by one architecture.

Shapes: B batch, S source length, T target length, E embed_size, De/Dd encoder/decoder d_model, V target vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo_core import ConfigError, StepOutput

PAD_ID = 0


class Attention(nn.Module):
    """Attention of decoder outputs over encoder outputs, padding masked.

    ``bahdanau``: additive scores ``v . tanh(W_q q + W_k k)`` (Bahdanau et al. 2015);
    ``dot``: ``q . W k`` (Luong et al. 2015; ``W`` only when the widths differ). The query is the
    decoder's output at the current step (Luong's placement), so training runs the fused
    recurrent decoder over the whole target in one call; the context joins the output through
    ``tanh(W_c [h; c])``.
    """

    def __init__(self, kind: str, d_query: int, d_key: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.query = nn.Linear(d_query, d_query, bias=False)
            self.key = nn.Linear(d_key, d_query)
            self.score = nn.Linear(d_query, 1, bias=False)
        else:
            self.key = nn.Linear(d_key, d_query, bias=False) if d_key != d_query else nn.Identity()
        self.combine = nn.Linear(d_query + d_key, d_query)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, T, Dd], memory [B, S, De] -> (attentional output [B, T, Dd], weights [B, T, S])."""
        keys = self.key(memory)
        if self.kind == "bahdanau":
            scores = self.score(torch.tanh(self.query(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = query @ keys.transpose(1, 2)
        if memory_mask is not None:
            scores = scores.masked_fill(~memory_mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(-1)
        context = weights @ memory
        return torch.tanh(self.combine(torch.cat([query, context], -1))), weights


class Seq2Seq(nn.Module):
    """``forward(src, src_mask, tgt_in) -> logits [B, T, V]``; ``encode`` and ``decode`` for inference.

    A stateful (recurrent) decoder starts from the encoder's final state, which the recurrent
    backbone hands over already in the decoder's shape (a bidirectional encoder's is bridged).
    Every decoder is given the encoder outputs as ``memory``: a Transformer cross-attends to
    them; a recurrent one ignores them and attends through :class:`Attention` when asked.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, src_vocab: int, tgt_vocab: int, embed: int, *,
                 attention: str = "none", embed_dropout: float = 0.0, output_dropout: float = 0.0,
                 tie_weights: bool = False):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, embed, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed, padding_idx=PAD_ID)
        self.encoder, self.decoder = encoder, decoder
        self.stateful = bool(getattr(decoder, "stateful", False))
        self.attention = Attention(attention, decoder.d_model, encoder.d_model) \
            if self.stateful and attention != "none" else None
        self.embed_drop, self.out_drop = nn.Dropout(embed_dropout), nn.Dropout(output_dropout)
        d = decoder.d_model
        self.proj = nn.Linear(d, embed, bias=False) if tie_weights and d != embed else None
        self.out = nn.Linear(embed if tie_weights else d, tgt_vocab)
        # Unit-variance embeddings (torch's default): a recurrent encoder's input weights are sized for
        # inputs of that scale. At embed ** -0.5 (norm-1 vectors) the input drive of a 256-unit GRU
        # is a tenth of its recurrent drive, and on Multi30k its final state settled to the same
        # saturated vector for every sentence: after 3 epochs, validation BLEU 2.
        # A tied target matrix is also the output layer, whose logits want norm-1 rows.
        for emb in (self.src_embed, self.tgt_embed):
            nn.init.normal_(emb.weight, std=embed ** -0.5 if tie_weights and emb is self.tgt_embed else 1.0)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()
        if tie_weights:
            self.out.weight = self.tgt_embed.weight

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        memory, state = self.encoder(self.embed_drop(self.src_embed(src)), mask=src_mask)
        return memory, (state if self.stateful else None)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, state: Any = None
               ) -> tuple[torch.Tensor, Any]:
        """Target prefix ids [B, T] (continuing ``state``) -> (logits [B, T, V], state)."""
        y, state = self.decoder(self.embed_drop(self.tgt_embed(tgt_in)), state=state, memory=memory, memory_mask=src_mask)
        if self.attention is not None:
            y, _ = self.attention(y, memory, src_mask)
        y = self.out_drop(y)
        if self.proj is not None:
            y = self.proj(y)
        return self.out(y), state

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: torch.Tensor | None = None) -> torch.Tensor:
        memory, state = self.encode(src, src_mask)
        if teacher_forcing is None:
            return self.decode(tgt_in, memory, src_mask, state)[0]
        # scheduled sampling: each position is fed the true previous word with probability
        # ``teacher_forcing``, else the model's own greedy choice at the previous step
        steps, token = [], tgt_in[:, :1]
        for t in range(tgt_in.shape[1]):
            logits, state = self.decode(token, memory, src_mask, state)
            steps.append(logits)
            if t + 1 < tgt_in.shape[1]:
                forced = torch.rand(tgt_in.shape[0], 1, device=src.device) < teacher_forcing
                token = torch.where(forced, tgt_in[:, t + 1:t + 2], logits.argmax(-1))
        return torch.cat(steps, 1)


def decoder_config(arch_config, cfg):
    """The architecture's config for the decoder: left to right only, with the task's overrides."""
    changes = {"bidirectional": False} if getattr(arch_config, "bidirectional", False) else {}
    for option, field in (("decoder_layers", "num_layers"), ("decoder_hidden_size", "hidden_size")):
        value = getattr(cfg, option)
        if value is not None:
            if not hasattr(arch_config, field):
                raise ConfigError(option, f"this architecture has no {field} option to override",
                                  f"drop --{option.replace('_', '-')}")
            changes[field] = value
    return dataclasses.replace(arch_config, **changes) if changes else arch_config


def build(task, arch, arch_config) -> Seq2Seq:
    cfg = task.config
    embed = cfg.embed_size or arch.width(arch_config)
    dec_config = decoder_config(arch_config, cfg)
    encoder = arch.build(arch_config, embed, "encoder")
    decoder = arch.build(dec_config, embed, "decoder", d_memory=encoder.d_model)
    if getattr(decoder, "stateful", False):
        # the encoder's final state ([layers, batch, hidden], bridged if bidirectional) is the decoder's first
        for option, field in (("decoder_layers", "num_layers"), ("decoder_hidden_size", "hidden_size")):
            enc, dec = getattr(arch_config, field, None), getattr(dec_config, field, None)
            if enc != dec:
                raise ConfigError(option, f"the decoder's {field} {dec} differs from the encoder's {enc}, but a "
                                          f"recurrent decoder starts from the encoder's final state",
                                  f"give both the same {field} (--{field.replace('_', '-')} {enc})")
    return Seq2Seq(encoder, decoder, task.vocab_size("src"), task.vocab_size("tgt"), embed,
                   attention=cfg.attention, embed_dropout=cfg.embed_dropout,
                   output_dropout=cfg.output_dropout, tie_weights=cfg.tie_weights)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)   # DistributedDataParallel


def token_losses(logits: torch.Tensor, target: torch.Tensor, smoothing: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(training loss: mean over real tokens with label smoothing, summed NLL without it, real tokens)."""
    logp = logits.float().log_softmax(-1).flatten(0, 1)
    target = target.flatten()
    real = target != PAD_ID
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    per_token = nll if smoothing == 0 else (1 - smoothing) * nll - smoothing * logp.mean(-1)
    count = real.sum()
    loss = (per_token * real).sum() / count.clamp(min=1)
    return loss, (nll * real).sum(), count


def step(task, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
    tgt = batch["tgt"]
    net = _unwrap(model)
    forcing = batch.get("teacher_forcing") if net.training else None
    logits = model(batch["src"], batch["src_mask"], tgt[:, :-1], forcing)
    smoothing = task.config.label_smoothing if net.training else 0.0
    loss, nll_sum, count = token_losses(logits, tgt[:, 1:], smoothing)
    return StepOutput(loss, {"loss_sum": nll_sum.detach().double(), "count": count.double()})


def summarize(totals: dict[str, float]) -> dict[str, float]:
    loss = totals.get("loss_sum", 0.0) / max(totals.get("count", 0.0), 1.0)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


@torch.no_grad()
def evaluate(task, model: nn.Module, split: str, batch_size: int) -> dict[str, float]:
    """Loss and perplexity (teacher forced), then BLEU and chrF of the decoded split (beam ``config.beam``)."""
    from zoo_core.nn import to_device
    from zoo_translation import data
    from zoo_translation.decode import score, translate_ids

    net = _unwrap(model)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        totals = {"loss_sum": 0.0, "count": 0.0}
        for batch in task.batches(split, batch_size):
            out = step(task, net, to_device(batch, device))
            for k in totals:
                totals[k] += float(out.stats[k])
        metrics = summarize(totals)
        limit = task.config.bleu_batches if split == "validation" else None
        ds = task.splits_data[split]
        n = len(ds) if limit is None else min(len(ds), limit * batch_size)
        hyps = translate_ids(task, net, ds.select(range(n))["src_ids"], beam=task.config.beam,
                             batch_size=batch_size)
        metrics.update(score(task, hyps, data.references(task, split)[:n]))
    finally:
        net.train(was_training)
    return metrics

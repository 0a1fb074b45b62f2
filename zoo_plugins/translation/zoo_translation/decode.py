"""Greedy and beam-search decoding on the decoder's incremental state, and sacreBLEU scoring.

Each new token runs the decoder on one position, continuing its state (a recurrent state or a
key/value cache): the prefix is never re-run. Sentences are decoded in batches sorted by
length; beam search keeps ``beam`` hypotheses per sentence as rows of one batch and follows
the survivors with ``Backbone.reorder_state``.
"""

from __future__ import annotations

import torch

from zoo_core import ZooError
from zoo_translation import EOS, PAD, SOS, SPECIALS

PAD_ID, SOS_ID, EOS_ID = SPECIALS.index(PAD), SPECIALS.index(SOS), SPECIALS.index(EOS)


def _limit(src: torch.Tensor, max_len: int) -> int:
    """Longest translation decoded: twice the source plus 10, at most ``max_len`` (+ ``<eos>``)."""
    return min(max_len + 1, 2 * src.shape[1] + 10)


def _cut(row: list[int]) -> list[int]:
    return row[: row.index(EOS_ID)] if EOS_ID in row else row


@torch.no_grad()
def greedy(model, src: torch.Tensor, src_mask: torch.Tensor, max_len: int) -> list[list[int]]:
    memory, state = model.encode(src, src_mask)
    batch = src.shape[0]
    token = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    out = []
    for _ in range(_limit(src, max_len)):
        logits, state = model.decode(token, memory, src_mask, state)
        token = logits[:, -1].argmax(-1, keepdim=True).masked_fill(done.unsqueeze(1), PAD_ID)
        out.append(token)
        done |= token.squeeze(1) == EOS_ID
        if bool(done.all()):
            break
    return [_cut(row) for row in torch.cat(out, 1).tolist()]


def _reorder(model, state, index: torch.Tensor):
    if state is None:
        return None
    try:
        return model.decoder.reorder_state(state, index)
    except NotImplementedError as e:
        raise ZooError(str(e)) from None


@torch.no_grad()
def beam_search(model, src: torch.Tensor, src_mask: torch.Tensor, max_len: int, beam: int,
                length_penalty: float = 1.0) -> list[list[int]]:
    """The best of ``beam`` hypotheses per sentence by log-probability / ((5 + length) / 6) ** length_penalty.

    Finished hypotheses keep their slot (continuing with ``<pad>`` at no cost) until every
    hypothesis of the batch has ended or the length limit is reached.
    """
    batch, k, device = src.shape[0], beam, src.device
    memory, state = model.encode(src, src_mask)
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    memory, mask = memory[rows], src_mask[rows]
    state = _reorder(model, state, rows)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")   # all beams start equal: keep one until the first expansion
    seqs = torch.full((batch * k, 1), SOS_ID, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, device=device)
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)
    for _ in range(_limit(src, max_len)):
        logits, state = model.decode(seqs[:, -1:], memory, mask, state)
        logp = logits[:, -1].float().log_softmax(-1)
        vocab = logp.shape[-1]
        logp[finished] = float("-inf")
        logp[finished, PAD_ID] = 0.0
        top, pos = (scores.view(-1, 1) + logp).view(batch, k * vocab).topk(k, dim=1)
        source = (offsets + pos // vocab).view(-1)
        token = (pos % vocab).view(-1)
        seqs = torch.cat([seqs[source], token.unsqueeze(1)], 1)
        lengths = lengths[source] + (~finished[source]).float()
        finished = finished[source] | (token == EOS_ID)
        scores = top
        state = _reorder(model, state, source)
        if bool(finished.all()):
            break
    normalized = scores.view(-1) / ((5.0 + lengths) / 6.0) ** length_penalty
    best = normalized.view(batch, k).argmax(1) + offsets.squeeze(1)
    return [_cut(row[1:]) for row in seqs[best].tolist()]


def translate_ids(task, model, sources: list[list[int]], *, beam: int = 1, batch_size: int = 128,
                  length_penalty: float | None = None) -> list[list[int]]:
    """Source id lists (with ``<eos>``) -> target id lists (without ``<sos>``/``<eos>``), in order."""
    from zoo_translation.data import collate

    net = getattr(model, "module", model)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    penalty = task.config.length_penalty if length_penalty is None else length_penalty
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))   # similar lengths batch together
    out: list[list[int]] = [[] for _ in sources]
    try:
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            batch = collate([sources[j] for j in chunk])
            src, mask = batch["src"].to(device), batch["src_mask"].to(device)
            if beam == 1:
                hyps = greedy(net, src, mask, task.config.max_len)
            else:
                hyps = beam_search(net, src, mask, task.config.max_len, beam, penalty)
            for j, h in zip(chunk, hyps):
                out[j] = h
    finally:
        net.train(was_training)
    return out


def translate(task, model, texts: list[str], *, beam: int = 1, batch_size: int = 128,
              length_penalty: float | None = None) -> list[str]:
    from zoo_translation.data import decode, encode

    cfg = task.config
    sources = encode(task.tokenizers["src"], texts, cfg.max_len, reverse=cfg.reverse_source)
    ids = translate_ids(task, model, sources, beam=beam, batch_size=batch_size, length_penalty=length_penalty)
    return [decode(task.tokenizers["tgt"], h) for h in ids]


def score(task, hyps: list[list[int]], refs: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacreBLEU defaults: 13a tokenization, exp smoothing; case-insensitive
    when the run lower-cases) of decoded ``hyps`` against the reference texts."""
    import sacrebleu

    from zoo_translation.data import decode

    texts = [decode(task.tokenizers["tgt"], h) for h in hyps]
    lc = task.config.lowercase
    bleu = sacrebleu.metrics.BLEU(lowercase=lc).corpus_score(texts, [refs])
    chrf = sacrebleu.metrics.CHRF(lowercase=lc).corpus_score(texts, [refs])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}


def signature(task) -> str:
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(lowercase=task.config.lowercase)
    bleu.corpus_score(["a"], [["a"]])   # the signature names the reference count, known after scoring
    return str(bleu.get_signature())

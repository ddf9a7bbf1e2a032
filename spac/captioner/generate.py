"""Batched decoding with the decoder's key/value cache: greedy, beam search and nucleus sampling.

For a batch of B images, the six attribute prefixes (3 tokens each) and the m stylised caption
prefixes (23 tokens each) form one batch of B x (6 + m) rows, left-padded to 23 tokens with an
attention mask and position ids that start at each row's first real token, so a padded row computes
exactly what it would alone. Every step feeds one token per row against the cached keys/values;
rows that finish (END, or their slot's maximum length) are dropped from the batch and the cache, so
the long caption rows never drag the finished attribute rows along.

``use_cache=False`` recomputes every row from its prefix at every step (same results, for tests).
Nucleus sampling draws from a ``torch.Generator`` seeded with ``seed``: same inputs, same outputs.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from plip_runtime.device import autocast, check_precision
from synth_pedes.schema import SLOTS

from .config import DECODINGS, CaptionerConfig
from .data import image_tensor
from .model import SpacCaptioner
from .tokenizer import CaptionTokenizer, sentence_case

_log = logging.getLogger(__name__)


@dataclass
class DecodingOptions:
    method: str = "greedy"  # greedy | beam | nucleus
    num_beams: int = 3
    top_p: float = 0.9
    temperature: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    max_attribute_tokens: int = 12  # END included
    max_caption_tokens: int = 64  # END included
    seed: int = 0
    use_cache: bool = True
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 (plip_runtime.device)

    def __post_init__(self):
        if self.method not in DECODINGS:
            raise ValueError(f"decoding method {self.method!r} is not one of {DECODINGS}")
        if self.num_beams < 1 or not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError(f"bad decoding options: num_beams={self.num_beams}, top_p={self.top_p}, "
                             f"temperature={self.temperature}")
        check_precision(self.precision)

    @classmethod
    def from_config(cls, cfg: CaptionerConfig, **overrides) -> "DecodingOptions":
        base = cls(method=cfg.decoding, num_beams=cfg.num_beams, top_p=cfg.top_p, temperature=cfg.temperature,
                   length_penalty=cfg.length_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                   max_attribute_tokens=cfg.max_attribute_tokens, max_caption_tokens=cfg.max_caption_tokens)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# --- one decoder call -------------------------------------------------------------------------
def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens: left padding does not shift a row's positions."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def _step(model: SpacCaptioner, embeds, mask, positions, cache):
    """Logits (R, V') of the last position, and the updated cache."""
    out = model.decoder.transformer(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                    past_key_values=cache, use_cache=cache is not None)
    return model.output_logits(out.last_hidden_state[:, -1]).float(), out.past_key_values


class _Rows:
    """The rows still being decoded: their prefixes, masks, generated tokens and the KV cache."""

    def __init__(self, model: SpacCaptioner, prefix, mask, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.prefix, self.prefix_mask = prefix, mask  # (A, P, D), (A, P)
        self.index = torch.arange(prefix.shape[0], device=prefix.device)  # row of the original batch
        self.tokens = torch.zeros(prefix.shape[0], 0, dtype=torch.long, device=prefix.device)  # (A, t)
        self.cache = None

    def start(self) -> torch.Tensor:
        """Logits after reading the prefixes."""
        from transformers import DynamicCache

        m = self.prefix_mask
        logits, cache = _step(self.model, self.prefix, m, _positions(m), DynamicCache() if self.use_cache else None)
        self.cache = cache if self.use_cache else None
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder to) ``rows`` of the current rows."""
        self.prefix, self.prefix_mask = self.prefix[rows], self.prefix_mask[rows]
        self.index, self.tokens = self.index[rows], self.tokens[rows]
        if self.cache is not None:
            self.cache.reorder_cache(rows)

    def advance(self, tok: torch.Tensor) -> torch.Tensor:
        """Append ``tok`` (A,) to every row and return the next logits (A, V')."""
        self.tokens = torch.cat([self.tokens, tok[:, None]], dim=1)
        wte = self.model.decoder.transformer.wte
        ones = torch.ones_like(self.tokens)
        mask = torch.cat([self.prefix_mask, ones], dim=1)  # (A, P + t)
        positions = _positions(mask)
        if self.use_cache:
            logits, self.cache = _step(self.model, wte(tok[:, None]).to(self.prefix.dtype), mask,
                                       positions[:, -1:], self.cache)
        else:
            embeds = torch.cat([self.prefix, wte(self.tokens).to(self.prefix.dtype)], dim=1)
            logits, _ = _step(self.model, embeds, mask, positions, None)
        return logits


def _ban_repeats(logits: torch.Tensor, tokens: torch.Tensor, n: int, model: SpacCaptioner) -> torch.Tensor:
    """-inf for every token that would complete an n-gram already present in the row."""
    if n <= 0 or tokens.shape[1] < n - 1:
        return logits
    rows = tokens.tolist()
    for r, seq in enumerate(rows):
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix}
        if banned:
            idx = model.to_output_index(torch.tensor(sorted(banned), device=logits.device))
            logits[r, idx] = float("-inf")
    return logits


def _force_end(logits: torch.Tensor, last: torch.Tensor, eos_col: int) -> torch.Tensor:
    """Rows at their last allowed token may only emit END."""
    if last.any():
        logits[last] = float("-inf")
        logits[last, eos_col] = 0.0
    return logits


def _nucleus(logits: torch.Tensor, top_p: float, temperature: float, gen: torch.Generator) -> torch.Tensor:
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p > top_p  # keeps the smallest head with mass >= top_p
    sorted_p = sorted_p.masked_fill(outside, 0.0)
    pick = torch.multinomial(sorted_p, 1, generator=gen).squeeze(1)  # multinomial renormalises
    return order.gather(1, pick[:, None]).squeeze(1)


# --- greedy and nucleus -----------------------------------------------------------------------
def _decode_sampling(model, prefix, mask, max_new, opts: DecodingOptions) -> list[list[int]]:
    R, device = prefix.shape[0], prefix.device
    eos, eos_col = model.eos_id, int(model.to_output_index(torch.tensor([model.eos_id], device=device)))
    out: list[list[int]] = [[] for _ in range(R)]
    gen = torch.Generator(device=device).manual_seed(opts.seed) if opts.method == "nucleus" else None
    rows = _Rows(model, prefix, mask, opts.use_cache)
    logits = rows.start()  # (R, V')
    for t in range(int(max_new.max())):
        logits = _ban_repeats(logits, rows.tokens, opts.no_repeat_ngram_size, model)
        logits = _force_end(logits, max_new[rows.index] <= t + 1, eos_col)
        col = logits.argmax(-1) if gen is None else _nucleus(logits, opts.top_p, opts.temperature, gen)
        tok = model.from_output_index(col)  # (A,)
        for r, k in zip(rows.index.tolist(), tok.tolist()):
            if k != eos:
                out[r].append(k)
        alive = (tok != eos).nonzero().squeeze(1)
        if len(alive) == 0:
            break
        if len(alive) < len(tok):
            rows.select(alive)
            tok = tok[alive]
        logits = rows.advance(tok)
    return out


# --- beam search ------------------------------------------------------------------------------
def _decode_beam(model, prefix, mask, max_new, opts: DecodingOptions) -> list[list[int]]:
    K, R, device = opts.num_beams, prefix.shape[0], prefix.device
    eos, eos_col = model.eos_id, int(model.to_output_index(torch.tensor([model.eos_id], device=device)))
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(R)]
    rows = _Rows(model, prefix.repeat_interleave(K, 0), mask.repeat_interleave(K, 0), opts.use_cache)  # (R*K, ...)
    group = torch.arange(R, device=device)  # original row of each live group of K beams
    scores = torch.full((R, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all K beams start identical: only the first one may expand at step 0
    logits = rows.start()
    for t in range(int(max_new.max())):
        G = len(group)
        logp = torch.log_softmax(_ban_repeats(logits, rows.tokens, opts.no_repeat_ngram_size, model), dim=-1)
        logp = _force_end(logp, (max_new[group] <= t + 1).repeat_interleave(K), eos_col)
        V = logp.shape[1]
        cand = (scores.view(-1, 1) + logp).view(G, K * V)  # (G, K*V')
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=1)  # (G, 2K)
        beam, col = top_i // V, top_i % V
        tok = model.from_output_index(col)
        keep_rows, keep_tok, keep_score, live_groups = [], [], [], []
        toks, beams, ss, cols = tok.tolist(), beam.tolist(), top_s.tolist(), rows.tokens.tolist()
        for g in range(G):
            r, chosen = int(group[g]), []
            for j in range(top_i.shape[1]):
                if ss[g][j] == float("-inf"):
                    break
                if toks[g][j] == eos:
                    if j < K:  # an END among the K best candidates closes a hypothesis
                        seq = cols[g * K + beams[g][j]]
                        finished[r].append((ss[g][j] / (t + 1) ** opts.length_penalty, seq))
                else:
                    chosen.append(j)
                if len(chosen) == K:
                    break
            if len(finished[r]) >= K or len(chosen) < K:
                continue  # this row is done (early stopping: K finished hypotheses)
            live_groups.append(g)
            keep_rows += [g * K + beams[g][j] for j in chosen]
            keep_tok += [toks[g][j] for j in chosen]
            keep_score.append([ss[g][j] for j in chosen])
        if not live_groups:
            break
        sel = torch.tensor(keep_rows, device=device)
        rows.select(sel)
        group = group[torch.tensor(live_groups, device=device)]
        scores = torch.tensor(keep_score, device=device)
        logits = rows.advance(torch.tensor(keep_tok, device=device))
    return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]


# --- images -> token ids -> text --------------------------------------------------------------
@torch.no_grad()
def generate_tokens(model: SpacCaptioner, images: torch.Tensor, opts: DecodingOptions
                    ) -> tuple[list[list[list[int]]], list[list[list[int]]]]:
    """images (B, 3, H, W) -> (attribute ids [B][6], caption ids [B][m]); END not included."""
    model.eval()
    positions = model.decoder.config.n_positions
    cfg = model.cfg
    if cfg.caption_prefix_len + opts.max_caption_tokens > positions or \
            cfg.attribute_prefix_len + opts.max_attribute_tokens > positions:
        raise ValueError(f"max_caption_tokens={opts.max_caption_tokens} / max_attribute_tokens="
                         f"{opts.max_attribute_tokens} do not fit the decoder's {positions} positions after the "
                         f"{cfg.caption_prefix_len}-token prefix")
    with autocast(images.device, opts.precision):
        attr, styled = model.encode_prefixes(images)  # (B, 6, Pa, D), (B, m, Pc, D)
        B, A, Pa, D = attr.shape
        m, Pc = styled.shape[1], styled.shape[2]
        # One row per output, image-major: 6 attribute rows then m caption rows, left-padded to Pc.
        prefix = torch.zeros(B, A + m, Pc, D, dtype=styled.dtype, device=images.device)
        prefix[:, :A, Pc - Pa:] = attr.to(styled.dtype)
        prefix[:, A:] = styled
        mask = torch.zeros(B, A + m, Pc, dtype=torch.long, device=images.device)
        mask[:, :A, Pc - Pa:] = 1
        mask[:, A:] = 1
        max_new = torch.tensor([opts.max_attribute_tokens] * A + [opts.max_caption_tokens] * m,
                               device=images.device).repeat(B)  # (B*(6+m),)
        decode = _decode_beam if opts.method == "beam" else _decode_sampling
        seqs = decode(model, prefix.flatten(0, 1), mask.flatten(0, 1), max_new, opts)
    per = A + m
    return ([seqs[b * per:b * per + A] for b in range(B)], [seqs[b * per + A:(b + 1) * per] for b in range(B)])


@dataclass
class CaptionResult:
    """One image's outputs, or why it has none."""

    source: str
    attributes: dict | None = None  # slot -> phrase
    captions: dict | None = None  # style name -> caption
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"source": self.source, "attributes": self.attributes, "captions": self.captions, "error": self.error}


@dataclass
class Captioner:
    """A loaded captioner: model + tokenizer, ready to caption images."""

    model: SpacCaptioner
    tokenizer: CaptionTokenizer
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str = "cpu") -> "Captioner":
        from .checkpoint import load_checkpoint

        model, tok, _ = load_checkpoint(checkpoint, device)
        return cls(model, tok, torch.device(device))

    @property
    def config(self) -> CaptionerConfig:
        return self.model.cfg

    def options(self, **overrides) -> DecodingOptions:
        return DecodingOptions.from_config(self.config, **overrides)

    def texts(self, attr_ids, cap_ids) -> tuple[list[dict], list[dict]]:
        tok = self.tokenizer
        attrs = [{s: tok.decode(ids) or "unknown" for s, ids in zip(SLOTS, per)} for per in attr_ids]
        fix = sentence_case if tok.lowercase else (lambda x: x)
        caps = [{s: fix(tok.decode(ids)) for s, ids in zip(self.config.styles, per)} for per in cap_ids]
        return attrs, caps

    def caption_tensors(self, images: torch.Tensor, opts: DecodingOptions | None = None) -> tuple[list, list]:
        """Preprocessed images (B, 3, H, W) -> ([attributes dict], [captions dict])."""
        a, c = generate_tokens(self.model, images.to(self.device), opts or self.options())
        return self.texts(a, c)

    def caption(self, images: Sequence, opts: DecodingOptions | None = None, batch_size: int = 32,
                names: Sequence[str] | None = None) -> list[CaptionResult]:
        """Caption images given as paths, bytes or PIL images. An image that cannot be read gets a
        result with ``error`` set; the others are captioned all the same."""
        opts = opts or self.options()
        names = list(names) if names is not None else [
            str(x) if isinstance(x, (str, Path)) else f"image {i}" for i, x in enumerate(images)]
        results = [CaptionResult(source=n) for n in names]
        good: list[tuple[int, torch.Tensor]] = []
        for i, src in enumerate(images):
            try:
                good.append((i, image_tensor(src, self.config.image_size)))
            except ValueError as e:
                results[i].error = str(e)
                _log.warning("%s: %s", names[i], e)
        for start in range(0, len(good), batch_size):
            chunk = good[start:start + batch_size]
            attrs, caps = self.caption_tensors(torch.stack([x for _, x in chunk]), opts)
            for (i, _), a, c in zip(chunk, attrs, caps):
                results[i].attributes, results[i].captions = a, c
        return results


def load_captioner(checkpoint: str | os.PathLike, device: str = "cpu") -> Captioner:
    """The captioner saved at ``checkpoint`` (a checkpoint directory or a training output directory)."""
    return Captioner.load(checkpoint, device)

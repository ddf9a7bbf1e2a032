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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from plip_runtime.config import ConfigBase
from plip_runtime.device import PRECISIONS, autocast
from synth_pedes.schema import SLOTS

from .config import DECODINGS, CaptionerConfig
from .data import condition_ids, image_tensor
from .model import SpacCaptioner
from .tokenizer import CaptionTokenizer, sentence_case

_log = logging.getLogger(__name__)


@dataclass
class DecodingOptions(ConfigBase):
    """How :func:`generate_tokens` decodes. Validated on construction and on ``replace`` (``ConfigBase``)."""

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

    def validate(self) -> None:
        self.require_choice("method", DECODINGS)
        self.require_int("num_beams", 1)
        self.require_number("top_p", 0, 1, lo_open=True)
        self.require_number("temperature", 0, lo_open=True)
        self.require_number("length_penalty")
        self.require_int("no_repeat_ngram_size", 0)
        self.require_int("max_attribute_tokens", 1)
        self.require_int("max_caption_tokens", 1)
        self.require_int("seed")
        self.require_bool("use_cache")
        self.require_choice("precision", PRECISIONS)

    @classmethod
    def from_config(cls, cfg: CaptionerConfig, **changes) -> "DecodingOptions":
        """The config's generation defaults with ``changes`` applied (as ``replace``: ``None`` is a value, so
        pass only the options you mean to set)."""
        base = cls(method=cfg.decoding, num_beams=cfg.num_beams, top_p=cfg.top_p, temperature=cfg.temperature,
                   length_penalty=cfg.length_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                   max_attribute_tokens=cfg.max_attribute_tokens, max_caption_tokens=cfg.max_caption_tokens)
        return base.replace(**changes)


# --- one decoder call -------------------------------------------------------------------------
def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens: left padding does not shift a row's positions."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def _step(model: SpacCaptioner, embeds, mask, positions, cache):
    """Logits (rows, V') of the last position, and the updated cache."""
    out = model.decoder.transformer(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                    past_key_values=cache, use_cache=cache is not None)
    return model.output_logits(out.last_hidden_state[:, -1]).float(), out.past_key_values


class _Rows:
    """The rows still being decoded: their prefixes, masks, generated tokens and the KV cache.

    Shapes use ``live`` for the rows still decoded, ``P`` for the prefix length and ``t`` for the tokens
    generated so far."""

    def __init__(self, model: SpacCaptioner, prefix, mask, use_cache: bool):
        self.model, self.use_cache = model, use_cache
        self.prefix, self.prefix_mask = prefix, mask  # (live, P, D), (live, P)
        self.index = torch.arange(prefix.shape[0], device=prefix.device)  # row of the original batch
        self.tokens = torch.zeros(prefix.shape[0], 0, dtype=torch.long, device=prefix.device)  # (live, t)
        self.cache = None

    def start(self) -> torch.Tensor:
        """Logits after reading the prefixes."""
        from transformers import DynamicCache

        mask = self.prefix_mask
        logits, cache = _step(self.model, self.prefix, mask, _positions(mask),
                              DynamicCache() if self.use_cache else None)
        self.cache = cache if self.use_cache else None
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder to) ``rows`` of the current rows."""
        self.prefix, self.prefix_mask = self.prefix[rows], self.prefix_mask[rows]
        self.index, self.tokens = self.index[rows], self.tokens[rows]
        if self.cache is not None:
            self.cache.reorder_cache(rows)

    def advance(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Append ``next_tokens`` (live,) to the rows and return the next logits (live, V')."""
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        embedding = self.model.decoder.transformer.wte
        ones = torch.ones_like(self.tokens)
        mask = torch.cat([self.prefix_mask, ones], dim=1)  # (live, P + t)
        positions = _positions(mask)
        if self.use_cache:
            logits, self.cache = _step(self.model, embedding(next_tokens[:, None]).to(self.prefix.dtype), mask,
                                       positions[:, -1:], self.cache)
        else:
            embeds = torch.cat([self.prefix, embedding(self.tokens).to(self.prefix.dtype)], dim=1)
            logits, _ = _step(self.model, embeds, mask, positions, None)
        return logits


def _ban_repeats(logits: torch.Tensor, tokens: torch.Tensor, size: int, model: SpacCaptioner) -> torch.Tensor:
    """-inf for every token that would complete an n-gram of ``size`` tokens already present in the row."""
    if size <= 0 or tokens.shape[1] < size - 1:
        return logits
    for row, seq in enumerate(tokens.tolist()):
        last = tuple(seq[len(seq) - size + 1:]) if size > 1 else ()  # the n-gram's first size-1 tokens
        banned = {seq[i + size - 1] for i in range(len(seq) - size + 1) if tuple(seq[i:i + size - 1]) == last}
        if banned:
            columns = model.to_output_index(torch.tensor(sorted(banned), device=logits.device))
            logits[row, columns] = float("-inf")
    return logits


def _force_end(logits: torch.Tensor, last: torch.Tensor, eos_column: int) -> torch.Tensor:
    """Rows at their last allowed token may only emit END."""
    if last.any():
        logits[last] = float("-inf")
        logits[last, eos_column] = 0.0
    return logits


def _nucleus(logits: torch.Tensor, top_p: float, temperature: float, generator: torch.Generator) -> torch.Tensor:
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keeps the smallest head with mass >= top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    pick = torch.multinomial(sorted_probs, 1, generator=generator).squeeze(1)  # multinomial renormalises
    return order.gather(1, pick[:, None]).squeeze(1)


def _eos(model: SpacCaptioner, device) -> tuple[int, int]:
    """The END token's id and its column in the output logits."""
    return model.eos_id, int(model.to_output_index(torch.tensor([model.eos_id], device=device)))


# --- greedy and nucleus -----------------------------------------------------------------------
def _decode_sampling(model, prefix, mask, max_new, opts: DecodingOptions) -> tuple[list[list[int]], list[float]]:
    """(tokens, log-probability of the whole sequence, END included) per row."""
    num_rows, device = prefix.shape[0], prefix.device
    eos, eos_column = _eos(model, device)
    generated: list[list[int]] = [[] for _ in range(num_rows)]
    log_probs = torch.zeros(num_rows, device=device)
    generator = torch.Generator(device=device).manual_seed(opts.seed) if opts.method == "nucleus" else None
    rows = _Rows(model, prefix, mask, opts.use_cache)
    logits = rows.start()  # (num_rows, V')
    for t in range(int(max_new.max())):
        logits = _ban_repeats(logits, rows.tokens, opts.no_repeat_ngram_size, model)
        logits = _force_end(logits, max_new[rows.index] <= t + 1, eos_column)
        if generator is None:
            columns = logits.argmax(-1)
        else:
            columns = _nucleus(logits, opts.top_p, opts.temperature, generator)
        log_probs[rows.index] += torch.log_softmax(logits, -1).gather(1, columns[:, None]).squeeze(1)
        tokens = model.from_output_index(columns)  # (live,)
        for row, token in zip(rows.index.tolist(), tokens.tolist()):
            if token != eos:
                generated[row].append(token)
        alive = (tokens != eos).nonzero().squeeze(1)
        if len(alive) == 0:
            break
        if len(alive) < len(tokens):
            rows.select(alive)
            tokens = tokens[alive]
        logits = rows.advance(tokens)
    return generated, log_probs.tolist()


# --- beam search ------------------------------------------------------------------------------
def _decode_beam(model, prefix, mask, max_new, opts: DecodingOptions) -> tuple[list[list[int]], list[float]]:
    """Beam search over every row: ``num_beams`` hypotheses per row, decoded as one group of rows each; a row
    stops when it has ``num_beams`` finished hypotheses (or cannot fill its beams), and its best finished
    hypothesis by ``score / length ** length_penalty`` wins. Returns (tokens, that score) per row."""
    num_beams, num_rows, device = opts.num_beams, prefix.shape[0], prefix.device
    eos, eos_column = _eos(model, device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(num_rows)]  # per row: (score, tokens)
    rows = _Rows(model, prefix.repeat_interleave(num_beams, 0), mask.repeat_interleave(num_beams, 0),
                 opts.use_cache)  # (num_rows * num_beams, ...): the beams of a row are consecutive
    group_row = torch.arange(num_rows, device=device)  # the original row of each live group of beams
    scores = torch.full((num_rows, num_beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first one may expand at step 0
    logits = rows.start()
    for t in range(int(max_new.max())):
        num_groups = len(group_row)
        log_probs = torch.log_softmax(_ban_repeats(logits, rows.tokens, opts.no_repeat_ngram_size, model), dim=-1)
        log_probs = _force_end(log_probs, (max_new[group_row] <= t + 1).repeat_interleave(num_beams), eos_column)
        vocab = log_probs.shape[1]  # V': the output columns
        candidates = (scores.view(-1, 1) + log_probs).view(num_groups, num_beams * vocab)
        # the 2 * num_beams best continuations per group, so that num_beams remain after those that end
        top_scores, top_index = candidates.topk(min(2 * num_beams, num_beams * vocab), dim=1)
        from_beam, columns = top_index // vocab, top_index % vocab
        cand_tokens = model.from_output_index(columns).tolist()  # [group][candidate]
        cand_beams = from_beam.tolist()
        cand_scores = top_scores.tolist()
        so_far = rows.tokens.tolist()  # the tokens each beam generated before this step
        keep_rows, keep_tokens, keep_scores, live_groups = [], [], [], []
        for group in range(num_groups):
            row, chosen = int(group_row[group]), []
            for rank in range(top_index.shape[1]):
                if cand_scores[group][rank] == float("-inf"):
                    break
                if cand_tokens[group][rank] == eos:
                    if rank < num_beams:  # an END among the num_beams best candidates closes a hypothesis
                        seq = so_far[group * num_beams + cand_beams[group][rank]]
                        finished[row].append((cand_scores[group][rank] / (t + 1) ** opts.length_penalty, seq))
                else:
                    chosen.append(rank)
                if len(chosen) == num_beams:
                    break
            if len(finished[row]) >= num_beams or len(chosen) < num_beams:
                continue  # this row is done (early stopping: num_beams finished hypotheses)
            live_groups.append(group)
            keep_rows += [group * num_beams + cand_beams[group][rank] for rank in chosen]
            keep_tokens += [cand_tokens[group][rank] for rank in chosen]
            keep_scores.append([cand_scores[group][rank] for rank in chosen])
        if not live_groups:
            break
        rows.select(torch.tensor(keep_rows, device=device))
        group_row = group_row[torch.tensor(live_groups, device=device)]
        scores = torch.tensor(keep_scores, device=device)
        logits = rows.advance(torch.tensor(keep_tokens, device=device))
    best = [max(hypotheses, key=lambda h: h[0]) if hypotheses else (float("-inf"), []) for hypotheses in finished]
    return [tokens for _, tokens in best], [score for score, _ in best]


# --- images -> token ids -> text --------------------------------------------------------------
@dataclass
class Generated:
    """Token ids per image (END not included): ``attribute_ids[b][k]`` for slot k, ``caption_ids[b][j]`` for style
    j, and ``attribute_scores[b][k]``: the probability of the whole attribute phrase (greedy / nucleus) or
    ``exp`` of its length-normalised beam score."""

    attribute_ids: list
    caption_ids: list
    attribute_scores: list


ConditionFn = Callable[[list, list], list]  # (attribute ids [B][6], scores [B][6]) -> condition ids [B][6K]


def _check_lengths(cfg: CaptionerConfig, opts: DecodingOptions, positions: int) -> None:
    if cfg.caption_prefix_len + cfg.condition_len + opts.max_caption_tokens > positions or \
            cfg.attribute_prefix_len + opts.max_attribute_tokens > positions:
        raise ValueError(f"max_caption_tokens={opts.max_caption_tokens} / max_attribute_tokens="
                         f"{opts.max_attribute_tokens} do not fit the decoder's {positions} positions after the "
                         f"{cfg.caption_prefix_len + cfg.condition_len}-token prefix")


@torch.no_grad()
def generate(model: SpacCaptioner, images: torch.Tensor, opts: DecodingOptions,
             condition: ConditionFn | None = None, captions: bool = True) -> Generated:
    """images (B, 3, H, W) -> attributes and captions (``captions=False``: attributes only). A captioner that
    conditions its captions on attributes (``caption_condition_tokens`` > 0) decodes the attributes first and
    captions from ``condition(attribute ids, scores)`` (default: its own attributes); otherwise attributes and
    captions decode as one batch of rows."""
    model.eval()
    _check_lengths(model.cfg, opts, model.decoder.config.n_positions)
    decode = _decode_beam if opts.method == "beam" else _decode_sampling
    with autocast(images.device, opts.precision):
        attribute_prefixes, style_prefixes = model.encode_prefixes(images)  # (B, 6, Pa, D), (B, m, Pc, D)
        if captions and not model.cfg.caption_condition_tokens:  # captions that read only the image
            return _decode_jointly(model, attribute_prefixes, style_prefixes, opts, decode)
        attribute_ids, attribute_scores = _decode_rows(model, attribute_prefixes, opts.max_attribute_tokens, opts,
                                                       decode)
        if not captions:
            return Generated(attribute_ids, [[] for _ in attribute_ids], attribute_scores)
        tokens = (condition or model_condition(model))(attribute_ids, attribute_scores)  # (B, 6K) ids
        tokens = torch.tensor(tokens, dtype=torch.long, device=images.device)[:, None]
        tokens = tokens.expand(-1, style_prefixes.shape[1], -1)  # (B, m, 6K): every style reads the same
        prefixes = model.with_condition(style_prefixes.flatten(0, 1), tokens.flatten(0, 1))  # (B*m, Pc+6K, D)
        caption_ids, _ = _decode_rows(model, prefixes.unflatten(0, style_prefixes.shape[:2]), opts.max_caption_tokens,
                                      opts, decode)
    return Generated(attribute_ids, caption_ids, attribute_scores)


def _decode_rows(model: SpacCaptioner, prefixes: torch.Tensor, max_tokens: int, opts: DecodingOptions, decode
                 ) -> tuple[list, list]:
    """Prefixes (B, R, P, D) of equal length -> token ids [B][R] and the probability of each sequence."""
    num_images, rows_per_image = prefixes.shape[:2]
    rows = prefixes.flatten(0, 1)
    ids, log_probs = decode(model, rows, torch.ones(rows.shape[:2], dtype=torch.long, device=rows.device),
                            torch.full((rows.shape[0],), max_tokens, device=rows.device), opts)
    probs = [math.exp(x) for x in log_probs]
    return ([ids[i * rows_per_image:(i + 1) * rows_per_image] for i in range(num_images)],
            [probs[i * rows_per_image:(i + 1) * rows_per_image] for i in range(num_images)])


def _decode_jointly(model: SpacCaptioner, attribute_prefixes, style_prefixes, opts: DecodingOptions, decode
                    ) -> Generated:
    """Attributes and captions of captions that read only the image, as one batch of rows: per image 6 attribute
    rows then m caption rows, left-padded to the caption prefix's length."""
    num_images, num_attributes, attribute_len, width = attribute_prefixes.shape
    num_styles, caption_len = style_prefixes.shape[1], style_prefixes.shape[2]
    rows_per_image, device = num_attributes + num_styles, style_prefixes.device
    pad = caption_len - attribute_len
    prefix = torch.zeros(num_images, rows_per_image, caption_len, width, dtype=style_prefixes.dtype, device=device)
    prefix[:, :num_attributes, pad:] = attribute_prefixes.to(style_prefixes.dtype)
    prefix[:, num_attributes:] = style_prefixes
    mask = torch.zeros(num_images, rows_per_image, caption_len, dtype=torch.long, device=device)
    mask[:, :num_attributes, pad:] = 1
    mask[:, num_attributes:] = 1
    max_new = torch.tensor([opts.max_attribute_tokens] * num_attributes + [opts.max_caption_tokens] * num_styles,
                           device=device).repeat(num_images)  # (B * (6 + m),)
    seqs, scores = decode(model, prefix.flatten(0, 1), mask.flatten(0, 1), max_new, opts)
    per_image = [seqs[i * rows_per_image:(i + 1) * rows_per_image] for i in range(num_images)]
    per_image_scores = [scores[i * rows_per_image:i * rows_per_image + num_attributes] for i in range(num_images)]
    return Generated([rows[:num_attributes] for rows in per_image], [rows[num_attributes:] for rows in per_image],
                     [[math.exp(x) for x in row] for row in per_image_scores])


def model_condition(model: SpacCaptioner) -> ConditionFn:
    """The condition that feeds a captioner its own attributes."""
    per_slot = model.cfg.caption_condition_tokens
    return lambda attribute_ids, _scores: [condition_ids(ids, per_slot, model.eos_id) for ids in attribute_ids]


def generate_tokens(model: SpacCaptioner, images: torch.Tensor, opts: DecodingOptions
                    ) -> tuple[list[list[list[int]]], list[list[list[int]]]]:
    """images (B, 3, H, W) -> (attribute ids [B][6], caption ids [B][m]); END not included."""
    out = generate(model, images, opts)
    return out.attribute_ids, out.caption_ids


@dataclass
class CaptionOutputs:
    """What :meth:`Captioner.run` returns, one entry per image."""

    attributes: list  # the captioner's own {slot: phrase}
    attribute_scores: list  # {slot: probability of that phrase}
    captions: list  # {style: caption}
    final: list  # the attributes the captions follow ({slot: phrase}; see Captioner.run)


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

    def options(self, **changes) -> DecodingOptions:
        """This captioner's default decoding options with ``changes`` (``None`` is a value, see ``from_config``)."""
        return DecodingOptions.from_config(self.config, **changes)

    def prepare(self, image_bytes: bytes) -> torch.Tensor:
        """An image file's bytes as the normalised tensor this captioner reads (ValueError when they do not
        decode); what the synthesis job calls for each row, as for every captioner kind."""
        from .data import image_tensor

        return image_tensor(image_bytes, self.config.image_size)

    def texts(self, attribute_ids, caption_ids) -> tuple[list[dict], list[dict]]:
        """Token ids per image (from :func:`generate_tokens`) -> ([slot -> phrase], [style -> caption])."""
        decode = self.tokenizer.decode
        attributes = [{slot: decode(ids) or "unknown" for slot, ids in zip(SLOTS, per_image)}
                      for per_image in attribute_ids]
        fix = sentence_case if self.tokenizer.lowercase else (lambda text: text)
        captions = [{style: fix(decode(ids)) for style, ids in zip(self.config.styles, per_image)}
                    for per_image in caption_ids]
        return attributes, captions

    def caption_tensors(self, images: torch.Tensor, opts: DecodingOptions | None = None,
                        attributes_for: Callable | None = None) -> tuple[list, list]:
        """Preprocessed images (B, 3, H, W) -> ([attributes dict], [captions dict]); see :meth:`run`."""
        out = self.run(images, opts, attributes_for)
        return out.attributes, out.captions

    def run(self, images: torch.Tensor, opts: DecodingOptions | None = None,
            attributes_for: Callable | None = None) -> "CaptionOutputs":
        """Preprocessed images (B, 3, H, W) -> this captioner's attributes (with scores) and captions.

        ``attributes_for(attributes, scores)`` (lists of ``{slot: phrase}`` / ``{slot: score}``, one per image)
        returns the attributes the captions must follow (SPAC synthesis: the union's); a captioner that
        conditions on attributes (``caption_condition_tokens`` > 0) then captions from those, so every caption of
        a row names what the row's attributes say. Without it, or for a captioner that does not condition,
        captions follow the image alone (and ``final`` is its own attributes)."""
        final: list | None = None

        def condition(attribute_ids, scores):
            nonlocal final
            own = self.texts(attribute_ids, [])[0]
            final = attributes_for(own, [dict(zip(SLOTS, row)) for row in scores])
            ids = self.tokenizer.encode_many([a[s] for a in final for s in SLOTS], self.config.max_attribute_tokens)
            per_slot, eos = self.config.caption_condition_tokens, self.tokenizer.eos_id
            return [condition_ids(ids[i * len(SLOTS):(i + 1) * len(SLOTS)], per_slot, eos) for i in range(len(final))]

        out = generate(self.model, images.to(self.device), opts or self.options(),
                       condition if attributes_for is not None else None)
        attributes, captions = self.texts(out.attribute_ids, out.caption_ids)
        scores = [dict(zip(SLOTS, row)) for row in out.attribute_scores]
        if final is None and attributes_for is not None:  # a captioner that does not condition
            final = attributes_for(attributes, scores)
        return CaptionOutputs(attributes, scores, captions, final if final is not None else attributes)

    def attributes(self, images: torch.Tensor, opts: DecodingOptions | None = None) -> tuple[list, list]:
        """Preprocessed images (B, 3, H, W) -> ([{slot: phrase}], [{slot: probability}]); no captions decoded."""
        out = generate(self.model, images.to(self.device), opts or self.options(), captions=False)
        return self.texts(out.attribute_ids, [])[0], [dict(zip(SLOTS, row)) for row in out.attribute_scores]

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

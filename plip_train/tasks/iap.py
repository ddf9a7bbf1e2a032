"""IAP: image-guided attribute prediction (docs/reimplementation.md#iap).

* Random attribute masking: in each caption, whole attribute phrases (the SPAC spans stored in the shards, given
  per token as ``phrase_index``) are replaced by ``[MASK]`` tokens, all of their tokens. Not random-word MLM.
* The ratio follows a curriculum: ``curve(progress) * (upper - lower) + lower``, sqrt by default (0.2 -> 0.8).
* Fusion: the global image embedding is added to every token's hidden state of the masked caption, then pre-LN
  transformer block(s) (LN -> MHA -> LN -> MLP, MLP ratio 4) and a vocabulary head Linear(D, vocab).
* Loss: mean cross-entropy over the masked tokens.

Number of phrases masked per caption with n phrases (a choice, the sources do not say): ``k = round_half_up(ratio *
n)``, at least 1 when ``n > 0`` and ``ratio > 0``, at most n; the k phrases are drawn uniformly without replacement.
The "at least 1" keeps every caption contributing to IAP early in training (ratio 0.2 with 2-4 phrases would
otherwise round to 0 for most captions), as in the paper's Fig. 2 where a phrase is always masked.
"""
from __future__ import annotations

import logging
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def mask_ratio(progress: float, lower: float = 0.2, upper: float = 0.8, curve: str = "sqrt") -> float:
    """G(progress) for progress in [0, 1] (clamped): ``f(p) * (upper - lower) + lower`` with f = sqrt | linear |
    square; ``constant`` returns ``lower`` throughout."""
    p = min(max(float(progress), 0.0), 1.0)
    if curve == "sqrt":
        f = p ** 0.5
    elif curve == "linear":
        f = p
    elif curve == "square":
        f = p ** 2
    elif curve == "constant":
        return float(lower)
    else:
        raise ValueError(f"mask_ratio: curve must be one of 'sqrt', 'linear', 'square', 'constant'; got {curve!r}")
    return f * (upper - lower) + lower


def _count_to_mask(ratio: float, n: Tensor) -> Tensor:
    """round_half_up(ratio * n), at least 1 where n > 0 and ratio > 0, at most n."""
    if ratio <= 0:
        return torch.zeros_like(n)
    k = torch.floor(n.double() * ratio + 0.5).long()
    return torch.minimum(k.clamp_min(1), n)


def _choose(present: Tensor, k: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per row, k[row] of the True entries of ``present`` (B x P) uniformly without replacement."""
    scores = torch.rand(present.shape, generator=generator, device=present.device)
    scores = scores.masked_fill(~present, 2.0)  # absent entries rank last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return present & (rank < k[:, None])


class WarnOnce:
    """Logs each warning (by tag) the first time only, for as long as its owner lives: ``PretextTasks`` holds one
    and shares it with its ``PhraseMasker``, so a training run warns once (once per DataLoader worker process
    when the masker runs in workers, each of which holds a copy)."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, tag: str, message: str) -> None:
        if tag not in self.shown:
            self.shown.add(tag)
            log.warning(message)


def mask_attribute_phrases(input_ids: Tensor, attention_mask: Tensor, phrase_index: Tensor, ratio: float,
                           mask_token_id: int, special_ids: Iterable[int], generator: torch.Generator | None = None,
                           on_missing: str = "random-words", keys: list[str] | None = None,
                           stats: dict | None = None, warn_once: WarnOnce | None = None) -> tuple[Tensor, Tensor]:
    """Mask whole attribute phrases. Returns ``(masked_ids, labels)``: ``masked_ids`` has ``mask_token_id`` at the
    masked positions, ``labels`` the original id there and -100 elsewhere.

    ``phrase_index`` (B x L): per token the index of its attribute phrase in the caption (0, 1, ...) or -1. Phrases
    are counted from the attended tokens, so a phrase cut by truncation is masked over its remaining tokens.
    Captions with no phrase follow ``on_missing``: ``"random-words"`` (mask random attended tokens that are not in
    ``special_ids``, same ratio and rounding: plain MLM; logs a warning: once per ``warn_once`` when one is given,
    else on every call), ``"skip"`` (no masked
    token) or ``"error"`` (ValueError naming the keys). The random draws use ``generator`` (on its device; CPU when
    None, with the global RNG), so a seeded generator makes the masking deterministic. If ``stats`` is a dict, it
    receives ``fallback_captions`` (captions without phrases).
    """
    if on_missing not in ("random-words", "skip", "error"):
        raise ValueError(f"mask_attribute_phrases: on_missing must be 'random-words', 'skip' or 'error'; "
                         f"got {on_missing!r}")
    if not (input_ids.shape == attention_mask.shape == phrase_index.shape) or input_ids.ndim != 2:
        raise ValueError(f"mask_attribute_phrases: input_ids {tuple(input_ids.shape)}, attention_mask "
                         f"{tuple(attention_mask.shape)} and phrase_index {tuple(phrase_index.shape)} must be equal (B, L)")
    out_device = input_ids.device
    dev = generator.device if generator is not None else torch.device("cpu")
    ids = input_ids.to(dev)
    attended = attention_mask.to(dev).bool()
    pi = phrase_index.to(dev).long()
    b = ids.shape[0]

    valid = attended & (pi >= 0)
    n_slots = max(int(pi.max().item()) + 1, 1) if pi.numel() else 1  # over all tokens: gather below stays in range
    present = torch.zeros(b, n_slots, dtype=torch.bool, device=dev)
    rows, cols = valid.nonzero(as_tuple=True)
    if rows.numel():
        present[rows, pi[rows, cols]] = True
    n_phr = present.sum(dim=1)
    chosen = _choose(present, _count_to_mask(ratio, n_phr), generator)
    mask = valid & chosen.gather(1, pi.clamp_min(0))

    missing = n_phr == 0
    n_missing = int(missing.sum())
    if stats is not None:
        stats["fallback_captions"] = n_missing
    if n_missing:
        if on_missing == "error":
            bad = [k for k, m in zip(keys or [], missing.tolist()) if m][:5]
            where = f" (keys {bad}{', ...' if n_missing > len(bad) else ''})" if bad else ""
            raise ValueError(
                f"IAP needs attribute phrases: {n_missing} of {b} captions have none (phrase_index all -1){where}; "
                "set tasks.iap.on_missing_spans to 'random-words' (mask random words, MLM) or 'skip'")
        if on_missing == "random-words":
            warn = warn_once or WarnOnce()  # without an owner's tracker: every call warns
            warn("random-words", "IAP: some captions have no attribute phrases (dataset without spans?); masking "
                 "random words at the same ratio instead (MLM), as tasks.iap.on_missing_spans='random-words' says. "
                 "This warning is shown once.")
            special = torch.tensor(sorted({int(s) for s in special_ids}), dtype=ids.dtype, device=dev)
            cand = attended & ~torch.isin(ids, special) & missing[:, None]
            word_mask = _choose(cand, _count_to_mask(ratio, cand.sum(dim=1)), generator)
            mask = mask | word_mask
        # "skip": nothing to do, those captions have no masked token

    labels = torch.where(mask, ids, torch.full_like(ids, IGNORE_INDEX))
    masked_ids = torch.where(mask, torch.full_like(ids, mask_token_id), ids)
    return masked_ids.to(out_device), labels.to(out_device)


class _PreLNBlock(nn.Module):
    """x = x + MHA(LN(x)); x = x + MLP(LN(x)) (GELU MLP, ratio ``mlp_ratio``), no dropout."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


def auto_heads(dim: int, heads: int | None) -> int:
    """``heads`` if given (must divide dim), else the largest of 12, 11, ..., 1 that divides ``dim``."""
    if heads is None:
        return next(h for h in range(12, 0, -1) if dim % h == 0)
    if dim % heads != 0:
        raise ValueError(f"tasks.iap.heads={heads} must divide the embedding dim {dim}")
    return heads


class AttributePredictor(nn.Module):
    """Image-text fusion + vocabulary head: ``logits = head(LN(blocks(hidden + image_global[:, None])))``."""

    def __init__(self, dim: int, vocab_size: int, heads: int | None = None, mlp_ratio: float = 4.0, layers: int = 1):
        super().__init__()
        self.dim = dim
        self.blocks = nn.ModuleList([_PreLNBlock(dim, auto_heads(dim, heads), mlp_ratio) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def fuse(self, hidden: Tensor, image_global: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if hidden.shape[-1] != self.dim or image_global.shape[-1] != self.dim:
            raise ValueError(f"AttributePredictor: token states ({hidden.shape[-1]}) and image embedding "
                             f"({image_global.shape[-1]}) must both have dim {self.dim}")
        x = hidden + image_global.to(hidden.dtype)[:, None, :]  # element-wise sum with every token (Fig. 2)
        pad = None if attention_mask is None else ~attention_mask.bool()
        for block in self.blocks:
            x = block(x, key_padding_mask=pad)
        return self.ln_final(x)

    def forward(self, hidden: Tensor, image_global: Tensor, attention_mask: Tensor | None = None,
                select: Tensor | None = None) -> Tensor:
        """Logits (B x L x vocab), or (M x vocab) for the positions where the bool mask ``select`` is True (saves
        the B*L*vocab tensor when only masked tokens are scored)."""
        x = self.fuse(hidden, image_global, attention_mask)
        if select is not None:
            x = x[select]
        return self.head(x)


def _per_rank_count(n: int, device) -> float:
    """``n`` alone, or under DDP the global count of masked tokens divided by the world size."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return float(n)
    total = torch.tensor(float(n), device=device)
    dist.all_reduce(total)
    return float(total) / dist.get_world_size()


class PhraseMasker:
    """IAP masking for the data pipeline: runs in DataLoader workers, off the training step's path, one
    generator per sample (seeded by the stream from seed, step and global position) so a sample's mask
    does not depend on how the global batch is split over ranks, workers or accumulation steps."""

    def __init__(self, lower: float, upper: float, curve: str, on_missing: str, mask_token_id: int,
                 special_ids: Iterable[int], total_steps: int, warn_once: WarnOnce | None = None):
        self.lower, self.upper, self.curve, self.on_missing = lower, upper, curve, on_missing
        self.warn_once = warn_once or WarnOnce()
        self.mask_token_id, self.special_ids = int(mask_token_id), tuple(int(s) for s in special_ids)
        self.total_steps = max(1, int(total_steps))

    def ratio(self, step: int) -> float:
        return mask_ratio(step / self.total_steps, self.lower, self.upper, self.curve)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor, phrase_index: Tensor, step: int,
                 seeds: list[int], keys: list[str]) -> dict[str, Tensor]:
        ratio, masked, labels, fallback = self.ratio(step), [], [], 0
        for i, seed in enumerate(seeds):
            stats: dict = {}
            m, lab = mask_attribute_phrases(input_ids[i:i + 1], attention_mask[i:i + 1], phrase_index[i:i + 1], ratio,
                                            self.mask_token_id, self.special_ids,
                                            torch.Generator().manual_seed(int(seed)), self.on_missing,
                                            keys=keys[i:i + 1], stats=stats, warn_once=self.warn_once)
            masked.append(m)
            labels.append(lab)
            fallback += stats.get("fallback_captions", 0)
        return {"masked_input_ids": torch.cat(masked), "mlm_labels": torch.cat(labels),
                "iap_mask_ratio": torch.tensor(ratio), "iap_fallback_captions": torch.tensor(float(fallback))}


class IAPTask(nn.Module):
    """forward(hidden states of the masked caption, image global embedding, labels) ->
    ``{"iap_loss", "iap_acc", "iap_masked_tokens"}``. ``iap_loss`` = mean CE over positions with label != -100;
    0 (still connected to the graph) when there is none; ``iap_acc`` = top-1 accuracy over those positions."""

    def __init__(self, dim: int, vocab_size: int, heads: int | None = None, mlp_ratio: float = 4.0, layers: int = 1):
        super().__init__()
        self.predictor = AttributePredictor(dim, vocab_size, heads, mlp_ratio, layers)

    def forward(self, hidden_of_masked_text: Tensor, image_global: Tensor, labels: Tensor,
                attention_mask: Tensor | None = None) -> dict[str, Tensor]:
        select = labels != IGNORE_INDEX
        n = int(select.sum())
        if n == 0:
            x = self.predictor.fuse(hidden_of_masked_text, image_global, attention_mask)
            zero = self.predictor.head(x[:, :1]).sum() * 0.0
            return {"iap_loss": zero, "iap_acc": zero.detach().clone(),
                    "iap_masked_tokens": torch.zeros((), device=labels.device)}
        logits = self.predictor(hidden_of_masked_text, image_global, attention_mask, select=select)
        target = labels[select]
        # mean over the masked tokens of the *global* batch: under DDP each rank divides its sum by the
        # per-rank share of the global count, so averaging the ranks' gradients gives one process's gradient
        loss = F.cross_entropy(logits.float(), target, reduction="sum") / _per_rank_count(n, labels.device)
        with torch.no_grad():
            acc = (logits.argmax(dim=-1) == target).float().mean()
        return {"iap_loss": loss, "iap_acc": acc,
                "iap_masked_tokens": torch.tensor(float(n), device=labels.device)}


__all__ = ["mask_ratio", "mask_attribute_phrases", "AttributePredictor", "IAPTask", "PhraseMasker", "IGNORE_INDEX", "auto_heads",
           "WarnOnce"]

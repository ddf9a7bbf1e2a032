"""The three PLIP pretext tasks (docs/reimplementation.md#pretext-tasks), each a module returning named losses and
no-grad metrics.

``PretextTasks`` does the forward passes (docs/reimplementation.md#forward-passes) for one batch and returns
``{"loss": sum of weight * task loss, "ivlc_loss", "tic_loss", "iap_loss", <metrics>}`` (keys of disabled tasks are
absent; every value is a 0-dim tensor, metrics detached). The model must provide::

    model.embed_dim; model.image_tower.feature_channels (4 ints, strides 4/8/16/32)
    model.text_tower.vocab_size
    model.encode_image(images) -> (B, D)            model.image_features(images) -> [x1, x2, x3, x4]
    model.encode_text(ids, mask) -> (B, D)          model.text_forward(ids, mask) -> (global (B, D), hidden (B, L, D))

The batch: ``images``, ``gray`` (TIC only), ``identities`` (IVLC identity mode), ``input_ids``, ``attention_mask``,
``phrase_index`` (IAP; missing = no spans, handled by ``tasks.iap.on_missing_spans``), ``keys``.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from plip_runtime.finite import NonFiniteLossError, check_finite

from .config import IAPConfig, IVLCConfig, TasksConfig, TICConfig
from .iap import IAPTask, PhraseMasker, WarnOnce, mask_attribute_phrases, mask_ratio
from .ivlc import IVLCTask, cmpm_loss
from .tic import TICTask, tic_loss

__all__ = [
    "TasksConfig", "IVLCConfig", "TICConfig", "IAPConfig",
    "PretextTasks", "build_tasks", "check_finite", "NonFiniteLossError",
    "cmpm_loss", "tic_loss", "mask_ratio", "mask_attribute_phrases",
    "IVLCTask", "TICTask", "IAPTask", "PhraseMasker",
]


class PretextTasks(nn.Module):
    """The enabled task heads (TIC decoder, IAP fusion + vocab head; IVLC has no parameters) and the per-step
    forward. Holds no reference to the model (its parameters are not duplicated in this module's state dict).

    ``mask_token_id`` and ``special_ids`` (ids never masked by the random-words fallback: CLS, SEP, PAD, ...) are
    needed only when IAP is enabled; :func:`build_tasks` takes them from a tokenizer.
    """

    def __init__(self, cfg: TasksConfig, model, mask_token_id: int | None = None, special_ids: Iterable[int] = ()):
        super().__init__()
        if not isinstance(cfg, TasksConfig):
            raise TypeError(f"PretextTasks: cfg must be a TasksConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        dim = int(model.embed_dim)
        self.ivlc = IVLCTask(cfg.ivlc.mode, cfg.ivlc.gather) if cfg.ivlc.enabled else None
        self.tic = (TICTask(tuple(model.image_tower.feature_channels), dim, cfg.tic.fpn_dim)
                    if cfg.tic.enabled else None)
        if cfg.iap.enabled:
            if mask_token_id is None:
                raise ValueError("PretextTasks: IAP is enabled but no mask_token_id was given "
                                 "(the tokenizer has no [MASK] token?)")
            self.iap = IAPTask(dim, int(model.text_tower.vocab_size), cfg.iap.heads, cfg.iap.mlp_ratio,
                               cfg.iap.layers)
        else:
            self.iap = None
        self.mask_token_id = None if mask_token_id is None else int(mask_token_id)
        self.special_ids = tuple(sorted({int(s) for s in special_ids}))
        self.warn_once = WarnOnce()  # this run's warnings (IAP's random-words fallback) are shown once

    def forward(self, model, batch: dict, progress: float, generator: torch.Generator | None = None) -> dict:
        cfg = self.cfg
        keys = list(batch.get("keys") or [])
        ids, am = batch["input_ids"], batch["attention_mask"]
        out: dict[str, Tensor] = {}
        total = None

        def add(name: str, weight: float, res: dict) -> None:
            nonlocal total
            out.update(res)
            term = weight * res[name]
            total = term if total is None else total + term

        need_v = self.ivlc is not None or self.iap is not None
        need_t = self.ivlc is not None or self.tic is not None
        v_global = model.encode_image(batch["images"]) if need_v else None       # colour image -> IVLC, IAP
        t_global = model.encode_text(ids, am) if need_t else None                # complete caption -> IVLC, TIC

        if self.ivlc is not None:
            add("ivlc_loss", cfg.ivlc.weight, self.ivlc(v_global, t_global, batch.get("identities"), keys=keys))

        if self.tic is not None:
            if batch.get("gray") is None:
                raise ValueError("TIC needs the grayscale copy of the image: the batch has no 'gray'")
            features = model.image_features(batch["gray"])                      # gray image -> TIC
            add("tic_loss", cfg.tic.weight, self.tic(features, t_global, batch["images"]))

        if self.iap is not None:
            if "masked_input_ids" in batch:  # masked by the data pipeline (PhraseMasker), per sample
                masked_ids, labels = batch["masked_input_ids"], batch["mlm_labels"]
                info = {k: batch[k] for k in ("iap_mask_ratio", "iap_fallback_captions") if k in batch}
            else:
                masked_ids, labels, info = self._mask(batch, progress, generator, keys)
            _, hidden = model.text_forward(masked_ids, am)                       # masked caption -> IAP
            res = self.iap(hidden, v_global, labels, attention_mask=am)
            res.update(info)
            add("iap_loss", cfg.iap.weight, res)

        out["loss"] = total
        return out


    def _mask(self, batch: dict, progress: float, generator, keys) -> tuple[Tensor, Tensor, dict]:
        cfg, ids = self.cfg, batch["input_ids"]
        ratio = mask_ratio(progress, cfg.iap.mask_lower, cfg.iap.mask_upper, cfg.iap.curve)
        phrase_index = batch.get("phrase_index")
        if phrase_index is None:  # dataset without spans: every caption takes the fallback
            phrase_index = torch.full_like(ids, -1)
        stats: dict = {}
        masked_ids, labels = mask_attribute_phrases(
            ids, batch["attention_mask"], phrase_index, ratio, self.mask_token_id, self.special_ids, generator,
            on_missing=cfg.iap.on_missing_spans, keys=keys, stats=stats, warn_once=self.warn_once)
        fallback = float(stats.get("fallback_captions", 0))
        return masked_ids, labels, {"iap_mask_ratio": torch.tensor(ratio, device=ids.device),
                                    "iap_fallback_captions": torch.tensor(fallback, device=ids.device)}

    @property
    def needs_gray(self) -> bool:
        """TIC colours the grayscale copy of each image: the data pipeline makes it only when this is True."""
        return self.tic is not None

    def masker(self, total_steps: int):
        """A :class:`PhraseMasker` for the data pipeline (None when IAP is off)."""
        if self.iap is None:
            return None
        c = self.cfg.iap
        return PhraseMasker(c.mask_lower, c.mask_upper, c.curve, c.on_missing_spans, self.mask_token_id,
                            self.special_ids, total_steps, warn_once=self.warn_once)


def build_tasks(cfg: TasksConfig, model, tokenizer=None) -> PretextTasks:
    """PretextTasks with ``mask_token_id`` and ``special_ids`` from a Hugging Face tokenizer (``mask_token_id``,
    ``all_special_ids``); the tokenizer may be None when IAP is disabled."""
    if isinstance(cfg, dict):
        cfg = TasksConfig.from_dict(cfg)
    mask_id, special = None, ()
    if tokenizer is not None:
        mask_id = getattr(tokenizer, "mask_token_id", None)
        special = getattr(tokenizer, "all_special_ids", ()) or ()
    elif cfg.iap.enabled:
        raise ValueError("build_tasks: IAP is enabled, so a tokenizer (for [MASK] and the special ids) is needed")
    return PretextTasks(cfg, model, mask_token_id=mask_id, special_ids=special)

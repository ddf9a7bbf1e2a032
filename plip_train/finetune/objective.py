"""The text-ReID fine-tuning objective: CMPM + CMPC (Zhang & Lu, ECCV 2018), as the official PLIP downstream code
computes them (docs/evaluation.md#fine-tuning-protocols).

CMPM is the pre-training's IVLC loss (:func:`plip_train.tasks.cmpm_loss`, checked against IRRA's). CMPC, the
cross-modal projection classification, for unnormalised image and text embeddings V, T (B x D), identity classes
y and a classifier W (D x C) whose columns are L2-normalised::

    V_proj = (V . T^) T^      (the image embedding projected on its caption's direction)
    T_proj = (T . V^) V^      (and the reverse)
    CMPC = CE(V_proj W^, y) + CE(T_proj W^, y)        (cross-entropy, mean over the batch; no bias, no temperature)

W is initialised Xavier-uniform and trains at lr x 10 (``optim.head_lr_scale``). Classes are the training
identities (0..C-1 in sorted identity order), counted from the data.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks.ivlc import _dist_world, _l2_normalize, check_equal_batch, cmpm_loss, gather_no_grad, gather_with_grad
from .config import FinetuneConfig


def cmpc_logits(image_embeddings: Tensor, text_embeddings: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(image logits, text logits)`` (B x C) of CMPC: each embedding projected on the other modality's
    direction, times the column-normalised classifier ``weight`` (D x C)."""
    v_hat, t_hat = _l2_normalize(image_embeddings), _l2_normalize(text_embeddings)
    image_proj = (image_embeddings * t_hat).sum(dim=1, keepdim=True) * t_hat
    text_proj = (text_embeddings * v_hat).sum(dim=1, keepdim=True) * v_hat
    w_hat = weight / weight.norm(dim=0, keepdim=True)
    return image_proj @ w_hat, text_proj @ w_hat


def cmpc_loss(image_embeddings: Tensor, text_embeddings: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """CMPC (scalar): the two cross-entropies summed. ``labels`` are class indices 0..C-1."""
    dtype = torch.promote_types(image_embeddings.dtype, torch.float32)
    image_logits, text_logits = cmpc_logits(image_embeddings.to(dtype), text_embeddings.to(dtype), weight.to(dtype))
    return F.cross_entropy(image_logits, labels) + F.cross_entropy(text_logits, labels)


class IdentityHead(nn.Module):
    """A fine-tune head that classifies identities: the classes are the training identities in sorted order, kept
    as the buffer ``class_identities`` (so a checkpoint says which class is whom). Like the pre-training tasks,
    ``forward(model, batch, progress)`` returns named loss terms, so the same trainer runs it."""

    needs_gray = False  # no colorization here

    def __init__(self, identities: np.ndarray):
        super().__init__()
        ids = np.unique(np.asarray(identities, dtype=np.int64))
        self.register_buffer("class_identities", torch.from_numpy(ids))

    @property
    def num_classes(self) -> int:
        return int(self.class_identities.numel())

    def masker(self, total_steps: int):
        return None  # no masked captions

    def labels(self, identities: Tensor) -> Tensor:
        """Class indices of identities (every one must be a training identity)."""
        ids = identities.to(self.class_identities.device, torch.long).reshape(-1)
        labels = torch.searchsorted(self.class_identities, ids).clamp_(max=self.num_classes - 1)
        if not bool((self.class_identities[labels] == ids).all()):
            unknown = sorted(set(ids.tolist()) - set(self.class_identities.tolist()))[:5]
            raise ValueError(f"identities {unknown} are not among the {self.num_classes} training identities")
        return labels


class TextReidObjective(IdentityHead):
    """The text-ReID head: the CMPC classifier (when the loss has it) and the loss terms for one batch:
    ``{"loss", "cmpm_loss", ["cmpc_loss", "cmpc_image_acc", "cmpc_text_acc"]}``."""

    def __init__(self, cfg: FinetuneConfig, embed_dim: int, identities: np.ndarray):
        super().__init__(identities)
        self.cfg = cfg
        if cfg.loss == "cmpm+cmpc":
            self.classifier = nn.Parameter(torch.empty(embed_dim, self.num_classes))  # W: D x C, as the official loss.py
            nn.init.xavier_uniform_(self.classifier, gain=1)
        else:
            self.classifier = None

    def forward(self, model, batch: dict, progress: float) -> dict:
        image = model.encode_image(batch["images"])
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        labels = self.labels(batch["identities"])
        world, _ = _dist_world()
        if self.cfg.gather and world > 1:  # the loss over the global batch, as IVLC in pre-training
            check_equal_batch(image)
            labels = gather_no_grad(labels)
            image, text = gather_with_grad(image, check_sizes=False), gather_with_grad(text, check_sizes=False)
        out = {"cmpm_loss": cmpm_loss(image, text, labels, eps=self.cfg.epsilon)}
        total = out["cmpm_loss"]
        if self.classifier is not None:
            dtype = torch.promote_types(image.dtype, torch.float32)
            image_logits, text_logits = cmpc_logits(image.to(dtype), text.to(dtype), self.classifier.to(dtype))
            out["cmpc_loss"] = F.cross_entropy(image_logits, labels) + F.cross_entropy(text_logits, labels)
            total = total + out["cmpc_loss"]
            with torch.no_grad():
                out["cmpc_image_acc"] = (image_logits.argmax(1) == labels).float().mean()
                out["cmpc_text_acc"] = (text_logits.argmax(1) == labels).float().mean()
        out["loss"] = total
        return out

"""IVLC: identity-based vision-language contrast, the official repository's CMPM loss (docs/reimplementation.md#ivlc).

For B unnormalised image embeddings V and text embeddings T (B x D):

* V^, T^ = row-wise L2-normalised V, T;
* logits S_i2t = V . T^T and S_t2i = T . V^T (the projection of one embedding onto the other's direction, so the
  embedding norm acts as an implicit learned temperature; there is no other temperature);
* Y = same-identity indicator (B x B); Q = Y with every row divided by its L2 norm (not its sum);
* L_x = mean_i sum_j softmax(S_x)_ij * (log_softmax(S_x)_ij - log(Q_ij + eps)), eps = 1e-8;
* CMPM = L_i2t + L_t2i.

(The repository divides by ``mask.norm(dim=1)`` broadcast over columns, i.e. by the norm of row j; for a symmetric
same-identity mask, rows i and j with Y_ij = 1 have the same norm, so this equals the row-wise division.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _l2_normalize(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def identity_target(identities: Tensor) -> Tensor:
    """Q: the same-identity mask with each row divided by its L2 norm (float, B x B)."""
    ids = identities.reshape(-1, 1)
    mask = (ids == ids.t()).float()
    return mask / mask.norm(dim=1, keepdim=True)


def cmpm_loss(image_embeddings: Tensor, text_embeddings: Tensor, identities: Tensor, eps: float = 1e-8) -> Tensor:
    """The repository's CMPM loss (scalar), both directions summed. Embeddings are *unnormalised* (B x D);
    ``identities`` is (B,) integer, rows sharing a value are positives."""
    if image_embeddings.ndim != 2 or image_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"cmpm_loss: expected two (B, D) tensors of the same shape, got "
                         f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    if identities.shape != (image_embeddings.shape[0],):
        raise ValueError(f"cmpm_loss: identities must have shape ({image_embeddings.shape[0]},), "
                         f"got {tuple(identities.shape)}")
    dtype = torch.promote_types(image_embeddings.dtype, torch.float32)  # fp16/bf16 -> fp32, fp64 stays
    v = image_embeddings.to(dtype)
    t = text_embeddings.to(dtype)
    q = identity_target(identities.to(v.device))
    log_q = torch.log(q + eps)
    s_i2t = v @ _l2_normalize(t).t()
    s_t2i = t @ _l2_normalize(v).t()
    loss = v.new_zeros(())
    for s in (s_i2t, s_t2i):
        log_p = F.log_softmax(s, dim=1)
        loss = loss + (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    return loss


# --------------------------------------------------------------------------------------------------- DDP gather
def _dist_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_with_grad(x: Tensor, check_sizes: bool = True) -> Tensor:
    """Concatenate ``x`` (B x ...) from all ranks along dim 0, keeping the gradient to every rank's slice
    (``torch.distributed.nn.all_gather``, like open_clip's ``gather_with_grad``). Every rank then computes the same
    global loss; the all-gather backward sums the gradient of all ranks' copies, which is world_size times the
    gradient of the global loss, and DDP's gradient averaging divides it back: the update equals the single-process
    update on the concatenated batch. Identity when not distributed. All ranks must have the same batch size
    (use drop_last)."""
    world, _ = _dist_world()
    if world == 1:
        return x
    import torch.distributed.nn.functional as dist_nn

    if check_sizes:
        check_equal_batch(x)
    return torch.cat(dist_nn.all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: Tensor) -> Tensor:
    world, _ = _dist_world()
    if world == 1:
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def check_equal_batch(x: Tensor) -> None:
    """ValueError on every rank unless all ranks have the same ``x.shape[0]`` (one small all-gather)."""
    world, _ = _dist_world()
    if world == 1:
        return
    import torch.distributed as dist

    device = x.device if dist.get_backend() == "nccl" else torch.device("cpu")
    sizes = torch.tensor([x.shape[0]], dtype=torch.long, device=device)
    parts = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(parts, sizes)
    got = [int(p.item()) for p in parts]
    if len(set(got)) != 1:
        raise ValueError(f"IVLC gather: every rank needs the same batch size to all-gather embeddings, got {got}; "
                         "use drop_last=True, or set tasks.ivlc.gather=false")


# ------------------------------------------------------------------------------------------------------- task
class IVLCTask(nn.Module):
    """Wraps :func:`cmpm_loss` with the identity checks, the optional DDP gather and no-grad metrics.

    forward returns ``{"ivlc_loss", "ivlc_i2t_acc", "ivlc_t2i_acc", "ivlc_positives"}``: the accuracies are the
    fraction of rows whose top-1 match (by the loss's own logits) has the same identity, over the (global) batch;
    ``ivlc_positives`` is the mean number of positives per row (1.0 = no identity-level positives in the batch).
    """

    def __init__(self, mode: str = "identity", gather: bool = True, eps: float = 1e-8):
        super().__init__()
        if mode not in ("identity", "instance"):
            raise ValueError(f"IVLCTask: mode must be 'identity' or 'instance', got {mode!r}")
        self.mode = mode
        self.gather = gather
        self.eps = eps

    def forward(self, image_global: Tensor, text_global: Tensor, identities: Tensor | None,
                keys: list[str] | None = None) -> dict[str, Tensor]:
        b = image_global.shape[0]
        world, rank = _dist_world() if self.gather else (1, 0)
        if self.mode == "instance":
            ids = torch.arange(b, device=image_global.device) + rank * b  # unique over the global batch
        else:
            if identities is None:
                raise ValueError("IVLC needs identities: the batch has no 'identities'; "
                                 "set tasks.ivlc.mode='instance' for instance-level contrast")
            ids = identities.to(device=image_global.device, dtype=torch.long).reshape(-1)
            if ids.shape[0] != b:
                raise ValueError(f"IVLC: {ids.shape[0]} identities for a batch of {b} embeddings")
        if self.gather and world > 1:
            check_equal_batch(image_global)  # once, before any gather of unequal shapes could hang
            ids = gather_no_grad(ids)
            image_global = gather_with_grad(image_global, check_sizes=False)
            text_global = gather_with_grad(text_global, check_sizes=False)
        if self.mode == "identity":
            unknown = ids < 0
            if bool(unknown.any()):  # checked on the global batch, so every rank raises together (no hang)
                n_bad = int(unknown.sum())
                local = unknown[rank * b:(rank + 1) * b] if world > 1 else unknown
                bad_keys = [k for k, u in zip(keys or [], local.tolist()) if u][:5]
                where = f" (keys {bad_keys}{', ...' if int(local.sum()) > len(bad_keys) else ''})" if bad_keys else ""
                raise ValueError(
                    f"IVLC needs identities: {n_bad} of {ids.shape[0]} rows have identity -1{where}; "
                    "set tasks.ivlc.mode='instance' for instance-level contrast")
        loss = cmpm_loss(image_global, text_global, ids, eps=self.eps)
        with torch.no_grad():
            v = image_global.detach().float()
            t = text_global.detach().float()
            same = ids.view(-1, 1) == ids.view(1, -1)
            rows = torch.arange(same.shape[0], device=same.device)
            i2t = (v @ _l2_normalize(t).t()).argmax(dim=1)
            t2i = (t @ _l2_normalize(v).t()).argmax(dim=1)
            out = {
                "ivlc_loss": loss,
                "ivlc_i2t_acc": same[rows, i2t].float().mean(),
                "ivlc_t2i_acc": same[rows, t2i].float().mean(),
                "ivlc_positives": same.float().sum(dim=1).mean(),
            }
        return out

"""Every trainer stops at the first non-finite loss, naming the step, the terms and the batch: a run that goes on
with NaN weights writes NaN checkpoints and, downstream, silently degraded output (a SPAC captioner whose
attribute scores are all NaN contributes nothing to the union, and nothing said so)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


class NonFiniteLossError(ValueError):
    """A loss term is NaN or infinite. Attributes: ``step``, ``terms`` ({name: value}), ``keys`` (batch keys)."""

    def __init__(self, message: str, step: int, terms: dict, keys: list):
        super().__init__(message)
        self.step, self.terms, self.keys = step, terms, keys


def _is_loss_name(name: str) -> bool:
    return name == "loss" or name.endswith("_loss")


def check_finite(losses: dict, step: int, keys: list[str] | None = None, max_keys: int = 8) -> None:
    """Raise :class:`NonFiniteLossError` if ``losses["loss"]`` or any ``*_loss`` entry is not finite, naming the step,
    the non-finite terms and the first ``max_keys`` batch keys. One device sync for all terms. Metrics (entries not
    named ``loss``/``*_loss``) are not checked."""
    names = [n for n, v in losses.items() if _is_loss_name(n) and v is not None]
    if not names:
        return
    values = [losses[n] for n in names]
    if all(isinstance(v, Tensor) for v in values):
        vals = torch.stack([v.detach().float().reshape(()) for v in values]).cpu().tolist()
    else:
        vals = [float(v.detach().float().reshape(()).item()) if isinstance(v, Tensor) else float(v) for v in values]
    bad = {n: x for n, x in zip(names, vals) if not math.isfinite(x)}
    if not bad:
        return
    keys = list(keys or [])
    shown = ", ".join(keys[:max_keys]) + (f", ... ({len(keys)} in all)" if len(keys) > max_keys else "")
    terms = ", ".join(f"{n}={x}" for n, x in bad.items())
    raise NonFiniteLossError(
        f"non-finite loss at step {step}: {terms}; batch keys: [{shown}]", step=step, terms=bad, keys=keys)

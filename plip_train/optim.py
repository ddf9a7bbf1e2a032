"""Optimizer and learning-rate schedule (docs/reimplementation.md#optimizer-and-schedule): Adan (timm's
implementation), the text tower's group at lr × 0.1, linear warm-up then ×gamma at each milestone, or (``schedule:
plateau``, the attribute-recognition recipe) ×gamma whenever the validation loss stops falling.

Weight decay skips biases and normalisation weights (1-D parameters), the usual practice; the
paper says only "default setting". The official code steps its warm-up once per epoch
(lr·(e+1)/W); here it rises every step, which reaches the same lr at the same epochs without the
jumps.
"""
from __future__ import annotations

import bisect

import torch
from torch import nn

from .config import OptimConfig


def _split_decay(params: list[nn.Parameter]) -> tuple[list, list]:
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return decay, no_decay


def build_optimizer(cfg: OptimConfig, model, tasks) -> torch.optim.Optimizer:
    """Groups: image tower at lr; text tower at lr × text_lr_scale; task heads at lr × head_lr_scale (in the image
    group when that is 1, the layout of the optimizer state of runs written before the scale existed); no decay on
    1-D params. ``tasks``: the heads' module, or just the head parameters this optimizer trains."""
    groups_in = model.param_groups()
    head_params = [p for p in (tasks.parameters() if isinstance(tasks, nn.Module) else tasks) if p.requires_grad]
    own_group = cfg.head_lr_scale != 1.0
    groups = []
    for name, params, scale in (("image", groups_in["image"] + ([] if own_group else head_params), 1.0),
                                ("text", groups_in["text"], cfg.text_lr_scale),
                                ("heads", head_params if own_group else [], cfg.head_lr_scale)):
        decay, no_decay = _split_decay(params)
        for suffix, ps, wd in (("", decay, cfg.weight_decay), ("_no_decay", no_decay, 0.0)):
            if ps:
                groups.append({"name": name + suffix, "params": ps, "lr": cfg.lr * scale, "weight_decay": wd})
    if cfg.name == "adan":
        from timm.optim import Adan

        return Adan(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    optimizer = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, warmup_steps: float, milestone_steps: list[float], gamma: float) -> float:
    """The multiplier of the base lr at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return gamma ** bisect.bisect_right(milestone_steps, step)


class PlateauFactor:
    """The lr multiplier of ``schedule: plateau``: linear warm-up, then gamma ** (reductions so far), where a
    reduction happens once the validation loss (:meth:`observe`) has not improved for more than ``patience``
    validations; torch's ``ReduceLROnPlateau`` (mode min, relative threshold 1e-4, no cooldown), which
    Rethinking_of_PAR steps once per epoch on its validation loss. An object, not a lambda, so ``LambdaLR`` saves
    its state (best, bad validations, reductions) in the checkpoint and a resumed run continues it."""

    def __init__(self, warmup_steps: float, gamma: float, patience: int, threshold: float = 1e-4):
        self.warmup_steps, self.gamma, self.patience, self.threshold = warmup_steps, gamma, patience, threshold
        self.best = float("inf")
        self.bad_validations = 0
        self.reductions = 0

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup_steps, [], 1.0) * self.gamma ** self.reductions

    def observe(self, loss: float) -> bool:
        """Record a validation loss; True when it lowered the lr (from the next step on)."""
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad_validations = float(loss), 0
            return False
        self.bad_validations += 1
        if self.bad_validations > self.patience:
            self.reductions += 1
            self.bad_validations = 0
            return True
        return False


def build_scheduler(cfg: OptimConfig, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    per_unit = steps_per_epoch if cfg.unit == "epoch" else 1
    warmup, milestones = cfg.warmup * per_unit, [m * per_unit for m in cfg.milestones]
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, PlateauFactor(warmup, cfg.gamma, cfg.patience))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, milestones, cfg.gamma))


def observe_validation_loss(scheduler, loss: float) -> bool:
    """Feed a validation loss to a plateau schedule (True: the lr drops, from the very next step on); other schedules
    ignore it."""
    factor = scheduler.lr_lambdas[0]
    if not (isinstance(factor, PlateauFactor) and factor.observe(loss)):
        return False
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return True

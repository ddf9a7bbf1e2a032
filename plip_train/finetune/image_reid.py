"""Image-based person ReID fine-tuning (``plip finetune image-reid``): BoT, the "bag of tricks" strong baseline
(Luo et al. 2019, ``michuanhaohao/reid-strong-baseline``, softmax_triplet_with_center) on the PLIP image encoder,
run by the pre-training trainer's machinery (docs/evaluation.md#image-reid-fine-tuning).

The model is the initialisation's image tower with a BNNeck after it (``ModelConfig.projection: "bnneck"``): the
triplet and center losses see the feature before the BatchNorm, the identity classifier (no bias, label smoothing)
the one after it, and retrieval uses the one after it (cosine). Batches are P=16 identities x K=4 images, with
flip, 10-pixel padding + random crop and random erasing. The centers train by their own SGD (lr 0.5) on gradients
divided by the center loss weight, as BoT's trainer does. Image-ReID benchmarks have no validation split, so the
last checkpoint is reported, on query vs gallery, once.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from plip_runtime.runs import RunOptions, TrainResult

from ..data import DataError, ImageAugment, TrainIndex
from ..trainer import Trainer
from . import config
from .config import BotConfig, ImageReidConfig
from .objective import IdentityHead
from .reid_losses import CenterLoss, bot_loss, center_optimizer, step_centers
from .results import train_and_report

KIND = "plip-image-reid"


def make_config(*, init_run=None, init_config: str | None = None, step: int | None = None,
                overrides: list[str] | None = None) -> ImageReidConfig:
    """The image-ReID fine-tune config (:func:`plip_train.finetune.config.make_config`)."""
    return config.make_config("image-reid", init_run=init_run, init_config=init_config, step=step,
                              overrides=overrides)


class BotObjective(IdentityHead):
    """BoT's head: the identity classifier after the BNNeck and the center loss; ``{"loss", "id_loss",
    "triplet_loss", "center_loss", "id_acc"}`` for a batch."""

    def __init__(self, cfg: BotConfig, embed_dim: int, identities: np.ndarray):
        super().__init__(identities)
        self.cfg = cfg
        self.classifier = nn.Linear(embed_dim, self.num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)  # BoT's weights_init_classifier
        self.center = CenterLoss(self.num_classes, embed_dim)

    def forward(self, model, batch: dict, progress: float) -> dict:
        feature = model.image_tower(batch["images"])  # before the BNNeck: triplet and center
        score = self.classifier(model.image_projection(feature))  # after it: identities
        labels = self.labels(batch["identities"])
        dtype = torch.promote_types(feature.dtype, torch.float32)
        out = bot_loss(score.to(dtype), feature.to(dtype), labels, self.center, self.cfg.center_weight,
                       self.cfg.margin, self.cfg.id_epsilon)
        with torch.no_grad():
            out["id_acc"] = (score.argmax(1) == labels).float().mean()
        return out


class ImageReidTrainer(Trainer):
    """The pre-training trainer with image-only P x K batches and BoT's augmentations, model (BNNeck, frozen text
    tower), head and second optimizer (the centers')."""

    kind = KIND

    def build_index(self) -> TrainIndex:
        cfg, splits = self.cfg, dict(self.dataset.manifest.splits)
        if not {"query", "gallery"} <= set(splits):
            raise DataError(f"{self.dataset.directory} has no query and gallery splits (splits: "
                            f"{', '.join(sorted(splits))}); fine-tune on an image-ReID benchmark (plip import "
                            "market1501|dukemtmc-reid|msmt17, or plip render --format market1501 then import)")
        index = TrainIndex.build(self.dataset, None if cfg.data.split is None else (cfg.data.split,), captions=False)
        bad = index.identity <= 0  # Market-1501's junk (-1) and distractors (0) are no training identities
        if bad.all():
            raise DataError(f"{self.dataset.directory}: no training row has an identity")
        return index.take(~bad) if bad.any() else index

    def record(self) -> dict:
        return {"task": "image-reid", "classes": self.index.num_identities, "training_images": len(self.index)}

    def build_model(self) -> nn.Module:
        from .weights import initial_model

        model = initial_model(self.cfg, resuming=self.run.resume_from is not None, towers=("image",))
        model.text_tower.requires_grad_(False)  # image ReID has no text
        return model

    def build_heads(self, model, tokenizer) -> nn.Module:
        return BotObjective(self.cfg.reid, model.embed_dim, self.index.identity)

    def train_mode(self) -> None:
        self.module.train()
        self.model.text_tower.eval()

    def stream_options(self) -> dict:
        return {"text": False, "augment": ImageAugment(pad=self.cfg.reid.pad, erasing=self.cfg.reid.erasing)}

    def build_optimizer(self) -> torch.optim.Optimizer:
        from ..optim import build_optimizer

        center = self.tasks.center
        self.center_optimizer = center_optimizer(center, self.cfg.reid.center_lr)
        others = [p for name, p in self.tasks.named_parameters() if not name.startswith("center.")]
        return build_optimizer(self.cfg.optim, self.model, others)

    def optimizer_step(self) -> None:
        super().optimizer_step()
        if self.cfg.reid.center_weight > 0:  # the centers: their own SGD, gradients rescaled (BoT's trainer)
            self.scaler.unscale_(self.center_optimizer)
            step_centers(self.tasks.center, self.center_optimizer, self.cfg.reid.center_weight)
        self.center_optimizer.zero_grad(set_to_none=True)

    def extra_state(self) -> dict:
        return {"center_optimizer": self.center_optimizer.state_dict()}

    def restore_state(self, state: dict) -> None:
        self.center_optimizer.load_state_dict(state["center_optimizer"])


def finetune(cfg: ImageReidConfig, data_dir, run_dir, options: RunOptions | None = None,
             eval_data=()) -> tuple[TrainResult, dict | None]:
    """Fine-tune (or resume), then, once the schedule is done, report query vs gallery for the last checkpoint
    (and with re-ranking when ``reid.rerank``). Returns the training result and the results document (None on other
    ranks, or when stopped early)."""
    trainer = ImageReidTrainer(cfg, data_dir, run_dir, options)
    return train_and_report(trainer, data_dir, eval_data, task="image-reid", section=cfg.reid, split=None,
                            direction="i2i", rerank=cfg.reid.rerank)

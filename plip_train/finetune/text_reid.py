"""Text-based person ReID fine-tuning (``plip finetune text-reid``): the official CMPM/C recipe on the pre-training
trainer's machinery, with the checkpoint selected on validation and the test split reported once, for it
(docs/evaluation.md#fine-tuning-protocols).

    from plip_train.finetune import text_reid
    cfg = text_reid.make_config(init_run="runs/plip")          # or init_config="cpu-small" (no pre-training)
    result = text_reid.finetune(cfg, "datasets/cuhk-pedes", "runs/cuhk-ft", eval_data=["datasets/icfg-pedes"])

The run directory is a ``plip train`` run's (run.json, checkpoints, metrics.jsonl, tb/), plus ``subset.json``
(few-shot runs) and ``results.json``: the selected checkpoint's test metrics on the training benchmark and on each
``eval_data`` benchmark (domain generalisation), with the validation history that chose it.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from plip_runtime.runs import RunOptions, TrainResult

from ..data import DataError, TrainIndex
from . import config
from .config import TextReidConfig
from .objective import TextReidObjective
from .results import train_and_report
from .selection import SelectingTrainer
from .subset import choose_subset, write_subset

KIND = "plip-text-reid"
SUBSET_FILE = "subset.json"
SELECTION_METRIC = "R1"  # text-to-image R@1 on the validation split, as the official test.py keeps its best


def make_config(*, init_run=None, init_config: str | None = None, step: int | None = None,
                overrides: list[str] | None = None) -> TextReidConfig:
    """The text-ReID fine-tune config (:func:`plip_train.finetune.config.make_config`)."""
    return config.make_config("text-reid", init_run=init_run, init_config=init_config, step=step,
                              overrides=overrides)


class TextReidTrainer(SelectingTrainer):
    """The pre-training trainer with the fine-tune's rows (one entry per caption, a few-shot subset), model
    (initial weights, frozen towers for the linear probe), head (CMPM/C) and validation after steps (t2i R1)."""

    kind = KIND
    selection_metric = SELECTION_METRIC
    selection_label = f"t2i {SELECTION_METRIC}"

    def __init__(self, cfg: TextReidConfig, data_dir, run_dir, options: RunOptions | None = None, env=None,
                 on_validation: Callable[[dict], None] | None = None):
        self.subset: dict | None = None
        super().__init__(cfg, data_dir, run_dir, options, env, on_validation)
        if self.subset is not None and self.run.is_main:
            write_subset(self.run.directory / SUBSET_FILE, self.subset, self.dataset, cfg.data.split)

    # ---- hooks ----------------------------------------------------------------------------------------
    def build_index(self) -> TrainIndex:
        cfg, ft = self.cfg, self.cfg.finetune
        self.check_splits("ICFG-PEDES has train and test only", "fine-tune on an imported benchmark (plip import "
                          "cuhk-pedes|icfg-pedes|rstpreid, or plip render)")
        index = TrainIndex.build(self.dataset, None if cfg.data.split is None else (cfg.data.split,),
                                 per_caption=ft.one_caption_per_sample,
                                 caption_kinds=tuple(cfg.data.caption_kinds) if cfg.data.caption_kinds else None,
                                 caption_styles=tuple(ft.caption_styles) if ft.caption_styles else None)
        if (index.identity < 0).any():
            raise DataError(f"{self.dataset.directory}: {int((index.identity < 0).sum())} training rows have no "
                            "identity (-1); CMPM/C classifies identities: fine-tune on a benchmark with identities")
        if ft.train_fraction < 1.0:
            mask, self.subset = choose_subset(index, ft.train_fraction, ft.fraction_of, ft.fraction_seed)
            index = index.take(mask)
        return index

    def record(self) -> dict:
        ft = self.cfg.finetune
        subset = None if self.subset is None else {k: self.subset[k] for k in (
            "fraction", "of", "seed", "counts", "images_sha256")}
        return {"task": "text-reid", "protocol": ft.protocol, "loss": ft.loss, "classes": self.index.num_identities,
                "training_pairs": len(self.index), "subset": subset}

    def build_model(self) -> nn.Module:
        from .weights import initial_model

        cfg = self.cfg
        model = initial_model(cfg, resuming=self.run.resume_from is not None)
        if cfg.finetune.protocol == "linear-probe":  # frozen towers: only the linear maps after them train
            for tower in (model.image_tower, model.text_tower):
                tower.requires_grad_(False)
        return model

    def build_heads(self, model, tokenizer) -> nn.Module:
        return TextReidObjective(self.cfg.finetune, model.embed_dim, self.index.identity)

    def train_mode(self) -> None:
        self.module.train()
        if self.cfg.finetune.protocol == "linear-probe":  # frozen BatchNorm statistics stay those of the init
            self.model.image_tower.eval()
            self.model.text_tower.eval()

    def validation_metrics(self, split: str) -> dict:
        """Text-to-image retrieval on ``split`` with the live model (fp32, eval mode), captions as trained on."""
        from ..embed import Embedder
        from ..zeroshot import evaluate_dataset

        embedder = Embedder(self.model, self.cfg, {"description": f"{self.run.directory} (validation)"},
                            device=self.env.device, precision="fp32")
        result = evaluate_dataset(embedder, self.dataset, split=split, direction="t2i",
                                  caption_kinds=self.cfg.data.caption_kinds,
                                  caption_styles=self.cfg.finetune.caption_styles)
        return {k: round(float(v), 4) for k, v in result["metrics"]["t2i"].items()
                if k in ("R1", "R5", "R10", "mAP", "mINP")}


def finetune(cfg: TextReidConfig, data_dir, run_dir, options: RunOptions | None = None, eval_data=(),
             on_validation: Callable[[dict], None] | None = None) -> tuple[TrainResult, dict | None]:
    """Fine-tune (or resume), then, once the schedule is done, report the test split for the selected checkpoint.
    Returns the training result and the results document (None on other ranks, or when stopped early).
    ``on_validation(entry)`` is called after each validation (step, epoch, split, metrics, ``best_so_far``)."""
    trainer = TextReidTrainer(cfg, data_dir, run_dir, options, on_validation=on_validation)
    return train_and_report(trainer, data_dir, eval_data, task="text-reid", section=cfg.finetune, split="test",
                            direction="t2i")

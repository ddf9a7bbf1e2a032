"""Pedestrian attribute recognition fine-tuning (``plip finetune attributes``): the Rethinking_of_PAR baseline
(Jia et al., github.com/valencebond/Rethinking_of_PAR) on the PLIP image encoder, run by the pre-training trainer's
machinery (docs/evaluation.md#attribute-recognition-fine-tuning).

    from plip_train.finetune import attributes
    cfg = attributes.make_config(init_run="runs/plip")            # or init_config="cpu-small" (no pre-training)
    result, doc = attributes.finetune(cfg, "datasets/pa100k", "runs/pa100k-ft")

The model is the initialisation's image tower (its global feature) and one linear layer to the attributes' logits,
trained with the repository's weighted BCE (:func:`plip_train.finetune.par.weighted_bce`, the positive ratios of the
training split), Adam 1e-4 (weight decay 5e-4, gradients clipped at norm 10), the lr x 0.1 whenever the validation
loss has not fallen for 4 validations, 30 epochs of 64 images at 4:3 (256 x 192 at paper size) with flip and
10-pixel padding + random crop. Validation every epoch on ``val`` selects the checkpoint of the best mA; ``test`` is
reported once, for it, with the repository's metrics (:func:`plip_train.finetune.par.par_metrics`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from plip_runtime.runs import RunOptions, TrainResult

from ..data import DataError, ImageAugment, TrainIndex
from . import config
from .config import AttributesConfig
from .par import par_metrics, positive_ratio, weighted_bce
from .results import dataset_record, open_all, train_and_report, write_results
from .selection import SelectingTrainer

_log = logging.getLogger(__name__)
KIND = "plip-attributes"
SELECTION_METRIC = "mA"  # label-based mean accuracy on the validation split, as the repository keeps its best
METRIC_NAMES = {"ma": "mA", "instance_acc": "Acc", "instance_prec": "Prec", "instance_recall": "Rec",
                "instance_f1": "F1"}  # the repository's names -> the tables' (all in percent)


def make_config(*, init_run=None, init_config: str | None = None, step: int | None = None,
                overrides: list[str] | None = None) -> AttributesConfig:
    """The attribute-recognition fine-tune config (:func:`plip_train.finetune.config.make_config`)."""
    return config.make_config("attributes", init_run=init_run, init_config=init_config, step=step,
                              overrides=overrides)


class AttributeHead(nn.Module):
    """The baseline's classifier: one linear layer from the image feature to one logit per attribute (the
    repository's ``LinearClassifier``, no BN), trained with the weighted BCE of the training split's positive
    ratios (a buffer, so a checkpoint carries them). ``forward(model, batch, progress)`` returns named terms, like
    every head the trainer runs."""

    needs_gray = False

    def __init__(self, embed_dim: int, ratio: np.ndarray, weighted: bool = True):
        super().__init__()
        self.classifier = nn.Linear(embed_dim, len(ratio))
        self.register_buffer("positive_ratio", torch.as_tensor(np.asarray(ratio), dtype=torch.float32))
        self.weighted = weighted

    def masker(self, total_steps: int):
        return None  # no captions

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.to(self.classifier.weight.dtype))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.weighted:
            return weighted_bce(logits, labels, self.positive_ratio)  # on the logits' device: no copy per step
        bce = nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
        return bce.sum(dim=1).mean()  # summed over attributes, as the repository's size_sum

    def forward(self, model, batch: dict, progress: float) -> dict:
        logits = self.logits(model.encode_image(batch["images"]))
        loss = self.loss(logits, batch["labels"])
        with torch.no_grad():
            accuracy = ((logits > 0).float() == batch["labels"]).float().mean()
        return {"loss": loss, "bce": loss.detach(), "label_acc": accuracy}


@torch.no_grad()
def evaluate_attributes(embedder, head: AttributeHead, dataset, split: str, names: tuple[str, ...],
                        threshold: float = 0.5) -> dict:
    """The repository's metrics (percent) and the loss of ``head`` on the image features of ``embedder`` (an
    :class:`plip_train.embed.Embedder`, eval mode, its test-time preprocessing: resize only) over the rows of
    ``split`` with status ok. ``{"split", "metrics", "per_attribute", "loss", "counts"}``."""
    where = f"split {split!r} of {dataset.directory}"
    check_attribute_names(dataset, names)
    all_logits, labels = [], []
    for batch in dataset.iter_batches(["image", "attribute_labels"], batch_size=embedder.batch_size, status="ok",
                                      split=split):  # (only the split's files are read)
        if not batch.num_rows:
            continue
        images = [image["bytes"] for image in batch.column("image").to_pylist()]
        logits = head.logits(embedder.encode_image(images, normalize=False).to(head.classifier.weight.device))
        all_logits.append(logits.float().cpu())
        labels.append(torch.tensor(batch.column("attribute_labels").to_pylist(), dtype=torch.float32))
    if not all_logits:
        raise DataError(f"{where}: no row with status ok to evaluate")
    logits, targets = torch.cat(all_logits), torch.cat(labels)
    absent = [name for name, positives in zip(names, targets.sum(0).tolist()) if not positives]
    if absent:  # their positive recall is 0 whatever the model does: the mean mA cannot reach 100
        _log.warning("%s: %d of %d attributes have no positive image (%s): each scores at most 50 %% mA",
                     where, len(absent), len(names), ", ".join(absent[:6]) + (" ..." if len(absent) > 6 else ""))
    loss = head.loss(logits, targets)
    found = par_metrics(logits.numpy(), targets.numpy(), threshold, from_logits=True)
    return {"split": split, "metrics": {name: round(100 * found[key], 2) for key, name in METRIC_NAMES.items()},
            "per_attribute": {n: round(100 * float(v), 2) for n, v in zip(names, found["label_ma"])},
            "loss": round(float(loss), 4), "counts": {"images": int(targets.shape[0]), "attributes": len(names)}}


def check_attribute_names(dataset, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The dataset's attribute names; DataError when it has none, or others than ``names``."""
    found = tuple(dataset.manifest.attribute_names)
    if not found:
        raise DataError(f"{dataset.directory} has no attribute labels (its manifest lists no attribute_names); use an "
                        "attribute-recognition dataset: plip import pa100k|peta|rap|rap2, or plip render --format "
                        "pa100k and import that")
    if names is not None and found != tuple(names):
        raise DataError(f"{dataset.directory}: its attributes {list(found)} are not the {len(names)} the model was "
                        f"trained on ({list(names)}); evaluate on a dataset of the same attribute set")
    return found


class AttributesTrainer(SelectingTrainer):
    """The pre-training trainer with labelled images alone (no captions), the baseline's model (frozen text tower)
    and head, and validation after steps (mA; its loss also drives the plateau schedule)."""

    kind = KIND
    selection_section = "par"
    selection_metric = SELECTION_METRIC
    selection_label = SELECTION_METRIC

    def build_index(self) -> TrainIndex:
        cfg = self.cfg
        self.attribute_names = check_attribute_names(self.dataset)
        self.check_splits("RAPv1 has train and test only", "import the dataset with its test partition")
        index = TrainIndex.build(self.dataset, None if cfg.data.split is None else (cfg.data.split,),
                                 captions=False, labels=True)
        if index.labels.shape[1] != len(self.attribute_names):
            raise DataError(f"{self.dataset.directory}: rows hold {index.labels.shape[1]} labels but the manifest "
                            f"names {len(self.attribute_names)} attributes")
        return index

    def record(self) -> dict:
        return {"task": "attributes", "protocol": self.cfg.par.protocol, "attributes": list(self.attribute_names),
                "training_images": len(self.index)}

    def build_model(self) -> nn.Module:
        from .weights import initial_model

        model = initial_model(self.cfg, resuming=self.run.resume_from is not None, towers=("image",))
        model.text_tower.requires_grad_(False)  # attribute recognition has no text
        if self.cfg.par.protocol == "linear-probe":  # the linear layer alone trains on the frozen features
            model.image_tower.requires_grad_(False)
            if model.image_projection is not None:
                model.image_projection.requires_grad_(False)
        return model

    def build_heads(self, model, tokenizer) -> nn.Module:
        return AttributeHead(model.embed_dim, positive_ratio(self.index.labels), self.cfg.par.weighted)

    def train_mode(self) -> None:
        self.module.train()
        self.model.text_tower.eval()
        if self.cfg.par.protocol == "linear-probe":  # frozen BatchNorm statistics stay those of the init
            self.model.image_tower.eval()
            if self.model.image_projection is not None:
                self.model.image_projection.eval()

    def stream_options(self) -> dict:
        return {"text": False, "augment": ImageAugment(pad=self.cfg.par.pad, erasing=0.0)}

    def validation_metrics(self, split: str) -> dict:
        from ..embed import Embedder

        embedder = Embedder(self.model, self.cfg, {"description": f"{self.run.directory} (validation)"},
                            device=self.env.device, precision="fp32")
        result = evaluate_attributes(embedder, self.tasks, self.dataset, split, self.attribute_names,
                                     self.cfg.par.threshold)
        return {**result["metrics"], "loss": result["loss"]}

    def validated(self, entry: dict) -> None:
        from ..optim import observe_validation_loss

        observe_validation_loss(self.scheduler, entry["loss"])  # the plateau schedule steps on it, on every rank


def report(run_dir: Path, cfg: AttributesConfig, data_dir, eval_data=(), *, device=None, batch_size: int = 128,
           history: list[dict] | None = None, train_seconds: float | None = None) -> dict:
    """Evaluate the run's selected checkpoint (else its last) on the ``test`` split of ``data_dir`` and of each
    ``eval_data`` (same attributes); writes and returns ``RUN/results.json``."""
    import time

    from plip_runtime.weights import read_state_dict

    from ..checkpoint import TASKS_FILE
    from ..embed import load

    t0 = time.perf_counter()
    embedder = load(run_dir, device=device, batch_size=batch_size, precision="fp32")
    state = read_state_dict(Path(embedder.info["checkpoint"]) / TASKS_FILE)
    head = AttributeHead(int(state["classifier.weight"].shape[1]), state["positive_ratio"].numpy(),
                         cfg.par.weighted)
    head.load_state_dict(state)
    head.to(embedder.device).eval()
    datasets = open_all([data_dir, *eval_data])
    names = check_attribute_names(datasets[0])  # the training data's: every eval_data dataset must have the same
    evaluations = [{"dataset": dataset_record(dataset), **evaluate_attributes(embedder, head, dataset, "test", names,
                                                                              cfg.par.threshold)}
                   for dataset in datasets]
    return write_results(run_dir, cfg, embedder, evaluations, task="attributes", section=cfg.par, history=history,
                         seconds={"train": train_seconds, "test": round(time.perf_counter() - t0, 2)})


def finetune(cfg: AttributesConfig, data_dir, run_dir, options: RunOptions | None = None, eval_data=(),
             on_validation: Callable[[dict], None] | None = None) -> tuple[TrainResult, dict | None]:
    """Fine-tune (or resume), then, once the schedule is done, report the test split for the selected checkpoint.
    Returns the training result and the results document (None on other ranks, or when stopped early)."""
    trainer = AttributesTrainer(cfg, data_dir, run_dir, options, on_validation=on_validation)
    return train_and_report(trainer, data_dir, eval_data, report=report)

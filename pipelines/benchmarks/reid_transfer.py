"""Image ReID after PLIP pre-training (paper Table 1's image-ReID rows; docs/evaluation.md#image-reid-fine-tuning):
BoT fine-tuned from no pre-training (cpu-small's ImageNet EfficientNet-Lite0) and from PLIP pre-trained on SPAC's
synthetic captions, on a ProcPedes benchmark in the Market-1501 layout (rendered, then imported as Market-1501
is), 3 seeds, mean ± std of query-vs-gallery R1 / mAP; zero-shot (no training) beside them.

The pre-trained PLIP is the transfer benchmark's (``PLIP_TRANSFER_PRETRAINED=RUN`` reuses one). BoT's recipe runs
scaled to EPOCHS epochs (warm-up and decay at the same fractions of the run) with P=8 x K=4 images per step.
"""
from __future__ import annotations

from pathlib import Path

from . import transfer
from .transfer import INITS, compare_inits, image_size, pretrained_run, render_and_import, timed_finetune

EPOCHS = 4
PAPER = "PLIP + BoT, Market-1501: 88.0 mAP / 95.1 R1 (paper, RN50)"


def render_market(workdir: Path, quick: bool) -> Path:
    return render_and_import(workdir, "market1501", 30 if quick else 100, 6, seed=12)


def recipe(epochs: float, seed: int) -> list[str]:
    return [image_size(), f"train.epochs={epochs}", f"train.seed={seed}", "data.num_workers=1",
            f"data.batch_size={transfer.SETTINGS['batch']}", "train.log_every=1000", f"optim.warmup={epochs / 12}",
            f"optim.milestones=[{epochs / 3},{epochs * 7 / 12}]"]


def one_run(init: str, pretrained: Path, market: Path, run_dir: Path, epochs: float, seed: int) -> dict:
    from plip_train.finetune import image_reid

    return timed_finetune(image_reid, init, pretrained, market, run_dir, recipe(epochs, seed))[0]


def zero_shot(init: str, pretrained: Path, market: Path) -> dict:
    from plip_train.config import load_config
    from plip_train.embed import from_config, load
    from plip_train.zeroshot import evaluate_dataset

    embedder = load(pretrained) if init != INITS[0] else from_config(load_config(transfer.SETTINGS["config"], [image_size()]))
    return {"test": evaluate_dataset(embedder, market)["metrics"]["i2i"]}


def run(quick: bool, workdir: Path) -> dict:
    seeds = (0,) if quick else (0, 1, 2)
    epochs = 1 if quick else EPOCHS
    market = render_market(workdir, quick)
    pretrained = pretrained_run(workdir, quick)
    results = {"zero-shot": {i: [zero_shot(i, pretrained, market)] for i in INITS},
               f"BoT fine-tune, {epochs} epochs": {
                   i: [one_run(i, pretrained, market, workdir / "runs" / f"bot-{k}-{s}", epochs, s) for s in seeds]
                   for k, i in enumerate(INITS)}}
    table, rows = compare_inits(results, "image ReID", "mAP", "R1")
    lines = [f"Image ReID, query vs gallery on a ProcPedes Market-1501-layout benchmark (%, mean ± std over "
             f"{len(seeds)} seed(s)); paper: {PAPER}.", "", *table]
    return {"rows": rows, "table": "\n".join(lines) + "\n", "results": results, "seeds": list(seeds),
            "epochs": epochs, "benchmark": str(market)}

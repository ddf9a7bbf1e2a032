"""Image ReID after PLIP pre-training (paper Table 1's image-ReID rows; docs/evaluation.md#image-reid-fine-tuning):
BoT fine-tuned from no pre-training (cpu-small's ImageNet EfficientNet-Lite0) and from PLIP pre-trained on SPAC's
synthetic captions, on a ProcPedes benchmark in the Market-1501 layout (rendered, then imported as Market-1501
is), 3 seeds, mean ± std of query-vs-gallery R1 / mAP; zero-shot (no training) beside them.

The pre-trained PLIP is the transfer benchmark's (``PLIP_TRANSFER_PRETRAINED=RUN`` reuses one). BoT's recipe runs
scaled to EPOCHS epochs (warm-up and decay at the same fractions of the run) with P=8 x K=4 images per step.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import transfer
from .transfer import INITS, image_size, mean_std, pretrained_run

EPOCHS = 4
PAPER = "PLIP + BoT, Market-1501: 88.0 mAP / 95.1 R1 (paper, RN50)"


def render_market(workdir: Path, quick: bool) -> Path:
    from pipelines.cli import main as plip

    ids, per_id = (30, 6) if quick else (100, 6)
    raw, out = workdir / "market-raw", workdir / "market"
    assert plip(["render", "--out", str(raw), "--format", "market1501", "--identities", str(ids),
                 "--images-per-identity", str(per_id), "--height", str(transfer.SETTINGS["height"]), "--width",
                 str(transfer.SETTINGS["width"]), "--seed", "12"]) == 0
    assert plip(["import", "market1501", str(raw), "--out", str(out), "--workers", "0"]) == 0
    return out


def recipe(epochs: float, seed: int) -> list[str]:
    return [image_size(), f"train.epochs={epochs}", f"train.seed={seed}", "data.num_workers=1",
            f"data.batch_size={transfer.SETTINGS['batch']}", "train.log_every=1000", f"optim.warmup={epochs / 12}",
            f"optim.milestones=[{epochs / 3},{epochs * 7 / 12}]"]


def one_run(init: str, pretrained: Path, market: Path, run_dir: Path, epochs: float, seed: int) -> dict:
    from plip_train.finetune.image_reid import finetune, make_config

    source = {"init_run": pretrained} if init != INITS[0] else {"init_config": transfer.SETTINGS["config"]}
    t0 = time.perf_counter()
    result, doc = finetune(make_config(**source, overrides=recipe(epochs, seed)), market, run_dir)
    return {"seconds": round(time.perf_counter() - t0, 1), "samples_per_s": round(result.samples_per_second, 1),
            "steps": result.total_steps, "test": doc["test"]["metrics"]}


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
    lines = [f"Image ReID, query vs gallery on a ProcPedes Market-1501-layout benchmark (%, mean ± std over "
             f"{len(seeds)} seed(s)); paper: {PAPER}.", "",
             "| protocol | " + " | ".join(f"{i} R1 | {i} mAP" for i in INITS) + " |",
             "|---|" + "---|---|" * len(INITS)]
    rows = []
    for protocol, per_init in results.items():
        cells = {i: {m: mean_std([r["test"][m] for r in per_init[i]]) for m in ("R1", "mAP")} for i in INITS}
        lines.append(f"| {protocol} | " + " | ".join(f"{cells[i]['R1'][0]:.1f} ± {cells[i]['R1'][1]:.1f} | "
                                                     f"{cells[i]['mAP'][0]:.1f} ± {cells[i]['mAP'][1]:.1f}"
                                                     for i in INITS) + " |")
        rows.append({"metric": f"image ReID {protocol}: mAP no pre-training -> PLIP", "unit": "%",
                     "value": f"{cells[INITS[0]]['mAP'][0]:.1f} -> {cells[INITS[1]]['mAP'][0]:.1f}",
                     "goal": "PLIP higher", "note": f"R1 {cells[INITS[0]]['R1'][0]:.1f} -> "
                                                    f"{cells[INITS[1]]['R1'][0]:.1f}; {len(per_init[INITS[0]])} seed(s)"})
    per_run = [r["seconds"] for per in results.values() for v in per.values() for r in v if "seconds" in r]
    if per_run:
        rows.append({"metric": "image ReID time per BoT run", "value": round(sum(per_run) / len(per_run), 1),
                     "unit": "s", "goal": "", "note": "2-core CPU"})
    return {"rows": rows, "table": "\n".join(lines) + "\n", "results": results, "seeds": list(seeds),
            "epochs": epochs, "benchmark": str(market)}

"""Does PLIP pre-training help after fine-tuning, and more with less data? (paper Tables 2-3;
docs/evaluation.md#transfer-benchmark). On a ProcPedes text-ReID benchmark at CPU size, for two initialisations,
no pre-training (cpu-small's ImageNet EfficientNet-Lite0 + MiniLM) and PLIP pre-trained on SPAC's synthetic captions:

* zero-shot (no training), the linear probe and the CMPM/C fine-tune, on 100 % and 10 % of the training identities;
* cross-style: fine-tuned on the captions of one annotator style (CUHK-PEDES-like), tested on the other's
  (ICFG-PEDES-like) and, for reference, on its own;

each over 3 seeds (the fine-tune's seed and its few-shot subset), mean ± std of text-to-image R1 / mAP on the test
split, the checkpoint chosen on val. The pre-training data is made by the demo's stages, as for ``plip bench
ablation`` (``PLIP_ABLATION_DATA=DIR`` reuses a ``plip demo`` output); ``PLIP_TRANSFER_PRETRAINED=RUN`` uses an
existing pre-trained run instead. The recipe is the official one with its epochs scaled down (3 instead of 30,
warm-up and decay at the same fractions) and, because these runs are about a hundred times shorter than the
official ones, its learning rate ten times higher (1e-3; at 1e-4 three epochs barely move the model: R1 3.8 -> 4.4
on val where 1e-3 reaches 25.6 after one epoch, measured).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from .ablation import common_overrides, demo_datasets

METRICS = ("R1", "R5", "R10", "mAP")
INITS = ("no pre-training", "PLIP (SPAC shards)")
STYLES = ("cuhk-pedes", "icfg-pedes")  # trained on the first, tested on the second
# the model and image size of every run (the tests use tiny ones); LR: the recipe's 1e-4 x 10 (see above)
SETTINGS = {"config": "cpu-small", "height": 128, "width": 64, "lr": 1e-3, "batch": 32}
# the paper's RN50 rows (CUHK-PEDES R1), beside which the table is printed
PAPER_R1 = {"zero-shot": 52.86, "linear probe": 63.63, "fine-tune (CMPM/C)": 71.13}


def render_benchmark(workdir: Path, quick: bool) -> Path:
    """A ProcPedes benchmark of people the demo never rendered (seed 11), two captions per image in two styles."""
    from pipelines.cli import main as plip

    out = workdir / "transfer-bench"
    ids, per_id = (40, 3) if quick else (200, 4)
    assert plip(["render", "--out", str(out), "--identities", str(ids), "--images-per-identity", str(per_id),
                 "--height", str(SETTINGS["height"]), "--width", str(SETTINGS["width"]), "--seed", "11",
                 "--styles", ",".join(STYLES)]) == 0
    return out


def pretrained_run(workdir: Path, quick: bool) -> Path:
    given = os.environ.get("PLIP_TRANSFER_PRETRAINED")
    if given:
        return Path(given)
    from plip_train.config import load_config
    from plip_train.trainer import train

    data, _ = demo_datasets(workdir, quick)
    steps, batch = (3, 8) if quick else (40, 32)
    run = workdir / "runs" / "pretrained"
    train(load_config("cpu-small", common_overrides(steps, batch, seed=0)), data, run)
    return run


def image_size() -> str:
    return f"model.image.image_size=[{SETTINGS['height']},{SETTINGS['width']}]"


def recipe(epochs: float, seed: int, fraction: float, protocol: str, styles: tuple[str, ...] | None) -> list[str]:
    items = [image_size(), f"optim.lr={SETTINGS['lr']}", f"data.batch_size={SETTINGS['batch']}", f"train.epochs={epochs}", f"train.seed={seed}", "data.num_workers=1", "train.log_every=1000",
             f"optim.warmup={epochs / 6}", f"optim.milestones=[{epochs * 2 / 3}]", f"finetune.eval_every={epochs / 3}",
             f"finetune.train_fraction={fraction}", f"finetune.fraction_seed={seed}",
             f"finetune.protocol=\"{protocol}\""]
    if styles:
        items.append("finetune.caption_styles=[" + ",".join(f"\"{s}\"" for s in styles) + "]")
    return items


def fine_tune(init: str, pretrained: Path, bench: Path, run_dir: Path, items: list[str],
              test_styles: tuple[str, ...]) -> dict:
    """One fine-tune; its selected checkpoint's test metrics for each caption style asked (None: all)."""
    from plip_train.embed import load
    from pipelines.commands.finetune import print_validation
    from plip_train.finetune import text_reid
    from plip_train.zeroshot import evaluate_dataset

    out, _ = timed_finetune(text_reid, init, pretrained, bench, run_dir, items, on_validation=print_validation)
    if test_styles:
        embedder = load(run_dir)
        out["styles"] = {s: evaluate_dataset(embedder, bench, split="test", direction="t2i",
                                             caption_styles=[s])["metrics"]["t2i"] for s in test_styles}
    return out


def timed_finetune(task, init: str, pretrained: Path, data: Path, run_dir: Path, items: list[str],
                   **kwargs) -> tuple[dict, dict]:
    """One fine-tune by ``task`` (the module ``plip_train.finetune.text_reid``, ``image_reid`` or ``attributes``)
    from ``init`` (INITS) with ``--set`` ``items``: (its time, speed, steps and test metrics; its results document)."""
    source = {"init_run": pretrained} if init != INITS[0] else {"init_config": SETTINGS["config"]}
    t0 = time.perf_counter()
    result, doc = task.finetune(task.make_config(**source, overrides=items), data, run_dir, **kwargs)
    return {"seconds": round(time.perf_counter() - t0, 1), "samples_per_s": round(result.samples_per_second, 1),
            "steps": result.total_steps, "selected_step": doc["checkpoint"]["step"],
            "test": doc["test"]["metrics"]}, doc


def render_and_import(workdir: Path, fmt: str, identities: int, images_per_identity: int, seed: int) -> Path:
    """ProcPedes people rendered in an official layout at the benchmarks' image size, then imported by its
    importer (so the benchmark goes through the route real data takes): the dataset directory."""
    from pipelines.cli import main as plip

    raw, out = workdir / f"{fmt}-raw", workdir / fmt
    assert plip(["render", "--out", str(raw), "--format", fmt, "--identities", str(identities),
                 "--images-per-identity", str(images_per_identity), "--height", str(SETTINGS["height"]), "--width",
                 str(SETTINGS["width"]), "--seed", str(seed)]) == 0
    assert plip(["import", fmt, str(raw), "--out", str(out), "--workers", "0"]) == 0
    return out


def zero_shot(init: str, pretrained: Path, bench: Path) -> dict:
    from plip_train.config import load_config
    from plip_train.embed import from_config, load
    from plip_train.zeroshot import evaluate_dataset

    embedder = load(pretrained) if init != INITS[0] else from_config(load_config(SETTINGS["config"], [image_size()]))
    t0 = time.perf_counter()
    metrics = evaluate_dataset(embedder, bench, split="test", direction="t2i")["metrics"]["t2i"]
    styles = {s: evaluate_dataset(embedder, bench, split="test", direction="t2i", caption_styles=[s])["metrics"]["t2i"]
              for s in STYLES}
    return {"seconds": round(time.perf_counter() - t0, 1), "test": metrics, "styles": styles}


def compare_inits(results: dict, task: str, headline: str, other: str) -> tuple[list[str], list[dict]]:
    """``{protocol: {init: [run, ...]}}`` (each run with its ``test`` metrics) as a Markdown table (one row per
    protocol: mean ± std of ``other`` and ``headline`` for each init) and bench rows (``headline``, no pre-training ->
    PLIP, ``other`` in the note), plus the mean time per run (runs that say theirs)."""
    shown = (other, headline) if headline == "mAP" else (headline, other)  # retrieval tables read R1 | mAP
    lines = ["| protocol | " + " | ".join(f"{i} {shown[0]} | {i} {shown[1]}" for i in INITS) + " |",
             "|---|" + "---|---|" * len(INITS)]
    rows = []
    for protocol, per_init in results.items():
        cells = {i: {m: mean_std([r["test"][m] for r in per_init[i]]) for m in shown} for i in INITS}
        lines.append(f"| {protocol} | " + " | ".join(" | ".join(f"{cells[i][m][0]:.1f} ± {cells[i][m][1]:.1f}"
                                                                for m in shown) for i in INITS) + " |")
        before, after = (cells[INITS[0]], cells[INITS[1]])
        rows.append({"metric": f"{task} {protocol}: {headline} no pre-training -> PLIP", "unit": "%",
                     "value": f"{before[headline][0]:.1f} -> {after[headline][0]:.1f}", "goal": "PLIP higher",
                     "note": f"{other} {before[other][0]:.1f} -> {after[other][0]:.1f}; "
                             f"{len(per_init[INITS[0]])} seed(s)"})
    per_run = [r["seconds"] for per in results.values() for v in per.values() for r in v if "seconds" in r]
    if per_run:
        rows.append({"metric": f"{task} time per run", "value": round(sum(per_run) / len(per_run), 1), "unit": "s",
                     "goal": "", "note": "2-core CPU"})
    return lines, rows


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(runs: list[dict], metric: str = "R1", style: str | None = None) -> str:
    values = [(r["styles"][style] if style else r["test"])[metric] for r in runs]
    m, s = mean_std(values)
    return f"{m:.1f} ± {s:.1f}"


def table(results: dict, seeds: int) -> str:
    lines = [f"Text-to-image R1 / mAP on the ProcPedes test split (%, mean ± std over {seeds} seed(s)); paper: "
             "RN50 on CUHK-PEDES, R1.", "",
             "| protocol | training data | " + " | ".join(f"{i} R1 | {i} mAP" for i in INITS) + " | paper R1 |",
             "|---|---|" + "---|---|" * len(INITS) + "---|"]
    for (protocol, data), per_init in results.items():
        paper = PAPER_R1.get(protocol, "") if data in ("100 %", "-") else ""
        lines.append(f"| {protocol} | {data} | " + " | ".join(
            f"{cell(per_init[i], 'R1', per_init.get('_style'))} | {cell(per_init[i], 'mAP', per_init.get('_style'))}"
            for i in INITS) + f" | {paper} |")
    return "\n".join(lines) + "\n"


def run(quick: bool, workdir: Path) -> dict:
    seeds = (0,) if quick else (0, 1, 2)
    epochs = 1 if quick else 3
    bench = render_benchmark(workdir, quick)
    pretrained = pretrained_run(workdir, quick)
    results: dict = {}
    seconds: dict = {}
    results[("zero-shot", "-")] = {i: [zero_shot(i, pretrained, bench)] for i in INITS}
    for protocol, label in (("linear-probe", "linear probe"), ("finetune", "fine-tune (CMPM/C)")):
        for fraction, data in ((1.0, "100 %"), (0.1, "10 % of identities")):
            per_init = {}
            for i, init in enumerate(INITS):
                per_init[init] = [fine_tune(init, pretrained, bench, workdir / "runs" / f"{protocol}-{fraction}-{i}-{s}",
                                            recipe(epochs, s, fraction, protocol, None), ()) for s in seeds]
                print(f"transfer {label} {data} {init}: R1 {[round(r['test']['R1'], 1) for r in per_init[init]]}",
                      flush=True)
            results[(label, data)] = per_init
            seconds[f"{label}, {data}"] = statistics.fmean(r["seconds"] for v in per_init.values() for r in v)
    per_init = {"_style": STYLES[1]}
    for i, init in enumerate(INITS):
        per_init[init] = [fine_tune(init, pretrained, bench, workdir / "runs" / f"cross-style-{i}-{s}",
                                    recipe(epochs, s, 1.0, "finetune", STYLES[:1]), STYLES) for s in seeds]
    results[(f"fine-tune on {STYLES[0]} captions, test on {STYLES[1]}", "100 %")] = per_init
    in_style = {"_style": STYLES[0], **{i: per_init[i] for i in INITS}}
    results[(f"the same, tested on {STYLES[0]} (its own style)", "100 %")] = in_style
    seconds["cross-style fine-tune"] = statistics.fmean(r["seconds"] for i in INITS for r in per_init[i])
    md = table(results, len(seeds))
    rows = []
    for (protocol, data), per in results.items():
        style = per.get("_style")
        rows.append({"metric": f"transfer {protocol}, {data}: R1 no pre-training -> PLIP", "unit": "%",
                     "value": f"{cell(per[INITS[0]], 'R1', style)} -> {cell(per[INITS[1]], 'R1', style)}",
                     "goal": "PLIP higher", "note": f"{len(per[INITS[0]])} seed(s)"})
    rows += [{"metric": f"transfer time per run: {k}", "value": round(v, 1), "unit": "s", "goal": "",
              "note": "2-core CPU"} for k, v in seconds.items()]
    raw = {f"{p} | {d}": {k: v for k, v in per.items()} for (p, d), per in results.items()}
    return {"rows": rows, "table": md, "results": raw, "seconds_per_run": seconds, "seeds": list(seeds),
            "epochs": epochs, "benchmark": str(bench)}

"""The paper's ablations on ProcPedes with small models (paper Tables 10/13;
docs/reimplementation.md#loss-weights): IVLC alone, +TIC, +IAP, all three; prompt captions only vs
generated only vs both; and no pre-training as the baseline.
Every variant is trained with several seeds and scored zero-shot (text-to-image) on the test split
of a CUHK-PEDES-layout benchmark; R1/R5/R10/mAP are reported as mean ± std over seeds.

The pre-training data is made by the demo's own stages (render → recognizer + SPAC captioner →
synth → filter), so the ablation measures the system as shipped. ``PLIP_ABLATION_DATA=DIR`` points
at an existing ``plip demo`` output instead (its ``datasets/synth-filtered`` and
``datasets/benchmark-test``), which saves the data stages. Small models: ``cpu-small`` at 128×64.
"""
from __future__ import annotations

import io
import os
import statistics
from pathlib import Path

METRICS = ("R1", "R5", "R10", "mAP")
VARIANTS = {  # name -> config overrides on top of the common ones
    "IVLC": ["tasks.tic.enabled=false", "tasks.iap.enabled=false"],
    "IVLC+TIC": ["tasks.iap.enabled=false"],
    "IVLC+IAP": ["tasks.tic.enabled=false"],
    "IVLC+TIC+IAP": [],
    "all tasks, prompt captions only": ["data.caption_kinds=[\"prompt\"]"],
    "all tasks, generated captions only": ["data.caption_kinds=[\"generated\"]"],
}


def demo_datasets(workdir: Path, quick: bool) -> tuple[Path, Path]:
    """The demo's filtered synthetic captions and its CUHK-PEDES-layout test benchmark (made, or PLIP_ABLATION_DATA)."""
    given = os.environ.get("PLIP_ABLATION_DATA")
    root = Path(given) if given else workdir / "demo"
    if not given:
        from pipelines import demo

        ctx = demo.DemoContext(out=root, quick=quick, workers=0, log=io.StringIO())
        root.mkdir(parents=True, exist_ok=True)
        # the demo's own stages up to the filtered shards, so a stage added to the demo is not missed here (the
        # calibration stage was, and synth then failed for want of its file)
        last = [fn for _, fn in demo.STAGES].index(demo.stage_filter)
        for _, fn in demo.STAGES[:last + 1]:
            fn(ctx)
    return root / "datasets" / "synth-filtered", root / "datasets" / "benchmark-test"


def common_overrides(steps: int, batch: int, seed: int) -> list[str]:
    """The small pre-training every ablation variant (and the transfer benchmark's PLIP) runs: cpu-small at 128x64."""
    return ["model.image.image_size=[128,64]", f"data.batch_size={batch}", "data.split=null", "data.num_workers=1",
            f"train.max_steps={steps}", f"train.seed={seed}", f"train.checkpoint_every={steps}",
            f"optim.warmup={max(1, steps // 10)}", f"optim.milestones=[{steps}]", "train.log_every=1000"]


def _score(embedder, bench: Path) -> dict:
    from plip_train.zeroshot import evaluate_dataset

    return evaluate_dataset(embedder, bench, split="test", direction="t2i")["metrics"]["t2i"]


def run_variant(name: str, data: Path, bench: Path, workdir: Path, steps: int, batch: int, seed: int) -> dict:
    from plip_train.config import load_config
    from plip_train.embed import from_config, load
    from plip_train.trainer import train

    common = common_overrides(steps, batch, seed)
    if name == "no pre-training":
        return _score(from_config(load_config("cpu-small", common)), bench)
    run_dir = workdir / "runs" / f"{name.replace(' ', '_').replace(',', '')}-seed{seed}"
    train(load_config("cpu-small", common + VARIANTS[name]), data, run_dir)
    return _score(load(run_dir), bench)


def summarize(scores: dict[str, list[dict]]) -> dict[str, dict]:
    """variant -> {metric: (mean, std)} over seeds (std 0 with one seed)."""
    out = {}
    for name, runs in scores.items():
        out[name] = {m: (statistics.fmean(r[m] for r in runs),
                         statistics.stdev([r[m] for r in runs]) if len(runs) > 1 else 0.0) for m in METRICS}
    return out


def table(summary: dict[str, dict], seeds: int) -> str:
    lines = [f"| variant ({seeds} seed{'s' if seeds > 1 else ''}) | " + " | ".join(METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for name, m in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k][0]:.1f} ± {m[k][1]:.1f}" for k in METRICS) + " |")
    return "\n".join(lines)


def run(quick: bool, workdir: Path) -> dict:
    seeds, steps, batch = ((0,), 3, 8) if quick else ((0, 1, 2), 40, 32)
    data, bench = demo_datasets(workdir, quick)
    scores: dict[str, list[dict]] = {}
    for name in ["no pre-training", *VARIANTS]:
        scores[name] = [run_variant(name, data, bench, workdir, steps, batch, s) for s in seeds]
        print(f"ablation {name}: R1 {[round(r['R1'], 1) for r in scores[name]]}", flush=True)
    summary = summarize(scores)
    rows = [{"metric": f"ablation {name}: R1 / mAP (t2i, test)", "value": f"{m['R1'][0]:.1f} ± {m['R1'][1]:.1f}",
             "unit": "%", "goal": "", "note": f"mAP {m['mAP'][0]:.1f} ± {m['mAP'][1]:.1f}; {len(seeds)} seed(s), "
                                              f"{steps} steps x {batch}"} for name, m in summary.items()]
    return {"rows": rows, "table": table(summary, len(seeds)), "summary": summary,
            "runs": {k: v for k, v in scores.items()}, "steps": steps, "batch_size": batch, "seeds": list(seeds)}

"""The end-to-end demo on the embedded ProcPedes corpus: every stage runs the same code as its
``plip`` command (parsed from the same argument list), and writes a directory that command accepts.

Stages: render an unlabeled LUPerson-NL-style folder (with a few broken files, as real crawls have)
→ import it on a Dask cluster → render a captioned corpus (SPAC's training data) → render a test
benchmark in the official CUHK-PEDES layout → import it → train the attribute recognizer and the
SPAC captioner (briefly: a CPU demo, not a quality run) → SPAC synthesis over the unlabeled images
→ quality filters → dataset card (scored against the ground truth the render wrote beside the
images) → PLIP pre-training on the filtered shards → zero-shot retrieval on the benchmark's test
split, against the same model without pre-training → validate every dataset. The summary says
plainly whether pre-training beat the baseline.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class DemoContext:
    out: Path
    quick: bool
    workers: int | None
    log: io.TextIOBase
    scheduler: str | None = None  # the demo's own Dask cluster, shared by every stage
    results: dict = field(default_factory=dict)  # stage name -> its result dict

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def sizes(self) -> dict:
        if self.quick:
            return {"unlabeled_ids": 24, "benchmark_ids": 40, "per_id": 4, "captioned_ids": 80, "captioned_per_id": 2,
                    "spac_steps": 10, "rec_steps": 4, "plip_steps": 4, "plip_batch": 16}
        # SPAC's training corpus: many people with two images each, because with few people the classifier
        # memorises who is who (160 people: 56 % on unseen ones, 640: 76 %, docs/evaluation.md)
        return {"unlabeled_ids": 150, "benchmark_ids": 200, "per_id": 8, "captioned_ids": 640, "captioned_per_id": 2,
                "spac_steps": 120, "rec_steps": 150, "plip_steps": 40, "plip_batch": 32}


def open_log(path: Path) -> io.TextIOBase:
    """The demo log, line-buffered: each line is on disk as it is written (it stayed empty for the first
    12 minutes of a demo), for ``tail -f`` or a batch job's log collector."""
    return open(path, "a", buffering=1)


def cli(ctx: DemoContext, *argv: str) -> int:
    """Run one ``plip`` command in-process, its printed output and its progress lines (stderr, not a terminal
    here: docs/formats.md#progress) going to the demo log; the terminal shows the demo's stages."""
    from .cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    import importlib

    with contextlib.redirect_stdout(ctx.log), contextlib.redirect_stderr(ctx.log):
        print(f"$ plip {' '.join(map(str, argv))}")
        code = int(importlib.import_module(args._module).run(args) or 0)
    if code != 0:
        raise RuntimeError(f"plip {' '.join(map(str, argv))} exited with {code}; see {ctx.path('demo.log')}")
    return code


def _workers(ctx: DemoContext) -> list[str]:
    return ["--scheduler", ctx.scheduler] if ctx.scheduler else ["--workers", "0"]


def _manifest(directory: Path):
    """The verified manifest of a stage's output."""
    from synth_pedes import open_dataset

    return open_dataset(directory).manifest


def _break_some_files(folder: Path) -> int:
    """Real crawls contain broken files; the import must keep them as error rows."""
    victims = sorted(folder.rglob("*.jpg"))[:3]
    victims[0].write_bytes(b"")
    victims[1].write_bytes(victims[1].read_bytes()[:200])
    victims[2].write_text("<html>404 not found</html>")
    return len(victims)


def stage_unlabeled(ctx: DemoContext) -> dict:
    folder, out = ctx.path("raw", "luperson-procpedes"), ctx.path("datasets", "unlabeled-images")
    s = ctx.sizes
    cli(ctx, "render", "--out", folder, "--format", "image-folder", "--identities", s["unlabeled_ids"],
        "--images-per-identity", s["per_id"], "--seed", 1, "--captions-per-image", 0)
    broken = _break_some_files(folder)
    cli(ctx, "import", "images", folder, "--out", out, "--shard-size", 64, *_workers(ctx))
    m = _manifest(out)
    return {"output": str(out), "rows": m.num_rows, "note": f"{m.status_counts.get('error', 0)} error rows "
            f"({broken} files broken on purpose)", "id": m.id}


def stage_captioned(ctx: DemoContext) -> dict:
    s = ctx.sizes
    for split in ("train", "val"):  # val: other people, to calibrate the union on
        # seed 2: people of their own, neither in the unlabeled images (seed 1) nor in the benchmark (seed 0)
        cli(ctx, "render", "--out", ctx.path("datasets", f"captioned-{split}"), "--format", "dataset", "--split", split,
            "--identities", s["captioned_ids"], "--images-per-identity", s["captioned_per_id"], "--seed", 2,
            "--shard-size", 128, *_workers(ctx))
    m = _manifest(ctx.path("datasets", "captioned-train"))
    return {"output": str(ctx.path("datasets", "captioned-train")), "rows": m.num_rows, "id": m.id,
            "note": f"human-style captions, SPAC's training data (+ {_manifest(ctx.path('datasets', 'captioned-val')).num_rows} "
                    "val images of other people for calibration)"}


def stage_benchmark(ctx: DemoContext) -> dict:
    raw, out = ctx.path("raw", "cuhk-pedes-procpedes"), ctx.path("datasets", "benchmark-test")
    s = ctx.sizes
    cli(ctx, "render", "--out", raw, "--format", "cuhk-pedes", "--identities", s["benchmark_ids"],
        "--images-per-identity", s["per_id"], "--seed", 0, "--contact-sheet", ctx.path("contact-sheet.png"))
    cli(ctx, "import", "cuhk-pedes", raw, "--out", out, "--shard-size", 256, *_workers(ctx))
    m = _manifest(out)
    return {"output": str(out), "rows": m.num_rows, "note": f"official CUHK-PEDES layout, re-imported; splits "
            f"{m.splits}", "id": m.id}


# The frozen backbone stages' output computed once per image: each step runs only the trained part. (128x64
# images would be 4x cheaper still, but the classifier then memorises people: 53 % on unseen ones against 76 %
# at 256x128, docs/evaluation.md#spac-quality-benchmark.)
RECOGNIZER_SETTINGS = ("--set", "cache_frozen=true")


def stage_recognizer(ctx: DemoContext) -> dict:
    out = ctx.path("runs", "attribute-recognizer")
    steps = ctx.sizes["rec_steps"]
    cli(ctx, "spac", "train-recognizer", "--data", ctx.path("datasets", "captioned-train"), "--out", out,
        "--max-steps", steps, "--batch-size", 32, "--precision", "bf16", "--no-progress", *RECOGNIZER_SETTINGS)
    return {"output": str(out), "rows": steps, "note": f"EfficientNet-Lite0 attribute classifier (colour x kind "
            f"heads), {steps} steps; its attributes join the captioner's in the calibrated SPAC union"}


def stage_spac_train(ctx: DemoContext) -> dict:
    from .cluster import default_workers

    out = ctx.path("runs", "spac-captioner")
    steps = ctx.sizes["spac_steps"]
    # at 128x64: its captions read the union's attributes, so its pixels matter less than its steps. fp32: on a CPU
    # with native bf16 kernels, bf16 training went NaN within 10-70 steps in 3 of 4 demo runs (not in a standalone
    # run), and the NaN captioner then added nothing to the union
    cli(ctx, "spac", "train", "--data", ctx.path("datasets", "captioned-train"), "--out", out, "--config",
        "cpu-small", "--max-steps", steps, "--precision", "fp32", "--threads", default_workers(),
        "--set", "image_size=[128,64]")
    return {"output": str(out), "rows": steps, "note": f"cpu-small captioner, {steps} steps (a demo, not a "
            "quality run: see plip bench spac-quality)"}


def stage_calibrate(ctx: DemoContext) -> dict:
    out = ctx.path("runs", "union-calibration.json")
    cli(ctx, "spac", "calibrate", "--captioner", ctx.path("runs", "spac-captioner"), "--recognizers",
        f"classifier:{ctx.path('runs', 'attribute-recognizer')}", "--data", ctx.path("datasets", "captioned-val"),
        "--split", "val", "--out", out)
    return {"output": str(out), "rows": _manifest(ctx.path("datasets", "captioned-val")).num_rows,
            "note": "per-slot Platt scaling of the classifier and the captioner's prefixes on val identities"}


def stage_synth(ctx: DemoContext) -> dict:
    out = ctx.path("datasets", "synth-captions")
    t0 = time.perf_counter()
    cli(ctx, "synth", "--data", ctx.path("datasets", "unlabeled-images"), "--captioner",
        ctx.path("runs", "spac-captioner"), "--out", out, "--shard-size", 256,
        "--recognizers", f"classifier:{ctx.path('runs', 'attribute-recognizer')}",
        "--calibration", ctx.path("runs", "union-calibration.json"), *_workers(ctx))
    m = _manifest(out)
    rate = m.num_rows / (time.perf_counter() - t0)
    return {"output": str(out), "rows": m.num_rows, "id": m.id,
            "note": f"2 generated + 1 prompt caption per image, {rate:.1f} images/s; status {m.status_counts}"}


def stage_filter(ctx: DemoContext) -> dict:
    out = ctx.path("datasets", "synth-filtered")
    cli(ctx, "filter", ctx.path("datasets", "synth-captions"), "--out", out, "--min-images", 3,
        "--min-faithfulness", 0.5, *_workers(ctx))
    m = _manifest(out)
    return {"output": str(out), "rows": m.status_counts.get("ok", 0), "id": m.id,
            "note": f"kept of {m.num_rows}; dropped by reason: "
                    f"{ {k: v for k, v in m.producer['counts'].items() if k in FILTER_REASONS} }"}


FILTER_REASONS = ("unknown-slots", "faithfulness", "faithfulness captions dropped", "gender-vote", "balance")


def stage_card(ctx: DemoContext) -> dict:
    data = ctx.path("datasets", "synth-filtered")
    truth = ctx.path("raw", "luperson-procpedes", "ground-truth.jsonl")  # written by the render, beside the images
    cli(ctx, "card", data, "--truth", truth, *_workers(ctx))
    stats = json.loads((data / "report" / "stats.json").read_text())
    note = f"README.md + report/index.html; {stats['images']} images, {stats['identities']['count']} identities"
    true = stats["ground_truth"].get("synthetic_caption_phrases", {}).get("accuracy")
    if true is not None:
        note += f"; caption phrases true against the ground truth: {100 * true:.1f}%"
    agree = stats["faithfulness"].get("overall", {}).get("agreement")
    if agree is not None:
        note += f"; self-agreement (captions vs the image's own predicted attributes, not the truth): {100 * agree:.1f}%"
    if stats["warnings"]:
        note += f"; card warnings: {', '.join(w['code'] for w in stats['warnings'])}"
    return {"output": str(data / "README.md"), "rows": stats["captions"]["total"], "note": note}


# cpu-small at 128x64 instead of 256x128: ~3x the steps in the same CPU time, and on ProcPedes more steps
# beat more pixels; 40 steps x 32 as plip bench ablation (3 seeds: R1 12.9 +- 4.2 vs 3.6 +- 1.0 without
# pre-training), since 120 steps (~5 epochs of the demo's noisy synthetic captions) scored lower in a run.
# The baseline is scored at the same size.
SMALL_IMAGES = ("--set", "model.image.image_size=[128,64]")


def _batch_for(rows: int, wanted: int) -> int:
    """The demo's batch, halved while the filtered data holds fewer than two batches (a --quick run keeps
    few images: its barely trained recognizer makes gender voting drop many identities)."""
    batch = wanted
    while batch > 4 and rows < 2 * batch:
        batch //= 2
    return batch


def stage_pretrain(ctx: DemoContext) -> dict:
    data, out, s = ctx.path("datasets", "synth-filtered"), ctx.path("runs", "plip"), ctx.sizes
    batch = _batch_for(_manifest(data).status_counts.get("ok", 0), s["plip_batch"])
    cli(ctx, "train", "--data", data, "--out", out, "--config", "cpu-small", "--max-steps", s["plip_steps"],
        *SMALL_IMAGES, "--set", f"data.batch_size={batch}", "--set", f"data.images_per_identity={min(4, batch // 2)}",
        "--set", f"optim.warmup={max(1, s['plip_steps'] // 10)}", "--set", f"optim.milestones=[{s['plip_steps']}]",
        "--set", "data.split=null", "--set", f"train.checkpoint_every={s['plip_steps']}", "--loader-workers", 1)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    return {"output": str(out), "rows": s["plip_steps"],
            "note": f"cpu-small at 128x64, batch {batch}; loss at step {first['step']} -> mean of the last "
                    f"{last['mean_of_steps']} steps: {first['loss']:.2f} -> {last['loss']:.2f}, "
                    f"{last['samples_per_s']:.1f} images/s; loss curves in losses.png"}


def _evaluate(ctx: DemoContext, source: list, name: str) -> dict:
    out = ctx.path("eval", f"{name}.json")
    cli(ctx, "eval", *source, "--data", ctx.path("datasets", "benchmark-test"), "--split", "test",
        "--direction", "t2i", "--out", out)
    return json.loads(out.read_text())["metrics"]["t2i"]


def stage_zero_shot(ctx: DemoContext) -> dict:
    base = _evaluate(ctx, ["--config", "cpu-small", *SMALL_IMAGES], "no-pretraining")
    plip = _evaluate(ctx, ["--checkpoint", ctx.path("runs", "plip")], "plip")
    ctx.results["zero_shot"] = {"baseline": base, "pretrained": plip}
    gain = plip["R1"] - base["R1"]
    verdict = "pre-training beats the baseline" if gain > 2.0 and plip["mAP"] > base["mAP"] else \
        "pre-training does NOT clearly beat the baseline in this run"
    return {"output": str(ctx.path("eval")), "rows": 2,
            "note": f"text-to-image R1/R5/mAP: pre-trained {plip['R1']:.1f}/{plip['R5']:.1f}/{plip['mAP']:.1f} vs "
                    f"no pre-training {base['R1']:.1f}/{base['R5']:.1f}/{base['mAP']:.1f}: {verdict}"}


def stage_validate(ctx: DemoContext) -> dict:
    datasets = sorted(p.parent for p in ctx.path("datasets").glob("*/manifest.json"))
    for d in datasets:
        cli(ctx, "validate", d)
    return {"output": str(ctx.path("datasets")), "rows": len(datasets), "note": "datasets verified (every sha256)"}


STAGES: list[tuple[str, Callable[[DemoContext], dict]]] = [
    ("unlabeled images (LUPerson stand-in)", stage_unlabeled),
    ("captioned corpus (SPAC training)", stage_captioned),
    ("test benchmark (CUHK-PEDES layout)", stage_benchmark),
    ("train attribute recognizer", stage_recognizer),
    ("train SPAC captioner", stage_spac_train),
    ("calibrate the union (plip spac calibrate)", stage_calibrate),
    ("SPAC synthesis (plip synth)", stage_synth),
    ("quality filters (plip filter)", stage_filter),
    ("dataset card (plip card)", stage_card),
    ("PLIP pre-training (plip train)", stage_pretrain),
    ("zero-shot retrieval vs no pre-training (plip eval)", stage_zero_shot),
    ("validate", stage_validate),
]


def run_demo(out: Path, quick: bool = False, workers: int | None = None,
             report: Callable[[str], None] | None = None) -> dict:
    # each stage line as it happens, also when stdout is a file (a batch job's), which Python buffers
    report = report or functools.partial(print, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    rows = []
    from .cluster import dask_client

    with open_log(out / "demo.log") as log, dask_client(workers) as client:
        ctx = DemoContext(out=out, quick=quick, workers=workers, log=log,
                          scheduler=client.scheduler.address if client is not None else None)
        for i, (name, fn) in enumerate(STAGES, 1):
            report(f"[{i}/{len(STAGES)}] {name} ...")
            t0 = time.perf_counter()
            result = fn(ctx)
            result["seconds"] = round(time.perf_counter() - t0, 1)
            ctx.results[name] = result
            rows.append({"stage": name, **result})
            report(f"      done in {result['seconds']} s: {result['output']}")
    filtered = out / "datasets" / "synth-filtered"
    summary = {"out": str(out), "quick": quick, "seconds": round(time.perf_counter() - t_all, 1), "stages": rows,
               "zero_shot": ctx.results.get("zero_shot"), "card": str(filtered / "README.md"),
               "report": str(filtered / "report" / "index.html"), "run": str(out / "runs" / "plip"),
               "contact_sheet": str(out / "contact-sheet.png"), "log": str(out / "demo.log")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def summary_table(summary: dict) -> str:
    head = ["stage", "rows", "seconds", "output", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary["stages"]:
        lines.append("| " + " | ".join(str(row.get(k, "")) for k in head) + " |")
    return "\n".join(lines)

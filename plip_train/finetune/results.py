"""A fine-tune's one report (docs/formats.md#fine-tune-results): the reported checkpoint (selected on validation,
or the last) evaluated once on the test split of the training benchmark and of every ``eval_data`` benchmark."""
from __future__ import annotations

import json
import time
from pathlib import Path

from plip_runtime.runs import read_run_file
from plip_runtime.version import code_version

RESULTS_FILE = "results.json"
RESULTS_FORMAT = "plip-finetune/1"


def report(run_dir: Path, cfg, data_dir, eval_data=(), *, task: str, section, split: str | None,
           direction: str, rerank: bool = False, device=None, batch_size: int = 128,
           history: list[dict] | None = None, train_seconds: float | None = None) -> dict:
    """Evaluate the run's default checkpoint (``plip eval``'s: the selected one, else the last) on ``split`` (None:
    the benchmark's own protocol, query/gallery for image ReID) of ``data_dir`` and of each ``eval_data``; with
    ``rerank`` also with k-reciprocal re-ranking. Writes and returns ``RUN/results.json``."""
    from ..embed import load
    from ..zeroshot import evaluate_dataset

    t0 = time.perf_counter()
    embedder = load(run_dir, device=device, batch_size=batch_size, precision="fp32")
    evaluations = []
    for dataset in open_all([data_dir, *eval_data]):
        result = evaluate_dataset(embedder, dataset, split=split, direction=direction, rerank=rerank)
        evaluations.append({"dataset": dataset_record(dataset), "split": result["split"],
                            "direction": result["direction"], "metrics": result["metrics"][result["direction"]],
                            **({"metrics_reranked": result["metrics_reranked"]} if rerank else {}),
                            "counts": result["counts"], "protocol": result["protocol"]})
    return write_results(run_dir, cfg, embedder, evaluations, task=task, section=section, history=history,
                         seconds={"train": train_seconds, "test": round(time.perf_counter() - t0, 2)})


def open_all(paths) -> list:
    from synth_pedes import open_dataset

    return [open_dataset(path, verify=False) for path in paths]


def dataset_record(dataset) -> dict:
    """How results name a dataset: path, id, name, kind."""
    return {"path": str(dataset.directory), "id": dataset.id, "name": dataset.manifest.name,
            "kind": dataset.manifest.kind}


def write_results(run_dir: Path, cfg, embedder, evaluations: list[dict], *, task: str, section,
                  history: list[dict] | None, seconds: dict) -> dict:
    """``RUN/results.json`` (written atomically) from a fine-tune's evaluations (the training benchmark's first),
    with what every task's report records: the recipe, the initialisation, the training data, the checkpoint and
    how it was chosen, the preprocessing, the times and the code version."""
    run = read_run_file(run_dir)
    settings = section.to_dict()
    doc = {"format": RESULTS_FORMAT, "task": task, "run": str(run_dir),
           "protocol": settings.get("protocol", "finetune"), "loss": settings.get("loss"), "recipe": settings,
           "init": cfg.init, "train_data": {**run["datasets"][0], "split": cfg.data.split, "subset": run.get("subset")},
           "checkpoint": {"path": embedder.info["checkpoint"], "step": embedder.info["step"],
                          "selected_on": (run.get("selected") or {}).get("split"),
                          "selection": run.get("selected"), "validation": history or []},
           "test": evaluations[0], "eval_data": evaluations[1:],
           "preprocessing": {"image_size": list(embedder.image_size), "resize": "bicubic",
                             "mean": list(cfg.data.mean), "std": list(cfg.data.std),
                             "text_max_length": embedder.max_length, "text_pooling": cfg.model.text.pooling},
           "seconds": seconds, "code": code_version()}
    out = Path(run_dir) / RESULTS_FILE
    out.with_suffix(".json.tmp").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    out.with_suffix(".json.tmp").replace(out)
    return doc


def train_and_report(trainer, data_dir, eval_data=(), report=report, **report_kwargs):
    """Fit ``trainer`` (a fine-tune's ``Trainer``), then, once its schedule is done, ``report`` (retrieval's
    :func:`report`, or a task's own) on the main rank; ``(TrainResult, results document or None)``. The trainer is
    closed in every case."""
    from ..distributed import barrier

    try:
        t0 = time.time()
        result = trainer.fit()
        doc = None
        if result.finished and trainer.run.is_main:
            doc = report(trainer.run.directory, trainer.cfg, data_dir, eval_data, device=trainer.env.device,
                         history=getattr(trainer, "history", None), train_seconds=round(time.time() - t0, 2),
                         **report_kwargs)
        barrier(trainer.env)  # the other ranks wait for the report before the process group goes
        return result, doc
    finally:
        trainer.close()


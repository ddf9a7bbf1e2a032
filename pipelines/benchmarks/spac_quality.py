"""What SPAC writes, scored against ProcPedes ground truth (docs/evaluation.md#spac-quality-benchmark).

A training corpus (seed 0, train split) trains the attribute classifier and the ``cpu-small`` captioner for a
fixed step budget each; a fresh test corpus (seed 7, test split: identities never seen in training) goes
through the real annotation path, ``plip synth``'s job in this process with ``classifier:RUN`` as recognizer
and the union of it and the captioner's prefixes calibrated on the training corpus's val identities (``plip spac
calibrate``).
The rows it writes are scored with ``spac.captioner.quality``:

* recognizers: per slot accuracy (exact, and true but possibly less specific) of the classifier alone, the
  captioner's own attribute phrases and the attributes SPAC writes, beside the majority baseline (most
  frequent training value) and the caption-label ceiling (labels mined from the test images' human captions);
* captions, per style and for the prompt caption: phrase precision, recall and hallucinated slots, style
  fidelity (the style classifier trained on the training corpus's human captions), distinct-2 against the
  human references, and whether every caption of a row agrees with the row's attributes.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

# Corpus identities are counted before the split: the train split keeps ~80 % of them, the test split ~10 %.
SIZES = {
    # ~20 CPU-minutes of training on 2 cores: 3,840 training images of 1,280 people (with few people the
    # classifier memorises who is who: docs/evaluation.md#spac-quality-benchmark; rendering more costs nothing)
    "full": {"train_corpus_identities": 1600, "test_corpus_identities": 1000, "images_per_identity": 3,
             "classifier_steps": 400, "captioner_steps": 300},
    "quick": {"train_corpus_identities": 60, "test_corpus_identities": 100, "images_per_identity": 2,
              "classifier_steps": 20, "captioner_steps": 20},
}
TRAIN_SEED, TEST_SEED = 0, 7
# (named config, overrides): tests swap in the tiny ones. cache_frozen: ~1 step/s at batch 64 on a 2-core CPU.
CLASSIFIER = ("default", ["cache_frozen=true"])
CAPTIONER = ("cpu-small", [])
SAMPLES = 10
# the test corpus is annotated once per decoding: greedy (the default) and nucleus sampling (top-p 0.9), which
# trades some phrase precision for the diversity of human captions
DECODINGS = ("greedy", "nucleus")
SOURCES = {  # recognizer rows: key -> what is scored
    "classifier": "attribute classifier alone",
    "captioner": "captioner's own attribute phrases",
    "spac": "SPAC's written attributes",
    "majority": "majority baseline",
    "ceiling": "caption-label ceiling",
}


def _render_corpora(workdir: Path, size: dict) -> tuple[Path, Path, Path]:
    """(train, val, test): the training corpus's train and val identities, and the fresh test corpus."""
    from .synth import _render

    per_id = size["images_per_identity"]
    train, val = (_render(workdir / f"{split}-corpus", size["train_corpus_identities"] * per_id, captions=2,
                          shard_rows=256, per_identity=per_id, seed=TRAIN_SEED, split=split)
                  for split in ("train", "val"))
    test = _render(workdir / "test-corpus", size["test_corpus_identities"] * per_id, captions=2,
                   shard_rows=256, per_identity=per_id, seed=TEST_SEED, split="test")
    return train, val, test


def _timed(fn, *args) -> tuple:
    """(fn's result, wall seconds and the machine's 1-minute load average before and after)."""
    load_before, t0 = os.getloadavg()[0], time.perf_counter()
    result = fn(*args)
    return result, {"seconds": round(time.perf_counter() - t0, 1), "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2)}


def _train_models(train: Path, workdir: Path, size: dict) -> tuple:
    """(classifier run, captioner run, captioner config, training facts)."""
    from plip_runtime.runs import RunOptions
    from spac.captioner.config import load_config as captioner_config
    from spac.captioner.train import train as train_captioner
    from spac.recognizers.classifier import load_config as classifier_config
    from spac.recognizers.train import train_classifier

    options = RunOptions(device="cpu", progress=False)
    rec_cfg = classifier_config(CLASSIFIER[0], [*CLASSIFIER[1], f"train.max_steps={size['classifier_steps']}"])
    rec, rec_time = _timed(train_classifier, rec_cfg, [train], workdir / "classifier", options)
    cap_cfg = captioner_config(CAPTIONER[0], [*CAPTIONER[1], f"train.max_steps={size['captioner_steps']}"])
    cap, cap_time = _timed(train_captioner, cap_cfg, [train], workdir / "captioner", options)
    facts = {"classifier": {"config": CLASSIFIER[0], "steps": rec.end_step, "batch_size": rec_cfg.batch_size,
                            **rec_time, "final_loss": _final_loss(rec.losses)},
             "captioner": {"config": CAPTIONER[0], "steps": cap.end_step, "batch_size": cap_cfg.batch_size,
                           **cap_time, "final_loss": _final_loss(cap.losses)}}
    return rec.run_dir, cap.run_dir, cap_cfg, facts


def _final_loss(losses: list[dict]) -> float | None:
    """The mean total loss of the last 10 steps."""
    return round(statistics.fmean(row["loss"] for row in losses[-10:]), 4) if losses else None


def _calibrate(val: Path, classifier_run: Path, captioner_run: Path) -> tuple[dict, dict]:
    """``plip spac calibrate`` on the training corpus's val identities: (calibration, member accuracies)."""
    from spac.annotator import calibrate_union
    from spac.captioner import load_captioner
    from spac.captioner.quality import read_records

    rows = read_records([val], "val")
    return calibrate_union(load_captioner(captioner_run), (f"classifier:{classifier_run}",), rows,
                           [r["attributes"] for r in rows])


def _annotate(test: Path, workdir: Path, classifier_run: Path, captioner_run: Path,
              calibration: dict | None, decoding: str) -> tuple[dict, dict]:
    """``plip synth --workers 0 --decoding D`` over the test corpus: {key: written row}, and the job's timing."""
    from pipelines.synth_job import run_synth
    from spac.annotator import MODELS, SynthConfig
    from synth_pedes import open_dataset

    config = SynthConfig(captioner=str(captioner_run), recognizers=(f"classifier:{classifier_run}",),
                         calibration=json.dumps(calibration, sort_keys=True) if calibration else "",
                         decoding=decoding)
    out = workdir / f"synth-{decoding}"
    manifest, timing = _timed(lambda: run_synth(test, out, config, shard_rows=256, client=None))
    MODELS.clear()  # the job keeps its models for a next shard; this process has none
    rows = {r["key"]: r for r in open_dataset(out).iter_records(
        columns=["key", "status", "attributes", "captions", "extra"])}
    return rows, {**timing, "rows": manifest.num_rows, "status": dict(manifest.status_counts)}


def _predictions(records: list, written: dict, train_records: list, classifier_run: Path) -> dict[str, list]:
    """Per source in SOURCES, one {slot: phrase} per test record."""
    from spac.captioner.quality import majority_attributes
    from spac.recognizers import create, labels_for_rows

    classifier = create("classifier", checkpoint=str(classifier_run), device="cpu")
    rows = [written[r["key"]] for r in records]
    return {"classifier": [p.attributes.to_dict() for p in classifier.predict(records)],
            "captioner": [_extra(row)["spac"]["captioner_attributes"] for row in rows],
            "spac": [row["attributes"] for row in rows],
            "majority": [majority_attributes(train_records)] * len(records),
            "ceiling": [label.to_dict() for label in labels_for_rows(records)]}


def _extra(row: dict) -> dict:
    return json.loads(row["extra"]) if isinstance(row["extra"], str) else row["extra"]


def _summary(per_slot: dict) -> dict:
    """Mean over slots and the lowest slot, for exact and true wording."""
    out = {}
    for measure in ("exact", "true"):
        values = {slot: row[measure] for slot, row in per_slot.items()}
        low = min(values, key=values.get)
        out[measure] = {"mean": statistics.fmean(values.values()), "min": values[low], "min_slot": low}
    return out


def _captions(records: list, written: dict, cap_cfg, train_records: list, truths: list) -> dict:
    """Phrase, style and diversity scores per generated style and for the prompt captions."""
    from spac.captioner.quality import fit_style_classifier, phrase_scores, reference_captions, style_scores

    by_style: dict[str, list] = {}
    for i, rec in enumerate(records):
        for caption in written[rec["key"]]["captions"]:
            by_style.setdefault(caption["style"], []).append((i, caption["text"]))
    classifier, seen = fit_style_classifier(cap_cfg, train_records)
    styles = style_scores(cap_cfg.styles, by_style, reference_captions(cap_cfg, records), truths, classifier)
    return {"styles": styles, "prompt": phrase_scores(by_style.get("prompt", []), truths),
            "style_classifier_train_captions": seen}


def _agreement(rows: list[dict]) -> dict:
    """Whether the phrases of a row's captions agree with its attributes (the dataset card's faithfulness rule)."""
    from synth_pedes.card.faithfulness import AGREEING, caption_phrases
    from synth_pedes.card.text import judge

    agreeing_rows = phrases = agreeing = 0
    for row in rows:
        verdicts = [judge(phrase, row["attributes"][slot]) in AGREEING for c in row["captions"]
                    for slot, phrase in caption_phrases(c["text"], c["spans"]) if phrase is not None]
        phrases, agreeing = phrases + len(verdicts), agreeing + sum(verdicts)
        agreeing_rows += all(verdicts)
    return {"rows": agreeing_rows / max(len(rows), 1), "phrases": agreeing / phrases if phrases else None}


def _samples(records: list, written: dict, truths: list) -> list[dict]:
    step = max(1, len(records) // SAMPLES)
    return [{"key": rec["key"], "truth": truths[i].attributes, "attributes": written[rec["key"]]["attributes"],
             "captions": {c["style"]: c["text"] for c in written[rec["key"]]["captions"]},
             "references": [c["text"] for c in rec["captions"] if c["kind"] == "human"]}
            for i, rec in list(enumerate(records))[::step][:SAMPLES]]


def slot_table(recognizers: dict) -> str:
    """Per-slot accuracy of every source as Markdown: exact / true wording, in %."""
    slots = list(recognizers["spac"]["slots"])
    lines = ["| slot | " + " | ".join(SOURCES[s] for s in SOURCES) + " | truth unknown |",
             "|---|" + "---|" * (len(SOURCES) + 1)]
    for slot in slots:
        cells = [f"{100 * recognizers[s]['slots'][slot]['exact']:.1f} / "
                 f"{100 * recognizers[s]['slots'][slot]['true']:.1f}" for s in SOURCES]
        unknown = recognizers["spac"]["slots"][slot]["unknown_rate"]
        lines.append(f"| {slot} | " + " | ".join(cells) + f" | {100 * unknown:.1f} |")
    means = [f"{100 * recognizers[s]['summary']['exact']['mean']:.1f} / "
             f"{100 * recognizers[s]['summary']['true']['mean']:.1f}" for s in SOURCES]
    lines.append("| **mean** | " + " | ".join(means) + " | |")
    return "Per-slot accuracy on the test corpus, exact / true wording (%).\n\n" + "\n".join(lines) + "\n"


# --- result rows --------------------------------------------------------------------------------
def _pct(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 1)


def _row(metric: str, value, unit: str, note: str, goal: str | None = None, met: bool = False) -> dict:
    row = {"metric": metric, "value": value, "unit": unit, "note": note}
    if goal is not None:
        row.update({"goal": goal, "pass": bool(met)})
    return row


def _training_rows(training: dict, synth: dict) -> list[dict]:
    out = [_row(f"train {name} ({facts['config']}), {facts['steps']} steps x {facts['batch_size']}",
                facts["seconds"], "s", f"loss, mean of the last 10 steps {facts['final_loss']}; load average {facts['load_before']} "
                                       f"before, {facts['load_after']} after")
           for name, facts in training.items()]
    out.append(_row("SPAC annotation of the test corpus (plip synth, in-process)", synth["seconds"], "s",
                    f"{synth['rows']} rows, status {synth['status']}; load average {synth['load_before']}"))
    return out


def _recognizer_rows(recognizers: dict) -> list[dict]:
    out = []
    for source, name in SOURCES.items():
        summary = recognizers[source]["summary"]
        true, exact = summary["true"], summary["exact"]
        goal = ">= 85 %" if source == "spac" else None
        out.append(_row(f"attributes, {name}: mean per-slot accuracy (true wording)", _pct(true["mean"]), "%",
                        f"exact {_pct(exact['mean'])} %; lowest slot {true['min_slot']} {_pct(true['min'])} %",
                        goal, true["mean"] >= 0.85 if goal else None))
    low = recognizers["spac"]["summary"]["true"]
    out.append(_row(f"attributes, {SOURCES['spac']}: lowest slot (true wording)", _pct(low["min"]), "%",
                    f"slot {low['min_slot']}", ">= 70 %", low["min"] >= 0.70))
    return out


def _caption_rows(captions: dict, agreement: dict, decoding: str) -> list[dict]:
    out = []
    for style, scores in captions["styles"].items():
        style = f"{style} ({decoding})"
        gen, ref = scores["generated"], scores["reference"]
        for measure, goal, met in (("precision", ">= 85 %", lambda x: x >= 0.85),
                                   ("recall", ">= 70 %", lambda x: x >= 0.70),
                                   ("hallucinated", "<= 5 %", lambda x: x <= 0.05)):
            value = gen[measure]
            out.append(_row(f"captions {style}: phrase {measure}", _pct(value), "%",
                            f"human references {_pct(ref.get(measure))} %; {gen['phrases']} phrases",
                            goal, value is not None and met(value)))
        styled = gen["classified_as_style"]
        out.append(_row(f"captions {style}: classified as {style}", _pct(styled), "%",
                        f"human references {_pct(ref['classified_as_style'])} %", ">= 95 %",
                        styled is not None and styled >= 0.95))
        ratio = gen["distinct_2"] / ref["distinct_2"] if ref["distinct_2"] else None
        out.append(_row(f"captions {style}: distinct-2, generated / human references",
                        None if ratio is None else round(ratio, 2), "ratio",
                        f"{gen['distinct_2']:.3f} / {ref['distinct_2']:.3f}", ">= 0.8",
                        ratio is not None and ratio >= 0.8))
    prompt = captions["prompt"]
    out.append(_row(f"captions prompt ({decoding}): phrase precision / recall / hallucinated",
                    f"{_pct(prompt['precision'])} / {_pct(prompt['recall'])} / {_pct(prompt['hallucinated'])}", "%",
                    f"{prompt['phrases']} phrases; template-filled from the written attributes"))
    out.append(_row(f"rows whose every caption agrees with the row's attributes ({decoding})",
                    _pct(agreement["rows"]), "%",
                    f"{_pct(agreement['phrases'])} % of the captions' phrases agree (the dataset card's rule)"))
    return out


def result_rows(details: dict) -> list[dict]:
    return (_training_rows(details["training"], details["synth"]) + _recognizer_rows(details["recognizers"])
            + [row for decoding in details["captions"]
               for row in _caption_rows(details["captions"][decoding], details["agreement"][decoding], decoding)])


def score(workdir: Path, train: Path, test: Path, classifier_run: Path, captioner_run: Path, cap_cfg,
          val: Path | None = None) -> dict:
    """Annotate the test corpus with the trained models (their union calibrated on ``val`` when given) and score
    what SPAC writes: the details of the result (without the training facts)."""
    from spac.captioner.quality import Truth, attribute_accuracy, read_records

    calibration, val_accuracy = _calibrate(val, classifier_run, captioner_run) if val is not None else (None, None)
    runs = {decoding: _annotate(test, workdir, classifier_run, captioner_run, calibration, decoding)
            for decoding in DECODINGS}
    written, synth = runs[DECODINGS[0]]  # the default decoding's rows give the attributes and the samples
    train_records = read_records([train], "train", images=False)
    records = [r for r in read_records([test], "test") if written.get(r["key"], {}).get("status") == "ok"]
    truths = [Truth(r) for r in records]
    recognizers = {}
    for source, predicted in _predictions(records, written, train_records, classifier_run).items():
        per_slot = attribute_accuracy(predicted, truths)
        recognizers[source] = {"slots": per_slot, "summary": _summary(per_slot)}
    return {"train_images": len(train_records), "test_images": len(records), "synth": synth,
            "calibration": {"val_accuracy": val_accuracy, "fitted": calibration},
            "recognizers": recognizers,
            "captions": {d: _captions(records, rows, cap_cfg, train_records, truths) for d, (rows, _) in runs.items()},
            "agreement": {d: _agreement([rows[r["key"]] for r in records]) for d, (rows, _) in runs.items()},
            "samples": _samples(records, written, truths)}


def run(quick: bool, workdir: Path) -> dict:
    size = SIZES["quick" if quick else "full"]
    train, val, test = _render_corpora(workdir, size)
    classifier_run, captioner_run, cap_cfg, training = _train_models(train, workdir, size)
    details = {"sizes": size, "seeds": {"train": TRAIN_SEED, "test": TEST_SEED}, "training": training,
               **score(workdir, train, test, classifier_run, captioner_run, cap_cfg, val)}
    return {"rows": result_rows(details), "table": slot_table(details["recognizers"]), "details": details}

"""``plip finetune text-reid (--init RUN | --config NAME) --data DIR --out RUN``: text-based person ReID.

The official CMPM/C recipe by default (docs/evaluation.md#fine-tuning-protocols): Adan lr 1e-4 wd 0.02, 5 warm-up
epochs, x0.1 at epoch 20, 30 epochs, 32 images per step, one caption per sample, the whole BERT trainable, the
identity classifier at lr x 10. The checkpoint is chosen on the validation split and the test split is reported
once, for it, in RUN/results.json (with every --eval-data benchmark: domain generalisation).
Multi-GPU: ``torchrun --nproc_per_node 4 -m pipelines.cli finetune text-reid ... --batch-size 128``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_training_arguments, check_dataset_dir, print_summary, run_options, training_overrides

# command flags that set a config field (besides the shared training flags)
CONFIG_FLAGS = {"batch_size": "data.batch_size", "loss": "finetune.loss", "protocol": "finetune.protocol",
                "train_fraction": "finetune.train_fraction", "fraction_of": "finetune.fraction_of",
                "fraction_seed": "finetune.fraction_seed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--init", type=Path, default=None, metavar="RUN",
                        help="start from a PLIP run (plip train, plip convert official): its latest complete "
                             "checkpoint, or --step N")
    parser.add_argument("--step", type=int, default=None,
                        help="with --init: this step's checkpoint (default: the run's latest complete one)")
    parser.add_argument("--data", type=Path, required=True,
                        help="an imported benchmark with train, val and test splits (plip import cuhk-pedes|"
                             "icfg-pedes|rstpreid, or plip render)")
    parser.add_argument("--eval-data", type=Path, nargs="+", action="extend", default=[], metavar="DIR",
                        help="more benchmarks whose test split is reported for the selected checkpoint (domain "
                             "generalisation, e.g. train on CUHK-PEDES, evaluate on ICFG-PEDES)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs, "
                                                                  "results.json)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global images per optimizer step, over all ranks (data.batch_size; default 32, the "
                             "official 32 per GPU on one GPU)")
    parser.add_argument("--loss", choices=("cmpm+cmpc", "cmpm"), default=None,
                        help="cmpm+cmpc: the official recipe (default); cmpm: the paper's CMPM-only fine-tune")
    parser.add_argument("--protocol", choices=("finetune", "linear-probe"), default=None,
                        help="finetune: both encoders train (default); linear-probe: frozen encoders, a linear map "
                             "after each is trained")
    parser.add_argument("--select-on", default=None, metavar="SPLIT",
                        help="choose the checkpoint by t2i R1 on SPLIT (default val); 'last': keep the schedule's "
                             "final checkpoint (for data without a validation split, like ICFG-PEDES)")
    fewshot = parser.add_argument_group("few-shot (the subset is written to RUN/subset.json)")
    fewshot.add_argument("--train-fraction", type=float, default=None, metavar="F",
                         help="train on this fraction (0 < F <= 1, default 1) of the training data")
    fewshot.add_argument("--fraction-of", choices=("identities", "images"), default=None,
                         help="identities: F of the identities, all their images (default); images: F of every "
                              "identity's images")
    fewshot.add_argument("--fraction-seed", type=int, default=None, metavar="S",
                         help="which subset (default 0): the same seed picks the same rows")
    add_training_arguments(parser, "start from the initial weights of a config instead of a run (the no-pre-training "
                                   "baseline): cpu-small, tiny, paper-rn50-bert or a JSON file")


def run(args: argparse.Namespace) -> int:
    from plip_train.finetune.results import RESULTS_FILE
    from plip_train.finetune.text_reid import finetune, make_config

    if (args.init is None) == (args.config is None):
        raise ValueError("give one initialisation: --init RUN (a PLIP run) or --config NAME (a config's initial "
                         "weights, the no-pre-training baseline)")
    if args.step is not None and args.init is None:
        raise ValueError("--step selects a checkpoint of the --init run: use it with --init RUN")
    check_dataset_dir("--data", args.data)
    for path in args.eval_data:
        check_dataset_dir("--eval-data", path)
    overrides = training_overrides(args, CONFIG_FLAGS)
    if args.select_on is not None:
        overrides.append(f"finetune.select_on={json.dumps(None if args.select_on == 'last' else args.select_on)}")
    cfg = make_config(init_run=args.init, init_config=args.config, step=args.step, overrides=overrides)
    result, doc = finetune(cfg, args.data, args.out, run_options(args), eval_data=args.eval_data)
    if result.checkpoint is None:  # not the main rank
        return 0
    rows = [("run", args.out), ("init", cfg.init["source"] + (f" step {cfg.init['step']}" if cfg.init["step"]
                                                               is not None else " (initial weights)")),
            ("protocol", f"{cfg.finetune.protocol}, loss {cfg.finetune.loss}"),
            ("steps", f"{result.end_step} of {result.total_steps} ({result.steps} this run)"),
            ("samples/s", f"{result.samples_per_second:.1f}"), *result.loss_rows()]
    if doc is None:
        rows.append(("test", f"not reported yet: the run stops at step {result.end_step}; --resume finishes it"))
    else:
        chosen = doc["checkpoint"]
        how = f"best t2i R1 on {chosen['selected_on']}" if chosen["selected_on"] else "the last (no selection)"
        rows.append(("checkpoint", f"step {chosen['step']} ({how})"))
        for ev in [doc["test"], *doc["eval_data"]]:
            m = ev["metrics"]
            rows.append((f"test {ev['dataset']['name']}", f"t2i R1 {m['R1']:.2f}  R5 {m['R5']:.2f}  R10 {m['R10']:.2f}"
                                                           f"  mAP {m['mAP']:.2f}"))
        rows.append(("results", Path(args.out) / RESULTS_FILE))
    rows.append(("logs", f"{args.out}/metrics.jsonl, {args.out}/tb"))
    print_summary("plip finetune text-reid", rows)
    return 0

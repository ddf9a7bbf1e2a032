"""``plip finetune TASK``: fine-tune a PLIP model on a downstream task, on the pre-training trainer's machinery.

Each task lives in its own module with ``add_arguments`` and ``run``, listed in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_subcommands, add_training_arguments, check_dataset_dir, run_subcommand

# name -> (module, one-line help)
SUBCOMMANDS = {
    "text-reid": ("pipelines.commands.finetune_text_reid",
                  "text-based person ReID: CMPM/C (or CMPM only, or a linear probe) on an imported benchmark, the "
                  "checkpoint selected on val, test reported once"),
    "image-reid": ("pipelines.commands.finetune_image_reid",
                   "image-based person ReID: the BoT recipe (ID + triplet + center loss, BNNeck) on an imported "
                   "Market-1501-style benchmark, query vs gallery reported once"),
    "attributes": ("pipelines.commands.finetune_attributes",
                   "pedestrian attribute recognition: the Rethinking_of_PAR baseline (a linear layer, weighted BCE) "
                   "on an imported PA-100K / PETA / RAP dataset, the checkpoint selected on val mA, test reported "
                   "once"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, SUBCOMMANDS, dest="finetune_task", metavar="TASK")


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args)


# ---- what every task's command shares ----------------------------------------------------------------------
def add_common_arguments(parser: argparse.ArgumentParser, data_help: str, eval_data_help: str,
                         batch_help: str) -> None:
    """``--init RUN [--step N]`` or ``--config NAME``, ``--data``, ``--eval-data``, ``--out``, ``--batch-size`` and
    the shared training flags."""
    parser.add_argument("--init", type=Path, default=None, metavar="RUN",
                        help="start from a PLIP run (plip train, plip convert official): its latest complete "
                             "checkpoint, or --step N")
    parser.add_argument("--step", type=int, default=None,
                        help="with --init: this step's checkpoint (default: the run's latest complete one)")
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    parser.add_argument("--eval-data", type=Path, nargs="+", action="extend", default=[], metavar="DIR",
                        help=eval_data_help)
    parser.add_argument("--out", type=Path, required=True, help="run directory (run.json, checkpoints, logs, "
                                                                  "results.json)")
    parser.add_argument("--batch-size", type=int, default=None, help=batch_help)
    add_training_arguments(parser, "start from the initial weights of a config instead of a run (the no-pre-training "
                                   "baseline): cpu-small, tiny, paper-rn50-bert or a JSON file")


def add_select_on_argument(parser: argparse.ArgumentParser, metric: str, example: str) -> None:
    """``--select-on SPLIT|last``: the split the checkpoint is chosen on (see :func:`select_on_override`)."""
    parser.add_argument("--select-on", default=None, metavar="SPLIT",
                        help=f"choose the checkpoint by {metric} on SPLIT (default val); 'last': keep the schedule's "
                             f"final checkpoint (for data without a validation split, like {example})")


def select_on_override(args: argparse.Namespace, section: str) -> list[str]:
    """The ``--set`` item for ``--select-on`` (none when the flag is not given)."""
    import json

    if args.select_on is None:
        return []
    if args.select_on == "test":
        raise ValueError("--select-on test would choose the checkpoint on the split it reports; choose on a "
                         "validation split (--select-on val, the default) or keep the last (--select-on last)")
    return [f"{section}.select_on={json.dumps(None if args.select_on == 'last' else args.select_on)}"]


def run_task(args: argparse.Namespace, task, config_flags: dict, describe, select_section: str | None = None) -> int:
    """A fine-tune command's whole run: check the arguments, make ``task``'s config (the module
    ``plip_train.finetune.<task>``: its recipe, the flags in ``config_flags``, ``--select-on`` into
    ``select_section``, ``--set``), train and report (validations printed as they come), then the summary, whose
    recipe line is ``describe(cfg)``."""
    from ._common import print_summary, run_options, training_overrides

    check_common_arguments(args)
    overrides = training_overrides(args, config_flags)
    if select_section is not None:
        overrides += select_on_override(args, select_section)
    cfg = task.make_config(init_run=args.init, init_config=args.config, step=args.step, overrides=overrides)
    validation = {"on_validation": print_validation} if select_section is not None else {}
    result, doc = task.finetune(cfg, args.data, args.out, run_options(args), eval_data=args.eval_data, **validation)
    if result.checkpoint is not None:  # the main rank
        print_summary(f"plip finetune {args.finetune_task}", summary_rows(args, cfg, result, doc, describe(cfg)))
    return 0


def check_common_arguments(args: argparse.Namespace) -> None:
    if (args.init is None) == (args.config is None):
        raise ValueError("give one initialisation: --init RUN (a PLIP run) or --config NAME (a config's initial "
                         "weights, the no-pre-training baseline)")
    if args.step is not None and args.init is None:
        raise ValueError("--step selects a checkpoint of the --init run: use it with --init RUN")
    check_dataset_dir("--data", args.data)
    for path in args.eval_data:
        check_dataset_dir("--eval-data", path)


def summary_rows(args: argparse.Namespace, cfg, result, doc: dict | None, recipe: str) -> list[tuple[str, object]]:
    """The summary every fine-tune prints: the run, where it started, the recipe, steps, speed, losses, and the
    reported checkpoint's test figures (or why there are none yet)."""
    from plip_train.finetune.results import RESULTS_FILE

    init = cfg.init["source"] + (f" step {cfg.init['step']}" if cfg.init["step"] is not None else " (initial weights)")
    rows = [("run", args.out), ("init", init), ("recipe", recipe),
            ("steps", f"{result.end_step} of {result.total_steps} ({result.steps} this run)"),
            ("samples/s", f"{result.samples_per_second:.1f}"), *result.loss_rows()]
    if doc is None:
        rows.append(("test", f"not reported yet: the run stops at step {result.end_step}; --resume finishes it"))
    else:
        chosen = doc["checkpoint"]
        how = (f"best {chosen['selection']['metric']} on {chosen['selected_on']}" if chosen["selected_on"]
               else "the last (no selection)")
        rows.append(("checkpoint", f"step {chosen['step']} ({how})"))
        for ev in [doc["test"], *doc["eval_data"]]:
            for label, m in (("", ev["metrics"]), (", re-ranked", ev.get("metrics_reranked"))):
                if m:
                    rows.append((f"test {ev['dataset']['name']} {ev.get('direction', ev['split'])}{label}",
                                 format_metrics(m)))
        rows.append(("results", Path(args.out) / RESULTS_FILE))
    rows.append(("logs", f"{args.out}/metrics.jsonl, {args.out}/tb"))
    return rows


def format_metrics(metrics: dict) -> str:
    """A result's headline figures: retrieval's R1 R5 R10 mAP, or attribute recognition's mA Acc Prec Rec F1."""
    names = ("R1", "R5", "R10", "mAP") if "R1" in metrics else ("mA", "Acc", "Prec", "Rec", "F1")
    return "  ".join(f"{name} {metrics[name]:.2f}" for name in names if name in metrics)


def print_validation(entry: dict) -> None:
    """One line per validation while a fine-tune runs (the library calls back; the command prints)."""
    what = f"{entry['split']}, t2i" if "R1" in entry else entry["split"]
    print(f"validation step {entry['step']} ({what}): {format_metrics(entry)}"
          f"{'  <- selected' if entry['best_so_far'] else ''}", flush=True)


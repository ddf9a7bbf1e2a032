"""``plip finetune TASK``: fine-tune a PLIP model on a downstream task, on the pre-training trainer's machinery.

Each task lives in its own module with ``add_arguments`` and ``run``, listed in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse

from ._common import add_subcommands, run_subcommand

# name -> (module, one-line help)
SUBCOMMANDS = {
    "text-reid": ("pipelines.commands.finetune_text_reid",
                  "text-based person ReID: CMPM/C (or CMPM only, or a linear probe) on an imported benchmark, the "
                  "checkpoint selected on val, test reported once"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, SUBCOMMANDS, dest="finetune_task", metavar="TASK")


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args)

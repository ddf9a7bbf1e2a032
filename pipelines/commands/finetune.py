"""``plip finetune TASK``: fine-tune a PLIP model on a downstream task, on the pre-training trainer's machinery.

Each task lives in its own module with ``add_arguments`` and ``run``, listed in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse
import importlib

# name -> (module, one-line help)
SUBCOMMANDS = {
    "text-reid": ("pipelines.commands.finetune_text_reid",
                  "text-based person ReID: CMPM/C (or CMPM only, or a linear probe) on an imported benchmark, the "
                  "checkpoint selected on val, test reported once"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="finetune_task", metavar="TASK", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
        cmd.set_defaults(_finetune_module=module)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args._finetune_module).run(args)

"""``plip spac SUBCOMMAND``: SPAC's attribute language, recognizers and captioner.

Each subcommand lives in its own module with ``add_arguments`` and ``run``, listed in SUBCOMMANDS.
"""
from __future__ import annotations

import argparse

from ._common import add_subcommands, run_subcommand

# name -> (module, one-line help)
SUBCOMMANDS = {
    "mine-templates": ("pipelines.commands.spac_templates",
                       "turn captions into masked prompt-caption templates with the phrase extractor"),
    "train-recognizer": ("pipelines.commands.spac_recognizer",
                         "train the attribute classifier (one head per slot) on captioned datasets"),
    "eval-recognizer": ("pipelines.commands.spac_recognizer_eval",
                        "per-slot accuracy and mA of a recognizer on a dataset with ground truth"),
    "calibrate": ("pipelines.commands.spac_calibrate",
                  "fit the union of recognizers and captioner prefixes on a validation split (plip synth --calibration)"),
    "train": ("pipelines.commands.spac_train",
              "train the stylised prefix captioner (attributes + one caption per style) on captioned datasets"),
    "caption": ("pipelines.commands.spac_caption",
                "caption images with a trained captioner (six attributes + one caption per style), or evaluate it"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, SUBCOMMANDS, dest="spac_command", metavar="SUBCOMMAND")


def run(args: argparse.Namespace) -> int:
    return run_subcommand(args)

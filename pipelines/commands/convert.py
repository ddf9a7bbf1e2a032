"""``plip convert official CHECKPOINT --out RUN``: the released PLIP checkpoint as a run directory.

``PLIP_MRN50.pth.tar`` (ModifiedResNet-50 + attention pool at 256x128, bert-base-uncased + pooler) is read with
``torch.load(weights_only=True)``, mapped onto the PLIP model, checked strictly and written as
``RUN/checkpoints/step-000000/model.safetensors`` + ``RUN/run.json``, so ``plip eval --checkpoint RUN`` and
``plip embed --checkpoint RUN`` use it with the official evaluation protocol.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import print_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    off = sub.add_parser("official", help="the released PLIP checkpoint (PLIP_MRN50.pth.tar)",
                         description="Convert the released PLIP checkpoint (keys ImgEncoder_state_dict, "
                                     "TxtEncoder_state_dict) into a run directory for plip eval / plip embed.")
    off.add_argument("checkpoint", type=Path, help="the official checkpoint file, e.g. PLIP_MRN50.pth.tar")
    off.add_argument("--out", type=Path, required=True, help="the run directory to create (new or empty)")
    off.add_argument("--bert-dir", type=Path, default=None,
                     help="a local bert-base-uncased directory to take the tokenizer vocabulary from (default: the "
                          "shipped BERT-uncased vocabulary, the same 30,522 tokens)")
    off.add_argument("--config", default="paper-rn50-bert",
                     help="the pre-training config of the checkpoint's model (default paper-rn50-bert; text.pooling "
                          "is set to pooler)")
    off.add_argument("--trust-pickle", action="store_true",
                     help="if the file pickles objects other than tensors, load it anyway with weights_only=False "
                          "(this can run code from the file: only for a file from a trusted source)")


def run(args: argparse.Namespace) -> int:
    from plip_train.convert import convert_official

    t0 = time.perf_counter()
    res = convert_official(args.checkpoint, args.out, config=args.config, bert_dir=args.bert_dir,
                           trust_pickle=args.trust_pickle)
    dropped = res["dropped"]
    print_summary("plip convert official", [
        ("source", f"{args.checkpoint} (sha256 {res['sha256'][:16]}..., epoch {res['epoch']})"),
        ("model", f"config {res['config']} (model {res['model']}, text pooling: pooler), {res['tensors']} tensors, "
                  f"{res['parameters'] / 1e6:.1f} M parameters, strict load OK"),
        ("not converted", ", ".join(dropped["top_level"] + dropped["text_keys"]) or "nothing"),
        ("seconds", f"{time.perf_counter() - t0:.1f}"),
        ("run", res["run"]), ("checkpoint", res["checkpoint"])])
    return 0

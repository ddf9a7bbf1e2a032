"""``plip synth``: SPAC caption synthesis over an image dataset, on a Dask cluster."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..cluster import DEFAULT_WORKERS_PER_GPU
from ._common import (add_cluster_arguments, add_device_argument, add_precision_argument, add_shard_arguments,
                      check_captioner_dir, check_dataset_dir, close_progress, deprecated_alias, deprecated_help,
                      int_at_least, print_summary, recognizer_specs, resolved_device, shard_sizes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=Path, help="input image dataset (manifest + shards)")
    data.add_argument("--images", dest="data", type=Path, action=deprecated_alias("--data"),
                      help=deprecated_help("--data"))
    parser.add_argument("--captioner", type=captioner_argument, required=True, metavar="DIR|vlm:DIR",
                        help="SPAC captioner checkpoint (plip spac train), or vlm:DIR, a local Hugging Face "
                             "vision-language model directory (Qwen2-VL, SmolVLM / Idefics3, LLaVA ...: loadable with "
                             "transformers' AutoModelForImageTextToText; nothing is downloaded)")
    parser.add_argument("--out", type=Path, required=True, help="output caption dataset (new, or an unfinished run)")
    parser.add_argument("--recognizers", default="",
                        help="attribute recognizers, comma-separated, e.g. classifier:runs/rec (default: the "
                             "captioner's own attribute prefixes)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="union calibration JSON from plip spac calibrate: the captioner's attribute prefixes "
                             "join --recognizers and every slot takes the phrase most likely right")
    parser.add_argument("--prompt-captions", type=int, default=1, help="prompt captions per image (default 1)")
    vlm = parser.add_argument_group("vision-language captioner (--captioner vlm:DIR)")
    vlm.add_argument("--vlm-styles", type=int_at_least(1), default=2,
                     help="captions per image, one per style: each style's instruction shows one template of the "
                          "library, drawn per image by --seed (default 2)")
    vlm.add_argument("--engine", choices=("transformers", "vllm"), default="transformers",
                     help="transformers (default: batched generate, any device) or vllm (its offline batch API, on a "
                          "GPU node where vLLM is installed)")
    vlm.add_argument("--max-new-tokens", type=int_at_least(1), default=64,
                     help="the longest caption, in tokens (default 64)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model batch (default 32)")
    parser.add_argument("--decoding", choices=("greedy", "beam", "nucleus"), default="greedy",
                        help="how the captioner picks words: greedy (default), beam search (a SPAC captioner "
                             "only), or nucleus sampling (seeded by --seed)")
    add_device_argument(parser, "; cuda uses all GPUs (see --workers-per-gpu). auto is resolved on this machine: "
                                "name cuda to use the GPUs of a --scheduler cluster")
    parser.add_argument("--workers-per-gpu", type=int, default=None,
                        help=f"with --device cuda and no --workers: Dask workers sharing each GPU, so their CPU "
                             f"work overlaps its kernels (default {DEFAULT_WORKERS_PER_GPU}, at most one per core)")
    add_precision_argument(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random choices (prompt-caption templates, nucleus sampling); the same "
                             "seed gives the same captions (default 0)")
    parser.add_argument("--retries", type=int, default=2, help="attempts per failed shard before it is reported")
    parser.add_argument("--name", default=None, help="dataset name (default: <input name>-spac, or -vlm for a "
                                                     "vision-language captioner)")
    add_shard_arguments(parser, "1024", old_spelling=False)  # its --shard-size was rows
    add_cluster_arguments(parser)


def captioner_argument(text: str) -> Path | str:
    """``--captioner``: a SPAC checkpoint as a Path (made absolute with every path argument), or ``vlm:DIR`` with
    DIR made absolute here, for the same reason: workers elsewhere would read a relative DIR against their own
    directory."""
    if text.startswith("vlm:"):
        return f"vlm:{Path(text[len('vlm:'):]).absolute()}" if text[len("vlm:"):] else text
    return Path(text)


def read_calibration(path: Path | None, recognizers: tuple) -> str:
    """``--calibration FILE`` as canonical JSON text (it is part of the output's identity), checked against the
    union it will calibrate: the --recognizers and the captioner."""
    if path is None:
        return ""
    from spac.recognizers.prefixes import LABEL
    from spac.recognizers.union import load_calibration, member_labels

    if not recognizers:
        raise ValueError("--calibration needs --recognizers: it weighs them against the captioner's prefixes")
    labels = member_labels([spec.partition(":")[0] for spec in recognizers] + [LABEL])
    return json.dumps(load_calibration(path, labels), sort_keys=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from spac.annotator import SynthConfig

    from ..cluster import dask_client, default_job_workers
    from ..progress import ShardProgress
    from ..synth_job import run_synth, threads_per_worker

    check_dataset_dir("--data", args.data)
    if isinstance(args.captioner, str):  # vlm:DIR
        from spac.vlm import vlm_directory

        from spac.vlm.model_dir import load_processor

        if args.decoding == "beam":
            raise ValueError("--decoding beam is for a SPAC captioner; a vision-language captioner decodes greedy or "
                             "nucleus (--decoding greedy|nucleus)")
        load_processor(vlm_directory(args.captioner))  # before any work: what the directory holds, and that it loads
        if args.engine == "vllm":
            from spac.vlm.vllm_engine import require_vllm

            require_vllm()  # here, not in every worker's first shard
    else:
        args.captioner = str(check_captioner_dir("--captioner", Path(args.captioner)).resolve())
    if args.device.startswith("cuda") and not torch.cuda.is_available() and args.scheduler is None:
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu, or "
                         "--scheduler to run on a cluster with GPUs)")
    device = args.device if args.scheduler and args.device != "auto" else resolved_device(args)
    workers = args.workers
    if workers is None and args.scheduler is None:
        workers = default_job_workers(device, args.workers_per_gpu or DEFAULT_WORKERS_PER_GPU)
    recognizers = recognizer_specs(args.recognizers)
    config = SynthConfig(captioner=args.captioner, recognizers=recognizers,
                         calibration=read_calibration(args.calibration, recognizers),
                         prompt_captions=args.prompt_captions, batch_size=args.batch_size, decoding=args.decoding,
                         device=device, precision=args.precision, seed=args.seed, vlm_styles=args.vlm_styles,
                         engine=args.engine, max_new_tokens=args.max_new_tokens,
                         threads=threads_per_worker(workers or 1) if args.scheduler is None else None)
    t0 = time.perf_counter()
    progress = ShardProgress("synth")
    with dask_client(workers, args.scheduler, args.worker_timeout, shared=[args.data, args.out]) as client:
        shard_rows, shard_bytes = shard_sizes(args)
        manifest = run_synth(args.data, args.out, config, shard_rows=shard_rows, shard_bytes=shard_bytes, client=client,
                             retries=args.retries, name=args.name, on_progress=progress)
    if close_progress(progress, args.out, manifest):
        return 0
    seconds = time.perf_counter() - t0
    print_summary(f"{'VLM' if config.vlm else 'SPAC'} captions for {args.data}", [
        ("dataset", args.out), ("id", manifest.id), ("parent", manifest.parents[0]), ("rows", manifest.num_rows),
        ("status", ", ".join(f"{k}={v}" for k, v in manifest.status_counts.items())),
        ("files", len(manifest.shards)),
        ("time", f"{seconds:.1f} s ({manifest.num_rows / max(seconds, 1e-9):.1f} images/s, "
                 f"{progress.skipped} shards resumed)")])
    return 0

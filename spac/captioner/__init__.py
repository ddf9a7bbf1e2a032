"""SPAC's stylised prefix captioner (paper App. A.5.1, Table 12; docs/reimplementation.md#prefix-captioner).

An image backbone + FPN feeds six attribute branches (3 prefix tokens each) and a sentence branch
(5 tokens); m linear style encoders turn the 23 concatenated prefix tokens into one prefix per
caption style; one shared GPT-2-architecture decoder generates the six attribute phrases and one
caption per style.

    from plip_runtime.runs import RunOptions
    from spac.captioner import load_config, train, load_captioner
    cfg = load_config("cpu-small", ["train.max_steps=200"])
    train(cfg, ["data/procpedes"], "runs/spac", RunOptions(device="auto"))
    captioner = load_captioner("runs/spac")
    for r in captioner.caption(["person.jpg"]):
        print(r.attributes, r.captions, r.error)

Modules: ``config`` (CaptionerConfig, shipped JSON configs), ``tokenizer``, ``backbone`` (ResNet-101 /
EfficientNet-Lite0 / tiny + FPN), ``model`` (SpacCaptioner), ``data`` (datasets -> batches),
``train``, ``checkpoint``, ``generate`` (greedy / beam / nucleus with a KV cache), ``quality``
(attribute accuracy, phrase precision/recall, style fidelity, diversity), ``speed``.
"""
from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from .config import CaptionerConfig, list_configs, load_config
from .generate import CaptionResult, Captioner, DecodingOptions, generate_tokens, load_captioner
from .model import SpacCaptioner, count_parameters
from .tokenizer import CaptionTokenizer
from .train import train

__all__ = ["CaptionerConfig", "list_configs", "load_config", "CaptionTokenizer", "SpacCaptioner",
           "count_parameters", "train", "CheckpointError", "find_checkpoint", "load_checkpoint",
           "save_checkpoint", "DecodingOptions", "generate_tokens", "CaptionResult", "Captioner", "load_captioner"]

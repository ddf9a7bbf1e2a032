"""Embeddings from a PLIP model: a training run, a converted official checkpoint, or a config's initial weights.

    from plip_train import embed
    enc = embed.load("runs/plip")                        # the run's latest complete checkpoint
    img = enc.encode_image(["a.jpg", "b.jpg"])           # (2, D) float32 on CPU, unit L2 norm
    txt = enc.encode_text(["a woman in a red coat"])     # (1, D)
    scores = txt @ img.T                                 # cosine similarities
    base = embed.from_config("cpu-small")                # the "no pre-training" baseline (ImageNet / MiniLM)

Preprocessing is the evaluation protocol of the official PLIP code (docs/evaluation.md#preprocessing), with the
run's own settings: decode, RGB, resize to the config's ``image_size`` (256x128) bicubic, scale to [0, 1], normalise
with the run's ``data.mean``/``data.std`` (SYNTH-PEDES by default), no flip. The full image is resized (training may
decode large JPEGs at a reduced DCT scale first; evaluation does not, so paths, bytes and PIL images give the same
tensor). Text: the config's WordPiece tokenizer, padded and truncated to ``text.max_length`` (64), as in training.
Embeddings are ``x / (||x|| + 1e-12)``, computed in eval mode under ``torch.no_grad``, returned on the CPU.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from plip_runtime.device import autocast, resolve_device, resolve_precision, tune_for_speed
from PIL import Image

from plip_runtime.runs import checkpoint_step, read_run_file, resolve_checkpoint
from synth_pedes.imaging import open_rgb, to_rgb

from .checkpoint import load_module
from .config import PlipConfig, load_config
from .data.transforms import ImageTransform

ImageItem = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


def normalise(x: torch.Tensor) -> torch.Tensor:
    """``x / (||x|| + 1e-12)`` row-wise, as the official evaluation script does."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-12)


class Embedder:
    """A PLIP model in eval mode with its preprocessing; ``encode_image`` / ``encode_text`` give unit vectors.

    ``info`` says where the weights come from: ``description``, ``run``, ``checkpoint`` (path), ``step``,
    ``config`` (name), ``model`` (model config name), ``dataset`` (what the run was trained on, or None).
    """

    def __init__(self, model: torch.nn.Module, cfg: PlipConfig, info: dict, *, device=None, batch_size: int = 128,
                 precision: str = "fp32", decode_threads: int | None = None):
        from .models import build_tokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = cfg
        self.info = info
        self.device = resolve_device(device)
        tune_for_speed(self.device)
        self.batch_size = int(batch_size)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = bool(cfg.train.channels_last)  # as trained; ~1.8x faster for cpu-small on CPU
        self.model = model.to(self.device).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.embed_dim = int(cfg.model.embed_dim)
        self.image_size = tuple(int(v) for v in cfg.model.image.image_size)  # (H, W)
        self.transform = ImageTransform(self.image_size, cfg.data.mean, cfg.data.std)
        self.tokenizer = build_tokenizer(cfg.model.text)
        self.max_length = int(cfg.model.text.max_length)
        self.decode_threads = decode_threads if decode_threads is not None else min(4, os.cpu_count() or 1)

    def __repr__(self) -> str:
        return (f"Embedder({self.info.get('description')!r}, dim={self.embed_dim}, image_size={self.image_size}, "
                f"device={self.device}, precision={self.precision})")

    # ---- preprocessing ---------------------------------------------------------------------------
    def _decode(self, item: ImageItem, where: str) -> Image.Image:
        try:
            if isinstance(item, Image.Image):
                return to_rgb(item)
            if isinstance(item, (str, os.PathLike)):
                with open(item, "rb") as f:  # the same decoder as for bytes: identical tensors
                    item = f.read()
            if isinstance(item, (bytes, bytearray, memoryview)):
                return open_rgb(item)
        except OSError as e:
            raise ValueError(f"image {where} could not be read: {e}") from e
        raise TypeError(f"image {where}: expected a file path, bytes or a PIL image, got {type(item).__name__}")

    def preprocess_one(self, item: ImageItem, where: str = "") -> torch.Tensor:
        """One image (path, bytes or PIL image) -> the normalised (3, H, W) float32 tensor the model sees."""
        h, w = self.image_size
        img = self._decode(item, where or repr(item)[:80]).resize((w, h), Image.BICUBIC)
        return self.transform._normalise(np.asarray(img, np.float32).transpose(2, 0, 1))

    def preprocess(self, images: Sequence[ImageItem], start: int = 0) -> torch.Tensor:
        """Images -> a (N, 3, H, W) float32 batch (decoded on ``decode_threads`` threads)."""
        where = [f"#{start + i}" + (f" ({x})" if isinstance(x, (str, os.PathLike)) else "")
                 for i, x in enumerate(images)]
        if self.decode_threads > 1 and len(images) > 1:
            with ThreadPoolExecutor(self.decode_threads) as pool:
                tensors = list(pool.map(self.preprocess_one, images, where))
        else:
            tensors = [self.preprocess_one(x, w) for x, w in zip(images, where)]
        return torch.stack(tensors) if tensors else torch.empty((0, 3, *self.image_size))

    def _check_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or not x.is_floating_point() or tuple(x.shape[1:]) != (3, *self.image_size):
            raise ValueError(f"a preprocessed image batch must be a float tensor (N, 3, {self.image_size[0]}, "
                             f"{self.image_size[1]}) normalised with mean {list(self.transform.mean.ravel())} "
                             f"and std {list(self.transform.std.ravel())}, got {x.dtype} {tuple(x.shape)}; pass "
                             "file paths, bytes or PIL images to have them preprocessed")
        return x

    # ---- encoding --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor | ImageItem | Iterable[ImageItem], normalize: bool = True) -> torch.Tensor:
        """(N, D) unit-norm float32 CPU embeddings of images: file paths, bytes, PIL images (mixed is fine), or a
        float tensor batch already preprocessed (see :meth:`preprocess`). Batched by ``batch_size``.
        ``normalize=False``: the features as the model outputs them (what a classifier on top was trained on)."""
        if isinstance(images, torch.Tensor):
            batch = self._check_batch(images)
            chunks = (batch[i:i + self.batch_size] for i in range(0, batch.shape[0], self.batch_size))
        else:
            if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
                images = [images]
            items = list(images)
            chunks = (self.preprocess(items[i:i + self.batch_size], i) for i in range(0, len(items), self.batch_size))
        out = [self._encode_image_batch(c, normalize) for c in chunks]
        return torch.cat(out) if out else torch.empty((0, self.embed_dim))

    def _encode_image_batch(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            emb = self.model.encode_image(x).float()
        return (normalise(emb) if normalize else emb).cpu()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (N, max_length), padded and truncated as in training."""
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}

    @torch.no_grad()
    def encode_text(self, texts: str | Iterable[str]) -> torch.Tensor:
        """(N, D) unit-norm float32 CPU embeddings of captions. Batched by ``batch_size``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"encode_text takes strings; item #{bad[0]} is {type(texts[bad[0]]).__name__}")
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenize(texts[i:i + self.batch_size])
            with autocast(self.device, self.precision):
                emb = self.model.encode_text(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            out.append(normalise(emb.float()).cpu())
        return torch.cat(out) if out else torch.empty((0, self.embed_dim))


# ---- constructors ----------------------------------------------------------------------------------------
def load(run_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | int | None = None, device=None,
         batch_size: int = 128, precision: str = "fp32") -> Embedder:
    """The model of a run directory (``plip train --out RUN`` or ``plip convert official ... --out RUN``): its
    ``run.json`` config and ``checkpoint``'s ``model.safetensors`` (default: the run's latest complete checkpoint),
    loaded strictly. ``device`` defaults to CUDA when available; ``precision`` fp32 | bf16 | fp16 | auto."""
    from .models import build_model

    run_dir, path = resolve_checkpoint(run_dir, checkpoint)
    if run_dir is None:
        raise FileNotFoundError(f"{path}: a checkpoint directory without its run; pass the run directory (its "
                                "run.json holds the model's config)")
    run = read_run_file(run_dir)
    if "config" not in run:
        raise ValueError(f"{run_dir}/run.json has no 'config'; the run directory is damaged")
    cfg = run_config(run)
    model = build_model(cfg.model, load_pretrained=False)
    load_module(model, path / "model.safetensors")
    step = checkpoint_step(path)
    datasets = run["datasets"]
    info = {"description": f"{run_dir} step {step}", "run": str(run_dir), "checkpoint": str(path), "step": step,
            "config": cfg.name, "model": cfg.model.name, "dataset": datasets[0] if len(datasets) == 1 else
            (datasets or None)}
    if run.get("converted_from"):
        info["converted_from"] = run["converted_from"]
    return Embedder(model, cfg, info, device=device, batch_size=batch_size, precision=precision)


def run_config(run: dict):
    """The config of a run holding a PlipModel: a pre-training ``PlipConfig``, or a fine-tune's (``TextReidConfig``,
    ``ImageReidConfig``, ``AttributesConfig``): all have the ``model``, ``data`` and ``train`` sections an
    :class:`Embedder` reads."""
    kind = run.get("kind", "")
    if kind.startswith("plip-") and kind != "plip-pretrain":
        from .finetune.config import TASKS

        return TASKS[kind.removeprefix("plip-")][0].from_dict(run["config"])
    return PlipConfig.from_dict(run["config"])


def from_config(name_or_path: str | os.PathLike | PlipConfig, overrides: list[str] | None = None, *, device=None,
                batch_size: int = 128, precision: str = "fp32") -> Embedder:
    """The initial weights of a config (a shipped name, a JSON file or a ``PlipConfig``): the pretrained weights it
    names (e.g. cpu-small: ImageNet EfficientNet-Lite0 + MiniLM), random init elsewhere (seeded with
    ``train.seed``, so it is reproducible). The "no pre-training" baseline."""
    from .models import build_model

    cfg = name_or_path if isinstance(name_or_path, PlipConfig) else load_config(name_or_path, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, load_pretrained=True)
    info = {"description": f"initial weights of config {cfg.name}", "run": None, "checkpoint": None, "step": None,
            "config": cfg.name, "model": cfg.model.name, "dataset": None}
    return Embedder(model, cfg, info, device=device, batch_size=batch_size, precision=precision)

"""Training data: captioned datasets -> tokenised examples -> deterministic, resumable batches.

One example per image (``status == "ok"``, the requested split, at least one usable human caption):

* its JPEG bytes (decoded per batch; kept in memory: ~10 KB per person crop, so CUHK-PEDES +
  ICFG-PEDES, ~70k images, take well under 1 GB);
* six attribute targets, from ``spac.phrases`` on all of the image's human captions (the most
  specific phrase per slot, ``unknown`` where no caption names the slot), or from the dataset's
  ``attributes`` column (``attribute_source: "dataset"``);
* its captions, each with the style encoder that learns it: ``by-style`` maps the caption's style
  name (or, when empty, the record's ``source``) to its index in ``config.styles`` and skips other
  styles; ``by-position`` gives caption j of the image to style encoder j (j < m).

Batch order is a permutation of the examples per epoch drawn from ``(seed, epoch)``, and the flip of
every image is drawn from ``(seed, epoch, index)``, so the data position is just
``(epoch, batches done)`` and a resumed run sees exactly the batches the uninterrupted run would,
with any number of loader workers.
"""
from __future__ import annotations

import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from synth_pedes.schema import SLOTS, UNKNOWN

from .config import CaptionerConfig
from .tokenizer import CaptionTokenizer

_log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_COLUMNS = ["key", "split", "source", "image", "attributes", "captions", "status"]


# --- images -----------------------------------------------------------------------------------
def open_image(src):
    """A PIL RGB image from bytes, a path or a PIL image; raises ValueError saying why it failed."""
    from PIL import Image, UnidentifiedImageError

    from synth_pedes.imaging import open_rgb, to_rgb

    if isinstance(src, Image.Image):
        img = to_rgb(src)
    else:
        try:
            img = open_rgb(src)
        except FileNotFoundError:
            raise ValueError(f"no such file: {src}") from None
        except UnidentifiedImageError:
            raise ValueError("cannot decode image: not a recognised image format") from None
        except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
            raise ValueError(f"cannot decode image: {e}") from None
    if img.width < 1 or img.height < 1:
        raise ValueError(f"empty image ({img.width}x{img.height})")
    return img


def image_tensor(src, image_size: tuple[int, int], flip: bool = False) -> torch.Tensor:
    """Decode, resize to (H, W), optionally flip, normalise with the ImageNet mean/std: (3, H, W)."""
    from PIL import Image

    img = open_image(src).resize((image_size[1], image_size[0]), Image.BILINEAR)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


# --- examples ---------------------------------------------------------------------------------
@dataclass
class Example:
    key: str
    image: bytes
    attributes: dict  # slot -> phrase (the target text)
    attribute_ids: list  # 6 token-id lists, in SLOTS order
    captions: list  # [(style index, text)]
    caption_ids: list  # [(style index, token ids)]


@dataclass
class Corpus:
    """The training examples of one or more datasets, and where they came from."""

    examples: list
    datasets: list  # [{"path", "id", "name", "images", "captions"}]
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def token_ids(self) -> set:
        """Every token id of every target (for the vocabulary shortlist)."""
        ids: set = set()
        for ex in self.examples:
            for t in ex.attribute_ids:
                ids.update(t)
            for _, t in ex.caption_ids:
                ids.update(t)
        return ids


def caption_style_index(cfg: CaptionerConfig, caption: dict, record: dict, position: int) -> int | None:
    """Which style encoder learns this human caption (None: not used)."""
    if cfg.style_assignment == "by-position":
        return position if position < cfg.num_styles else None
    name = caption.get("style") or record.get("source") or ""
    return cfg.styles.index(name) if name in cfg.styles else None


def _attribute_targets(cfg: CaptionerConfig, record: dict, spans: list) -> dict:
    if cfg.attribute_source == "dataset":
        attrs = record.get("attributes")
        if not attrs:
            raise ValueError(f"record {record['key']!r} has no attributes column value; use "
                             "attribute_source \"captions\" for this dataset")
        return {s: (attrs.get(s) or UNKNOWN) for s in SLOTS}
    from spac.phrases import attributes_from_spans

    return attributes_from_spans([sp for per_text in spans for sp in per_text]).to_dict()


def load_corpus(dirs: Sequence[str | os.PathLike], cfg: CaptionerConfig, tokenizer: CaptionTokenizer,
                split: str | None = "train", limit: int | None = None, verify: bool | str = "quick") -> Corpus:
    """Training examples of ``split`` (None: all) from the datasets in ``dirs``, in dataset order."""
    from synth_pedes import open_dataset

    from spac.phrases import extract_many

    examples, infos = [], []
    style_counts: Counter = Counter()
    seen_styles: Counter = Counter()
    skipped_images = 0
    for d in dirs:
        ds = open_dataset(d, verify=verify)
        n_img = n_cap = 0
        pending: list[tuple[dict, list, list]] = []  # (record, [(style, text)] used, all human texts)
        for rec in ds.iter_records(columns=_COLUMNS, status="ok"):
            if split is not None and rec["split"] != split:
                continue
            if limit is not None and len(examples) + len(pending) >= limit:
                break
            human = [c for c in rec["captions"] or [] if c["kind"] == "human" and c["text"].strip()]
            seen_styles.update(c["style"] or rec["source"] for c in human)
            usable = [(caption_style_index(cfg, c, rec, j), c["text"]) for j, c in enumerate(human)]
            usable = [(s, t) for s, t in usable if s is not None]
            if not usable or rec["image"] is None:
                skipped_images += 1
                continue
            pending.append((rec, usable, [c["text"] for c in human]))
        spans = extract_many([t for _, _, texts in pending for t in texts]) \
            if cfg.attribute_source == "captions" else None
        pos = 0
        for rec, usable, texts in pending:
            per_image = spans[pos:pos + len(texts)] if spans is not None else []
            pos += len(texts)
            attrs = _attribute_targets(cfg, rec, per_image)
            examples.append(Example(key=rec["key"], image=rec["image"]["bytes"], attributes=attrs,
                                    attribute_ids=[], captions=usable, caption_ids=[]))
            style_counts.update(cfg.styles[s] for s, _ in usable)
            n_img += 1
            n_cap += len(usable)
        infos.append({"path": str(Path(d).resolve()), "id": ds.id, "name": ds.manifest.name,
                      "images": n_img, "captions": n_cap})
    if not examples:
        raise ValueError(f"no training examples in {[str(d) for d in dirs]} (split {split!r}): no ok image has a "
                         f"human caption of the styles {list(cfg.styles)} (style_assignment "
                         f"{cfg.style_assignment!r}); the data's caption styles are {dict(seen_styles)}")
    _tokenize(examples, cfg, tokenizer)
    unknown = {s: sum(ex.attributes[s] == UNKNOWN for ex in examples) / len(examples) for s in SLOTS}
    stats = {"images": len(examples), "captions_per_style": dict(style_counts), "skipped_images": skipped_images,
             "data_styles": dict(seen_styles), "unknown_rate": {k: round(v, 3) for k, v in unknown.items()}}
    _log.info("training corpus: %s", stats)
    return Corpus(examples, infos, stats)


def _tokenize(examples: list[Example], cfg: CaptionerConfig, tok: CaptionTokenizer) -> None:
    attr = tok.encode_many([ex.attributes[s] for ex in examples for s in SLOTS], cfg.max_attribute_tokens)
    caps = tok.encode_many([t for ex in examples for _, t in ex.captions], cfg.max_caption_tokens)
    a = c = 0
    for ex in examples:
        ex.attribute_ids = attr[a:a + len(SLOTS)]
        a += len(SLOTS)
        ex.caption_ids = [(s, caps[c + j]) for j, (s, _) in enumerate(ex.captions)]
        c += len(ex.captions)


# --- batches ----------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def flip_of(seed: int, epoch: int, index: int, p: float) -> bool:
    return p > 0 and random.Random(f"{seed}:{epoch}:{index}").random() < p


def steps_per_epoch(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


class EpochBatches(torch.utils.data.Sampler):
    """Batches of ``(index, flip)`` of one epoch, starting after ``start`` batches (for resuming)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, hflip: float, start: int = 0):
        self.n, self.bs, self.seed, self.epoch, self.hflip, self.start = n, batch_size, seed, epoch, hflip, start

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        order = epoch_order(self.n, self.seed, self.epoch)
        for b in range(self.start, len(self)):
            idx = order[b * self.bs:(b + 1) * self.bs]
            yield [(i, flip_of(self.seed, self.epoch, i, self.hflip)) for i in idx]

    def __len__(self) -> int:
        return steps_per_epoch(self.n, self.bs)


class CorpusDataset(torch.utils.data.Dataset):
    """Map-style view of a corpus; items are addressed by ``(index, flip)``."""

    def __init__(self, corpus: Corpus, image_size: tuple[int, int]):
        self.corpus, self.image_size = corpus, image_size

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, item: tuple[int, bool]) -> dict:
        i, flip = item
        ex = self.corpus.examples[i]
        return {"image": image_tensor(ex.image, self.image_size, flip), "attribute_ids": ex.attribute_ids,
                "caption_ids": ex.caption_ids}


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if seqs else 1), pad_id, dtype=torch.long)
    for r, s in enumerate(seqs):
        out[r, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def condition_ids(attribute_ids: Sequence[Sequence[int]], per_slot: int, eos_id: int) -> list[int]:
    """The attribute condition of one image's captions: each slot's phrase tokens (up to END) cut or padded with
    END to ``per_slot``, slot after slot. Fixed places per slot, so the decoder needs no separator or mask."""
    out: list[int] = []
    for ids in attribute_ids:
        ids = list(ids)
        ids = ids[:ids.index(eos_id)] if eos_id in ids else ids
        out += ids[:per_slot] + [eos_id] * max(0, per_slot - len(ids))
    return out


class Collate:
    """Items -> the batch dict ``SpacCaptioner.forward`` reads (picklable, for loader workers). With
    ``condition_tokens`` > 0 (``CaptionerConfig.caption_condition_tokens``) the batch also holds each image's
    attribute condition (:func:`condition_ids`), built from its attribute targets."""

    def __init__(self, pad_id: int, condition_tokens: int = 0, eos_id: int | None = None):
        if condition_tokens and eos_id is None:
            raise ValueError("Collate: condition_tokens needs the tokenizer's eos_id")
        self.pad_id, self.condition_tokens, self.eos_id = pad_id, condition_tokens, eos_id

    def __call__(self, items: list[dict]) -> dict:
        attr, attr_len = _pad([ids for it in items for ids in it["attribute_ids"]], self.pad_id)  # (B*6, La)
        caps = [(b, s, ids) for b, it in enumerate(items) for s, ids in it["caption_ids"]]
        cap, cap_len = _pad([ids for _, _, ids in caps], self.pad_id)  # (Nc, Lc)
        batch = {
            "images": torch.stack([it["image"] for it in items]),  # (B, 3, H, W)
            "attribute_tokens": attr, "attribute_lengths": attr_len,
            "caption_tokens": cap, "caption_lengths": cap_len,
            "caption_image": torch.tensor([b for b, _, _ in caps], dtype=torch.long),  # (Nc,)
            "caption_style": torch.tensor([s for _, s, _ in caps], dtype=torch.long),  # (Nc,)
        }
        if self.condition_tokens:
            batch["condition_tokens"] = torch.tensor(  # (B, 6 * condition_tokens)
                [condition_ids(it["attribute_ids"], self.condition_tokens, self.eos_id) for it in items],
                dtype=torch.long)
        return batch


"""The training stream: planned identity-aware batches, read from the shards by DataLoader workers.

Each item is one optimizer step for this rank: a list of ``accum`` micro-batch dicts (keys in
:func:`collate`). Every per-sample random choice (flip, which caption, the IAP mask seed) comes
from a generator seeded by (seed, epoch, step, position in the *global* batch), so a sample is
prepared identically whatever the number of ranks, workers or micro-batches, and a resumed run
reads exactly the samples an uninterrupted one would.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from synth_pedes.schema import is_blank_text

from .index import BatchShape, TrainIndex, plan_epoch
from .transforms import CaptionEncoder, ImageTransform

_log = logging.getLogger(__name__)
_READ_COLUMNS = ["key", "identity", "image", "captions"]


@dataclass
class StreamSpec:
    """Everything a worker needs to produce step ``s``'s batch for one rank (picklable)."""

    index: TrainIndex
    shape: BatchShape
    seed: int
    steps_per_epoch: int
    rank: int = 0
    world_size: int = 1
    accum: int = 1
    caption_kinds: tuple[str, ...] | None = None  # None = all kinds
    hflip: float = 0.5
    image_size: tuple[int, int] = (256, 128)
    mean: tuple = ()
    std: tuple = ()
    gray: bool = True  # TIC needs the grayscale copy
    cache_row_groups: int = 32
    masker: Any = None  # tasks.PhraseMasker: IAP masks made here, in the workers, per sample
    text: bool = True  # False: images alone (image ReID): no caption is read or tokenised
    augment: Any = None  # transforms.ImageAugment: padded random crop and random erasing (image ReID), or None
    _plans: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        per_rank = self.shape.batch_size // self.world_size
        if self.shape.batch_size % self.world_size or per_rank % self.accum:
            raise ValueError(f"data.batch_size {self.shape.batch_size} must split evenly over {self.world_size} "
                             f"rank(s) x {self.accum} accumulation step(s)")

    def plan(self, epoch: int) -> np.ndarray:
        """The epoch's batches, cut or wrapped to exactly ``steps_per_epoch`` (plans differ by a few
        batches between epochs because windows regroup identities; the schedule needs a fixed length)."""
        if epoch not in self._plans:
            plan = plan_epoch(self.index, self.shape, self.seed, epoch)
            reps = -(-self.steps_per_epoch // len(plan))
            self._plans = {epoch: np.concatenate([plan] * reps)[:self.steps_per_epoch]}
        return self._plans[epoch]

    def global_rows(self, step: int) -> np.ndarray:
        return self.plan(step // self.steps_per_epoch)[step % self.steps_per_epoch]


def sample_rng(seed: int, step: int, position: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, position])


class RowGroupCache:
    """The last few row groups read, decoded to Python lists (one window's worth per worker)."""

    def __init__(self, paths: list[str], capacity: int):
        self.paths, self.capacity = paths, capacity
        self._groups: OrderedDict = OrderedDict()

    def row(self, shard: int, group: int, row: int) -> dict:
        key = (shard, group)
        if key not in self._groups:
            table = pq.ParquetFile(self.paths[shard]).read_row_group(group, columns=_READ_COLUMNS)
            self._groups[key] = table.to_pylist()
            if len(self._groups) > self.capacity:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        return self._groups[key][row]


class PlipStream(IterableDataset):
    """Steps ``start_step .. total_steps-1`` of this rank, dealt round-robin over DataLoader workers
    (the order in which DataLoader returns them, so the step order is preserved)."""

    def __init__(self, spec: StreamSpec, tokenizer, max_length: int, start_step: int, total_steps: int):
        self.spec, self.start_step, self.total_steps = spec, start_step, total_steps
        self.encoder = CaptionEncoder(tokenizer, max_length)
        self.images = ImageTransform(spec.image_size, spec.mean, spec.std)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cache = RowGroupCache(self.spec.index.paths, self.spec.cache_row_groups)
        for step in range(self.start_step + worker, self.total_steps, workers):
            yield self.step_batches(step, cache)

    def step_batches(self, step: int, cache: RowGroupCache) -> list[dict]:
        s = self.spec
        rows = s.global_rows(step)
        per_rank = len(rows) // s.world_size
        mine = np.arange(s.rank * per_rank, (s.rank + 1) * per_rank)
        return [self.collate(step, positions, rows[positions], cache) for positions in np.split(mine, s.accum)]

    def collate(self, step: int, positions: np.ndarray, rows: np.ndarray, cache: RowGroupCache) -> dict:
        s, ix = self.spec, self.spec.index
        colours, grays, captions, keys, mask_seeds = [], [], [], [], []
        for pos, r in zip(positions, rows):
            rec = cache.row(int(ix.shard[r]), int(ix.group[r]), int(ix.row[r]))
            rng = sample_rng(s.seed, step, int(pos))
            colour, gray = self.images(rec["image"]["bytes"], bool(rng.random() < s.hflip), rec["key"], s.gray,
                                       augment=s.augment, rng=rng)
            colours.append(colour)
            grays.append(gray)
            if s.text:
                caption = None if ix.caption is None else int(ix.caption[r])  # per-caption index: this one
                captions.append(choose_caption(rec, s.caption_kinds, rng) if caption is None
                                else rec["captions"][caption])
            keys.append(rec["key"])
            mask_seeds.append(int(rng.integers(2**62)))
        batch = {"images": torch.stack(colours), "identities": torch.from_numpy(ix.identity[rows].copy()),
                 "keys": keys, "mask_seeds": torch.tensor(mask_seeds), "step": step,
                 "blank_caption_keys": [k for k, c in zip(keys, captions) if is_blank(c)]}
        if ix.labels is not None:  # attribute recognition: the rows' 0/1 labels
            batch["labels"] = torch.from_numpy(ix.labels[rows].astype(np.float32))
        if s.text:
            batch.update(self.encoder(captions))
        if s.gray:
            batch["gray"] = torch.stack(grays)
        if s.masker is not None and s.text:
            batch.update(s.masker(batch["input_ids"], batch["attention_mask"], batch["phrase_index"], step,
                                  mask_seeds, keys))
        return batch


def choose_caption(record: dict, kinds: tuple[str, ...] | None, rng: np.random.Generator) -> dict:
    """One caption of the record, uniformly among those of the wanted kinds (all kinds as a fallback
    when none of the wanted kind exists, so a row never silently drops out of a planned batch)."""
    caps = [c for c in record["captions"] if not is_blank(c)] or record["captions"]  # text to learn from first
    wanted = [c for c in caps if kinds is None or c["kind"] in kinds] or caps
    return wanted[int(rng.integers(len(wanted)))]


def is_blank(caption: dict) -> bool:
    """A caption with no text to learn from (synth_pedes.schema.is_blank_text): IAP masks nothing and IVLC
    matches nothing."""
    return is_blank_text(caption.get("text"))


def make_loader(stream: PlipStream, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """batch_size=None: the stream already yields whole steps. Workers prefetch 2 steps each.

    The loader gets its own generator: by default DataLoader draws its base seed from the global torch
    RNG when an iterator starts, which would shift dropout after a resume (the stream needs no seed)."""
    kwargs = {"prefetch_factor": 2, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(0), **kwargs)

"""Which rows can train, and in which identity-aware batches they are seen each epoch.

Training needs P identities × K images per batch (IVLC's positives are same-identity pairs), but a
dataset of millions of images cannot be read at random: a Parquet row group is the smallest unit
that can be read. So the epoch is planned in *windows*: row groups are shuffled, taken W at a
time, and P×K batches are formed from the identities inside the window. A batch then touches at
most W row groups, a data worker keeps at most one window in memory, and an identity whose images
sit in one shard (the usual case: synthesis keeps an identity's images together) still yields
same-identity positives.

The index holds four small integer arrays per usable row (shard, row group, row, identity), read
from narrow columns only: about 20 bytes per row, so 4.8 M rows need under 100 MB. The plan is a
pure function of (index, seed, epoch, batch shape): every rank computes the same plan, and resuming
at step s simply starts reading the plan at s.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plip_runtime.config import ConfigBase

_log = logging.getLogger(__name__)


class DataError(ValueError):
    """The dataset cannot feed this training configuration (message names the dataset and the fix)."""


@dataclass
class TrainIndex:
    """The usable rows of a caption dataset: ``status == ok``, in the wanted split, with captions. Built with
    ``per_caption``, it holds one entry per (row, caption) instead, ``caption`` naming the caption: an epoch is
    then one pass over the image-caption pairs (the official fine-tuning's "train-depart" annotation file)."""

    paths: list[str]  # shard paths, in manifest order
    shard: np.ndarray  # int32 [N]
    group: np.ndarray  # int32 [N]
    row: np.ndarray  # int32 [N] row inside its row group
    identity: np.ndarray  # int64 [N]; -1 = unknown
    skipped: dict  # reason -> rows left out
    caption: np.ndarray | None = None  # int32 [N]: the entry's caption (position in the row's list); None = any
    labels: np.ndarray | None = None  # uint8 [N, A]: the rows' attribute_labels (attribute recognition); None = unread

    def __len__(self) -> int:
        return len(self.identity)

    @property
    def num_identities(self) -> int:
        ids = self.identity[self.identity >= 0]
        return int(len(np.unique(ids)))

    @classmethod
    def build(cls, dataset, splits: tuple[str, ...] | None = ("train",), *, per_caption: bool = False,
              caption_kinds: tuple[str, ...] | None = None,
              caption_styles: tuple[str, ...] | None = None, captions: bool = True,
              labels: bool = False) -> "TrainIndex":
        """Read identity, status, split and the captions' kind (and style) of every row group (narrow columns only).
        ``caption_kinds`` / ``caption_styles`` (with ``per_caption``): only captions of these kinds / styles.
        ``captions=False``: images train alone (image ReID), rows without captions included. ``labels``: also
        read every trainable row's ``attribute_labels`` (attribute recognition; a row without them is an error)."""
        paths = [str(p) for p in dataset.shard_paths]
        cols = {k: [] for k in ("shard", "group", "row", "identity", "caption", "labels")}
        skipped = {"status": 0, "split": 0, "no_captions": 0}
        columns = ["identity", "status", "split", "captions.list.element.kind"]
        if caption_styles:
            columns.append("captions.list.element.style")
        if labels:
            columns.append("attribute_labels")
        for s, path in enumerate(paths):
            pf = pq.ParquetFile(path)
            for g in range(pf.num_row_groups):
                t = pf.read_row_group(g, columns=columns)
                ok = pc.equal(t.column("status"), "ok").to_numpy(zero_copy_only=False)
                in_split = np.ones(len(ok), bool) if splits is None else \
                    pc.is_in(t.column("split"), value_set=_string_array(splits)).to_numpy(zero_copy_only=False)
                if per_caption or caption_kinds or caption_styles:  # which captions, one by one
                    row_of, position = _eligible_captions(t.column("captions"), caption_kinds, caption_styles,
                                                          per_caption)
                    has_caps = np.bincount(row_of, minlength=len(ok)) > 0
                else:  # pre-training's index (millions of rows): only whether a row has captions at all
                    has_caps = pc.fill_null(pc.list_value_length(t.column("captions")), 0).to_numpy() > 0
                skipped["status"] += int((~ok).sum())
                skipped["split"] += int((ok & ~in_split).sum())
                skipped["no_captions"] += int((ok & in_split & ~has_caps).sum()) if captions else 0
                wanted = ok & in_split
                if per_caption:  # one entry per eligible caption of a wanted row
                    take = wanted[row_of]
                    keep, caption = row_of[take], position[take]
                else:
                    keep, caption = np.flatnonzero(wanted & (has_caps | (not captions))), None
                cols["shard"].append(np.full(len(keep), s, np.int32))
                cols["group"].append(np.full(len(keep), g, np.int32))
                cols["row"].append(keep.astype(np.int32))
                cols["identity"].append(t.column("identity").to_numpy()[keep].astype(np.int64))
                if caption is not None:
                    cols["caption"].append(caption.astype(np.int32))
                if labels:
                    cols["labels"].append(_label_matrix(t.column("attribute_labels"), keep, f"{path} row group {g}"))
        arrays = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in cols.items() if k != "labels"}
        arrays["caption"] = arrays["caption"].astype(np.int32) if per_caption else None
        arrays["labels"] = None
        if labels:
            matrices = [m for m in cols["labels"] if len(m)]  # (a row group without trainable rows has no width)
            widths = {m.shape[1] for m in matrices}
            if len(widths) > 1:
                raise DataError(f"{dataset.directory}: rows hold attribute_labels of different lengths "
                                f"{sorted(widths)}; every row needs one label per name in the manifest's "
                                "attribute_names")
            arrays["labels"] = np.concatenate(matrices) if matrices else np.zeros((0, 0), np.uint8)
        index = cls(paths=paths, skipped=skipped, **arrays)
        if len(index) == 0:
            which = "".join(f", caption {name} in {list(v)}" for name, v in (("kinds", caption_kinds),
                                                                              ("styles", caption_styles)) if v)
            if skipped["status"] and not (skipped["split"] or skipped["no_captions"]):
                fix = ("no row has status ok: all were filtered out or failed "
                       f"({', '.join(f'{k}={v}' for k, v in dataset.manifest.status_counts.items())}). Re-run "
                       "plip filter with looser rules (its summary counts the rows each rule took) or train on its "
                       "input")
            else:
                fix = ("Train on a caption dataset (plip synth / plip filter output) or choose the split to train "
                       "on: --set data.split=NAME (null: every row)")
            raise DataError(f"{dataset.directory}: no trainable rows (status ok, split in {splits}"
                            f"{', with captions' if captions else ''}{which}); left out: {skipped}. {fix}.")
        return index

    def take(self, entries: np.ndarray) -> "TrainIndex":
        """The index restricted to ``entries`` (positions, or a boolean mask), e.g. a few-shot subset."""
        pick = (lambda a: None if a is None else a[entries])
        return TrainIndex(self.paths, self.shard[entries], self.group[entries], self.row[entries],
                          self.identity[entries], dict(self.skipped), pick(self.caption), pick(self.labels))

    def image_ids(self) -> np.ndarray:
        """One int64 per entry naming its image (shard, row group, row): equal for the captions of one image."""
        return (self.shard.astype(np.int64) << 42) | (self.group.astype(np.int64) << 21) | self.row.astype(np.int64)

    def units(self) -> np.ndarray:
        """Unique (shard, group) pairs holding usable rows, as an int array [U, 2] in dataset order."""
        return np.unique(np.stack([self.shard, self.group], 1), axis=0)


def _eligible_captions(captions, kinds, styles, positions: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """For the captions of a row group (a list column of structs holding kind, and style when asked for) that
    have a wanted kind and style: the row each belongs to, and (with ``positions``) its place in the row's list."""
    captions = captions.combine_chunks() if hasattr(captions, "combine_chunks") else captions
    parents = pc.list_parent_indices(captions).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(captions)
    keep = np.ones(len(parents), bool)
    for name, values in (("kind", kinds), ("style", styles)):
        if values:
            field = pc.fill_null(pc.struct_field(flat, name), "")
            keep &= pc.is_in(field, value_set=_string_array(values)).to_numpy(zero_copy_only=False)
    position = None
    if positions:
        offsets = captions.offsets.to_numpy()
        position = (np.arange(len(parents)) - offsets[parents] + offsets[0]) if len(parents) else parents
        position = position[keep]
    return parents[keep], position


def _string_array(values):
    import pyarrow as pa

    return pa.array(list(values), pa.string())


@dataclass(frozen=True)
class BatchShape(ConfigBase):
    """The planner's view of the ``data`` section: P × K identity-aware batches, planned W row groups at a time."""

    where = "data"
    batch_size: int  # global images per optimizer step (P × K)
    images_per_identity: int  # K
    window_row_groups: int = 32  # W: row groups planned together

    def validate(self) -> None:
        self.require_int("images_per_identity", 1)
        self.require_int("batch_size", 1)
        self.require("batch_size", self.batch_size % self.images_per_identity == 0,
                     f"must be a multiple of data.images_per_identity ({self.images_per_identity})")
        self.require_int("window_row_groups", 1)

    @property
    def identities_per_batch(self) -> int:
        return self.batch_size // self.images_per_identity


def _label_matrix(column, keep: np.ndarray, where: str) -> np.ndarray:
    """The ``attribute_labels`` of rows ``keep`` as a uint8 [len(keep), A] matrix; DataError for a missing or ragged
    row."""
    chosen = column.take(pa.array(keep, pa.int64())) if len(keep) else column.slice(0, 0)
    if chosen.null_count:
        raise DataError(f"{where}: {chosen.null_count} trainable rows have no attribute_labels; attribute recognition "
                        "trains on labelled rows only (plip import pa100k|peta|rap|rap2)")
    lengths = pc.list_value_length(chosen).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) > 1:
        raise DataError(f"{where}: rows hold attribute_labels of different lengths {sorted(set(lengths.tolist()))}")
    width = int(lengths[0]) if len(lengths) else 0
    flat = pc.list_flatten(chosen).to_numpy(zero_copy_only=False)
    return flat.astype(np.uint8).reshape(len(keep), width)


def plan_epoch(index: TrainIndex, shape: BatchShape, seed: int, epoch: int) -> np.ndarray:
    """The epoch's batches as row positions into ``index``: int64 [steps, batch_size].

    Within a window every identity's images are shuffled and cut into groups of K (an identity with
    fewer than K images, or a remainder, is topped up by sampling its images again, as the usual
    RandomIdentitySampler does); the groups are shuffled and dealt P to a batch (an identity with
    many images may land twice in one batch, which only adds positives). Rows with identity -1
    (instance-level training) are dealt K at a time. Groups that do not fill a batch carry over to
    the next window; the last incomplete batch of the epoch is dropped.
    """
    rng = np.random.default_rng([seed, epoch])
    units = index.units()
    unit_of_row = _unit_positions(index, units)
    rows_by_unit = np.argsort(unit_of_row, kind="stable")
    bounds = np.searchsorted(unit_of_row[rows_by_unit], np.arange(len(units) + 1))
    order = rng.permutation(len(units))
    k, p = shape.images_per_identity, shape.identities_per_batch
    batches: list[np.ndarray] = []
    carry: list[np.ndarray] = []
    for w in range(0, len(order), shape.window_row_groups):
        rows = np.concatenate([rows_by_unit[bounds[u]:bounds[u + 1]] for u in order[w:w + shape.window_row_groups]])
        groups = carry + _identity_groups(index.identity[rows], rows, k, rng)
        carry = _deal_batches(groups, p, k, rng, batches)
    if not batches:
        raise DataError(f"the dataset has {len(index)} trainable rows, fewer than one batch of {shape.batch_size} "
                        f"(after grouping by identity); lower the batch size (--batch-size, or data.batch_size)")
    return np.stack(batches)


def _unit_positions(index: TrainIndex, units: np.ndarray) -> np.ndarray:
    """For every row, the position of its (shard, group) unit in ``units``."""
    key = index.shard.astype(np.int64) << 32 | index.group.astype(np.int64)
    unit_keys = units[:, 0].astype(np.int64) << 32 | units[:, 1].astype(np.int64)
    return np.searchsorted(unit_keys, key)


def _identity_groups(identities: np.ndarray, rows: np.ndarray, k: int, rng) -> list[np.ndarray]:
    """Cut each identity's rows into shuffled groups of exactly K rows."""
    groups = []
    known = identities >= 0
    groups += [np.array([r]) for r in rows[~known]]  # unknown identity: dealt K distinct rows at a time
    order = np.argsort(identities[known], kind="stable")
    ids, starts = np.unique(identities[known][order], return_index=True)
    members = np.split(rows[known][order], starts[1:]) if len(ids) else []
    for m in members:
        m = rng.permutation(m)
        if len(m) % k:
            m = np.concatenate([m, rng.choice(m, k - len(m) % k)])
        groups.extend(m.reshape(-1, k))
    return groups


def _deal_batches(groups: list[np.ndarray], p: int, k: int, rng, batches: list) -> list[np.ndarray]:
    """Append full batches built from ``groups`` to ``batches``; return the groups left over."""
    singles = [g for g in groups if len(g) < k]  # unknown-identity rows: dealt K at a time
    groups = [g for g in groups if len(g) == k]
    if singles:
        flat = np.concatenate(singles)
        flat = flat[rng.permutation(len(flat))]
        usable = len(flat) - len(flat) % k
        groups += list(flat[:usable].reshape(-1, k))
        leftover_singles = [np.array([r]) for r in flat[usable:]]
    else:
        leftover_singles = []
    groups = [groups[i] for i in rng.permutation(len(groups))]
    full = len(groups) - len(groups) % p
    for b in range(0, full, p):
        batches.append(np.concatenate(groups[b:b + p]))
    return groups[full:] + leftover_singles

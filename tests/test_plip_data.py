"""The pre-training data pipeline: index, identity-aware epoch plans, the step stream, phrase spans."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synth_pedes import open_dataset, write_dataset
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record
from plip_train.data import (BatchShape, DataError, PlipStream, StreamSpec, TrainIndex, choose_caption, phrase_index,
                             plan_epoch)
from plip_train.data.loader import RowGroupCache

PROC = ProcPedesConfig(identities=12, images_per_identity=4, height=64, width=32, seed=3)


def _caption_dataset(out, *, identity=None, shard_rows=16, n=None):
    records = [render_record(it, PROC) for it in plan_items(PROC)][:n]
    if identity is not None:
        records = [dict(r, identity=identity) for r in records]
    records[5] = dict(records[5], status="error", error="synthetic", image=None)
    write_dataset(records, out, name="plip-data-test", kind="captions", shard_rows=shard_rows)
    return open_dataset(out)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _caption_dataset(tmp_path_factory.mktemp("plipdata") / "ds")


@pytest.fixture(scope="module")
def tokenizer():
    from plip_train.models import build_tokenizer
    from plip_train.models.config import TextTowerConfig

    return build_tokenizer(TextTowerConfig())


def test_index_keeps_ok_rows_of_the_split(dataset):
    ix = TrainIndex.build(dataset, splits=None)
    assert len(ix) == 47 and ix.skipped["status"] == 1
    assert ix.num_identities == 12
    train = TrainIndex.build(dataset, splits=("train",))
    assert 0 < len(train) < len(ix) and train.skipped["split"] == len(ix) - len(train)
    with pytest.raises(DataError, match="no trainable rows"):
        TrainIndex.build(dataset, splits=("query",))


def test_plan_is_p_by_k_deterministic_and_epoch_dependent(dataset):
    ix = TrainIndex.build(dataset, splits=None)
    shape = BatchShape(batch_size=8, images_per_identity=2, window_row_groups=2)
    plan = plan_epoch(ix, shape, seed=0, epoch=0)
    assert plan.shape[1] == 8 and plan.shape[0] >= 4
    ids = ix.identity[plan].reshape(len(plan), 4, 2)
    assert (ids[:, :, 0] == ids[:, :, 1]).all()  # every K-group is one identity
    np.testing.assert_array_equal(plan, plan_epoch(ix, shape, seed=0, epoch=0))
    assert not np.array_equal(plan, plan_epoch(ix, shape, seed=0, epoch=1))
    # windows bound the row groups a batch touches
    units = ix.shard[plan].astype(np.int64) * 1000 + ix.group[plan]
    assert max(len(np.unique(u)) for u in units) <= 2 * shape.window_row_groups
    assert len(np.unique(plan)) >= 0.6 * len(ix)


def test_plan_without_identities_deals_k_distinct_rows(tmp_path):
    ds = _caption_dataset(tmp_path / "noid", identity=-1)
    ix = TrainIndex.build(ds, splits=None)
    assert ix.num_identities == 0
    plan = plan_epoch(ix, BatchShape(8, 2, 4), seed=0, epoch=0)
    assert all(len(set(b)) == 8 for b in plan.tolist())


def test_batch_shape_validates():
    with pytest.raises(ValueError, match=r"data\.batch_size: must be a multiple of data\.images_per_identity \(4\), got 10"):
        BatchShape(batch_size=10, images_per_identity=4)


def test_phrase_index_maps_spans_to_tokens(tokenizer):
    text = "a man in a dark blue jacket and grey shorts."
    spans = [{"slot": "lower", "start": 32, "end": 43}, {"slot": "upper", "start": 11, "end": 27}]
    enc = tokenizer(text, return_offsets_mapping=True, padding="max_length", max_length=16, return_tensors="np")
    idx = phrase_index(enc["offset_mapping"][0], spans)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    by_phrase = {j: [t for t, i in zip(tokens, idx) if i == j] for j in (0, 1)}
    assert by_phrase == {0: ["dark", "blue", "jacket"], 1: ["grey", "shorts"]}  # ordered by position
    assert idx[0] == -1 and (idx[tokens.index("[SEP]"):] == -1).all()


def test_choose_caption_by_kind():
    rec = {"captions": [{"kind": "generated", "text": "g"}, {"kind": "prompt", "text": "p"}]}
    rng = np.random.default_rng(0)
    assert {choose_caption(rec, ("prompt",), rng)["text"] for _ in range(10)} == {"p"}
    assert {choose_caption(rec, None, rng)["text"] for _ in range(40)} == {"g", "p"}
    assert choose_caption(rec, ("human",), rng)["kind"] in ("generated", "prompt")  # fallback, never dropped


def test_choose_caption_prefers_captions_with_text():
    """A blank caption (empty or whitespace) is chosen only when the row has nothing else, of any kind."""
    rec = {"captions": [{"kind": "generated", "text": "  "}, {"kind": "generated", "text": ""},
                        {"kind": "prompt", "text": "p"}]}
    rng = np.random.default_rng(0)
    assert {choose_caption(rec, ("generated",), rng)["text"] for _ in range(20)} == {"p"}
    blank = {"captions": [{"kind": "generated", "text": " "}]}
    assert choose_caption(blank, None, rng)["text"] == " "  # kept: a planned row never drops out of its batch


def _spec(ix, shape, **kw):
    steps = len(plan_epoch(ix, shape, 0, 0))
    return StreamSpec(ix, shape, seed=0, steps_per_epoch=steps, image_size=(64, 32), mean=(0.5,) * 3,
                      std=(0.25,) * 3, **kw)


def test_stream_is_the_same_split_over_ranks_accumulation_and_resume(dataset, tokenizer):
    ix = TrainIndex.build(dataset, splits=None)
    shape = BatchShape(8, 2, 2)
    whole = list(PlipStream(_spec(ix, shape), tokenizer, 32, 0, 4))
    assert len(whole) == 4 and len(whole[0]) == 1
    b = whole[0][0]
    assert b["images"].shape == (8, 3, 64, 32) and b["gray"].shape == (8, 3, 64, 32)
    assert b["input_ids"].shape == (8, 32) and (b["phrase_index"] >= 0).any()
    assert torch.equal(b["gray"][:, 0], b["gray"][:, 1])  # replicated luma
    # 2 ranks x 2 accumulation steps see exactly the global batch, sample for sample
    parts = [PlipStream(_spec(ix, shape, rank=r, world_size=2, accum=2), tokenizer, 32, 0, 4) for r in (0, 1)]
    for step, (p0, p1) in enumerate(zip(*parts)):
        merged = {k: torch.cat([mb[k] for mb in p0 + p1]) for k in ("images", "input_ids", "identities", "mask_seeds")}
        for k, v in merged.items():
            assert torch.equal(v, whole[step][0][k]), (step, k)
    # resuming at step 2 yields steps 2 and 3 unchanged
    resumed = list(PlipStream(_spec(ix, shape), tokenizer, 32, 2, 4))
    assert all(torch.equal(a[0]["images"], b[0]["images"]) for a, b in zip(resumed, whole[2:]))


def test_stream_in_dataloader_workers_keeps_step_order(dataset, tokenizer):
    from plip_train.data import make_loader

    ix = TrainIndex.build(dataset, splits=None)
    stream = PlipStream(_spec(ix, BatchShape(8, 2, 2)), tokenizer, 32, 0, 5)
    got = [item[0]["step"] for item in make_loader(stream, num_workers=2)]
    assert got == [0, 1, 2, 3, 4]


def test_row_group_cache_is_bounded(dataset):
    cache = RowGroupCache([str(p) for p in dataset.shard_paths], capacity=2)
    for shard in range(3):
        cache.row(shard, 0, 0)
    assert len(cache._groups) == 2


def test_a_dataset_whose_rows_were_all_filtered_says_so(tmp_path):
    """What a user meets after a plip filter that kept nothing: the message says the rows were filtered, not that
    the data is no caption dataset."""
    from _fixtures import jpeg_bytes

    from synth_pedes import make_record

    records = [make_record(f"k/{i}", image_bytes=jpeg_bytes(i), status="filtered", error="unknown-slots",
                           captions=[{"text": "a man", "kind": "generated"}]) for i in range(4)]
    write_dataset(records, tmp_path / "d", name="d", kind="captions", shard_rows=4)
    with pytest.raises(DataError, match=r"no row has status ok: all were filtered out or failed \(filtered=4\)"):
        TrainIndex.build(open_dataset(tmp_path / "d"))

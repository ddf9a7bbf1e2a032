import json

from _fixtures import jpeg_bytes

from pipelines.cli import main
from synth_pedes import SLOTS, make_record, open_dataset, write_dataset


def _row(i, identity, person, unknown=0):
    attrs = {"person": person, "head": "short black hair", "upper": "red jacket", "lower": "blue jeans",
             "shoes": "white sneakers", "belongings": "black backpack"}
    for slot in list(SLOTS)[1:][:unknown]:
        attrs[slot] = "unknown"
    return make_record(f"t/{identity:03d}/{i:03d}.jpg", identity=identity, source="t", image_bytes=jpeg_bytes(i),
                       width=32, height=64, attributes=attrs,
                       captions=[{"text": f"A {person}.", "style": "s", "kind": "generated", "spans": []}])


def _dataset(tmp_path):
    rows, i = [], 0
    plan = {1: ["man"] * 6, 2: ["man"] * 4 + ["woman"] * 2, 3: ["young man"] * 5 + ["young woman"],
            4: ["woman"] * 3, 5: ["woman"] * 25}
    for identity, people in plan.items():
        for person in people:
            rows.append(_row(i, identity, person))
            i += 1
    rows.append(_row(i, 1, "man", unknown=3))
    rows.append(make_record("t/broken.jpg", identity=1, source="t", status="error", error="corrupt image: x"))
    write_dataset(rows, tmp_path / "raw", name="raw", kind="captions", shard_rows=16)
    return tmp_path / "raw"


def test_filter_applies_the_distribution_strategy_as_a_new_version(tmp_path, capsys):
    raw = _dataset(tmp_path)
    assert main(["filter", str(raw), "--out", str(tmp_path / "f"), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    parent, child = open_dataset(raw), open_dataset(tmp_path / "f")
    assert child.manifest.parents == (parent.id,) and child.manifest.num_rows == parent.manifest.num_rows
    counts = child.manifest.producer["counts"]
    assert counts["unknown-slots"] == 1 and counts["gender-vote"] == 6 and counts["gender-vote relabelled"] == 1
    assert counts["balance"] == 3 + 5 and counts["not ok before filtering"] == 1
    rows = {r["key"]: r for r in child.iter_records()}
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert sorted({r["identity"] for r in ok}) == [1, 3, 5]
    assert sum(1 for r in ok if r["identity"] == 5) == 20  # capped
    relabelled = [r for r in ok if json.loads(r["extra"] or "{}").get("filter", {}).get("person") == "young woman"]
    assert len(relabelled) == 1 and relabelled[0]["attributes"]["person"] == "young man"
    assert rows["t/broken.jpg"]["status"] == "error"  # untouched
    dropped = [r for r in rows.values() if r["status"] == "filtered"]
    assert all(r["error"] for r in dropped) and len(dropped) == 1 + 6 + 8
    assert "seed filter" in out and "skipped" in out


def test_seed_filter_runs_on_a_dask_cluster_and_is_deterministic(tmp_path):
    raw = _dataset(tmp_path)
    args = ["filter", str(raw), "--encoder", "tiny", "--workers", "2", "--min-images", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    assert a.id == b.id
    counts = a.manifest.producer["counts"]
    assert "seed-filter reassigned" in counts and a.manifest.producer["config"]["embedder"]["backbone"] == "tiny"


RIGHT, WRONG = "A man in a red jacket.", "A woman in a green coat."  # against _row's attributes: 1.0 and 0.0


def _caption(text, kind, style=None):
    words = ("man", "red jacket") if text == RIGHT else ("woman", "green coat")
    spans = [{"slot": slot, "start": text.index(w), "end": text.index(w) + len(w)}
             for slot, w in zip(("person", "upper"), words)]
    return {"text": text, "style": style or kind, "kind": kind, "spans": spans}


def _faithfulness_dataset(tmp_path):
    """Identity 1: a wrong generated caption beside a right prompt caption (rows 0-2 store their scores, as plip
    synth now does; rows 3-5 do not, as datasets written before); row 6's stored score says 0 for a caption whose
    spans agree (the stored score is what counts). Identity 2: every synthetic caption wrong; row 13 also has a
    wrong human caption, which is never judged."""
    rows = []
    for i in range(14):
        base = _row(i, 1 if i < 7 else 2, "man")
        captions = ([_caption(WRONG, "generated", "s"), _caption(RIGHT, "prompt")] if i < 6
                    else [_caption(RIGHT, "generated", "s")] if i == 6 else [_caption(WRONG, "generated", "s")])
        if i == 13:
            captions.append(_caption(WRONG, "human", "cuhk-pedes"))
        stored = {0: [0.0, 1.0], 1: [0.0, 1.0], 2: [0.0, 1.0], 6: [0.0]}.get(i)
        extra = {"spac": {"captioner_attributes": {}, "faithfulness": stored}} if stored else None
        rows.append(make_record(base["key"], identity=base["identity"], source="t", image_bytes=jpeg_bytes(i),
                                width=32, height=64, attributes=base["attributes"], captions=captions, extra=extra))
    write_dataset(rows, tmp_path / "caps", name="caps", kind="captions", shard_rows=5)
    return tmp_path / "caps"


def test_min_faithfulness_drops_contradicting_captions_and_rows_left_without_one(tmp_path):
    raw = _faithfulness_dataset(tmp_path)
    assert main(["filter", str(raw), "--out", str(tmp_path / "f"), "--workers", "0", "--min-images", "1",
                 "--min-faithfulness", "0.5"]) == 0
    child = open_dataset(tmp_path / "f")
    counts = child.manifest.producer["counts"]
    assert counts["faithfulness"] == 7 and counts["faithfulness captions dropped"] == 6 + 1  # rows 6-12; 0-5, 13
    assert child.manifest.producer["config"]["filter"]["min_faithfulness"] == 0.5
    rows = {r["key"]: r for r in child.iter_records()}
    ok = sorted((r for r in rows.values() if r["status"] == "ok"), key=lambda r: r["key"])
    assert [len(r["captions"]) for r in ok] == [1] * 6 + [1]  # rows 0-5 keep the prompt; row 13 its human caption
    assert all(r["captions"][0]["kind"] == "prompt" for r in ok[:6]) and ok[6]["captions"][0]["kind"] == "human"
    first = json.loads(ok[0]["extra"])
    assert first["filter"]["dropped_captions"][0]["text"] == WRONG and first["spac"]["faithfulness"] == [1.0]
    dropped = [r for r in rows.values() if r["status"] == "filtered"]
    assert len(dropped) == 7 and all(r["error"].startswith("faithfulness: every caption below 0.5") for r in dropped)
    assert rows["t/001/006.jpg"]["status"] == "filtered"  # by its stored score, not the recomputed 1.0
    assert len(rows["t/002/007.jpg"]["captions"]) == 1  # a filtered row keeps its captions: nothing is lost


def test_min_faithfulness_off_records_what_the_filter_always_recorded(tmp_path):
    raw = _faithfulness_dataset(tmp_path)
    assert main(["filter", str(raw), "--out", str(tmp_path / "f"), "--workers", "0", "--min-images", "1"]) == 0
    producer = open_dataset(tmp_path / "f").manifest.producer
    assert "min_faithfulness" not in producer["config"]["filter"]  # same config record, same manifest id as before
    assert not any(k.startswith("faithfulness") for k in producer["counts"])
    assert main(["filter", str(raw), "--out", str(tmp_path / "g"), "--min-faithfulness", "1.5"]) == 2

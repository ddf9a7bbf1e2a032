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

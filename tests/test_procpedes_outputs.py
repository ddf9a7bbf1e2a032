"""ProcPedes outputs: benchmark layouts, contact sheet, throughput benchmark."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from synth_pedes.procpedes import (LAYOUT_FORMATS, ProcPedesConfig, bench_render, contact_sheet, plan_items,
                                   render_record, write_layout)

CFG = ProcPedesConfig(identities=12, images_per_identity=3, seed=5, captions_per_image=2)


@pytest.fixture(scope="module")
def records():
    return [render_record(it, CFG) for it in plan_items(CFG)]


FIELDS = {
    "cuhk-pedes": ("reid_raw.json", ["split", "captions", "file_path", "processed_tokens", "id"], "file_path"),
    "icfg-pedes": ("ICFG_PEDES.json", ["split", "captions", "file_path", "processed_tokens", "id"], "file_path"),
    "rstpreid": ("data_captions.json", ["id", "img_path", "captions", "split"], "img_path"),
}


@pytest.mark.parametrize("fmt", [f for f in LAYOUT_FORMATS if f not in ("market1501", "pa100k")])  # JSON
def test_layout_round_trip(records, tmp_path, fmt):
    summary = write_layout(iter(records), tmp_path / "a", fmt)
    name, fields, path_key = FIELDS[fmt]
    data = json.loads((tmp_path / "a" / name).read_text())
    assert isinstance(data, list) and len(data) == len(records) == summary["n_images"]
    assert summary["json"] == str(tmp_path / "a" / name) and summary["n_ids"] == 12
    ids = sorted({e["id"] for e in data})
    assert ids == list(range(1, 13)) if fmt == "cuhk-pedes" else ids == list(range(12))
    id_of_identity = {}
    for e in data:
        assert list(e) == fields
        assert isinstance(e["id"], int) and isinstance(e["captions"], list)
        img = tmp_path / "a" / "imgs" / e[path_key]
        assert img.is_file() and Image.open(img).size == (128, 256)
        assert not e[path_key].startswith("/") and ".." not in e[path_key]
        if fmt == "icfg-pedes":
            assert e["split"] in ("train", "test") and len(e["captions"]) == 1
        else:
            assert e["split"] in ("train", "val", "test") and len(e["captions"]) == 2
        if "processed_tokens" in e:
            assert len(e["processed_tokens"]) == len(e["captions"])
            for cap, toks in zip(e["captions"], e["processed_tokens"]):
                assert toks and all(t == t.lower() and t.isascii() for t in toks)
                assert " ".join(toks).replace("-", " ").split() == \
                    "".join(ch if ch.isalnum() or ch in " -'" else " " for ch in cap.lower()).replace("-", " ").split()
    # images and identities line up with the records
    for r in records:
        matches = [e for e in data if r["image"]["bytes"] == (tmp_path / "a" / "imgs" / e[path_key]).read_bytes()]
        assert len(matches) == 1
        e = matches[0]
        id_of_identity.setdefault(r["identity"], e["id"])
        assert id_of_identity[r["identity"]] == e["id"]
        want_split = "test" if (fmt == "icfg-pedes" and r["split"] == "val") else r["split"]
        assert e["split"] == want_split
        texts = [c["text"] for c in r["captions"]]
        icfg = [c["text"] for c in r["captions"] if c["style"] == "icfg-pedes"]
        assert e["captions"] == (icfg if fmt == "icfg-pedes" else texts)
    # deterministic
    write_layout(records, tmp_path / "b", fmt)
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_layout_rejects_unknown_format(records, tmp_path):
    with pytest.raises(ValueError, match="format"):
        write_layout(records, tmp_path, "duke-mtmc")


def test_contact_sheet_writes_a_png(records, tmp_path):
    out = contact_sheet(records, tmp_path / "sheet.png", columns=4, max_images=8)
    img = Image.open(tmp_path / "sheet.png")
    assert img.format == "PNG" and out["n_images"] == 8
    assert img.width >= 4 * 128 and img.height >= 2 * 256
    small = contact_sheet(records, tmp_path / "small.png", columns=4, max_images=8, scale=0.5, colors=64)
    assert small["bytes"] < out["bytes"]
    with pytest.raises(ValueError):
        contact_sheet([], tmp_path / "none.png")


def test_bench_render_reports_throughput():
    out = bench_render(n_images=30, config=ProcPedesConfig(identities=10, images_per_identity=3))
    assert out["n_images"] == 30 and out["images_per_s"] > 20 and out["records_per_s"] > 20
    assert out["mean_jpeg_bytes"] > 1000

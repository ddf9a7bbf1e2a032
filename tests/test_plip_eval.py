"""Evaluation, embeddings and the official checkpoint import, end to end on tiny data: ``plip eval`` (t2i, i2t,
both, Market-1501 i2i with its camera rule, --select-on val, the --config baseline), ``plip_train.embed``,
``plip embed`` (Parquet), ``plip convert official`` (tiny and paper-size official layouts) and the error messages."""
from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipelines.cli import main as plip
from plip_train import embed
from plip_train.config import load_config
from plip_train.convert import convert_official
from plip_train.trainer import train
from plip_train.zeroshot import EvaluationError, evaluate_dataset
from synth_pedes import make_record, open_dataset, write_dataset
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

METRIC_KEYS = {"R1", "R5", "R10", "mAP", "mINP", "mAP_official", "num_queries", "num_valid_queries"}
CAPTIONS = ProcPedesConfig(identities=10, images_per_identity=4, height=64, width=32, seed=5)
BENCH = ProcPedesConfig(identities=16, images_per_identity=3, height=64, width=32, seed=7,
                        split_fractions=(0.5, 0.25, 0.25))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny convolutions on a shared 2-core machine: one thread is ~50x faster than two fighting for a core
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("plip-eval")
    write_dataset([render_record(i, CAPTIONS) for i in plan_items(CAPTIONS)], root / "captions", name="eval-captions",
                  kind="captions", shard_rows=12)
    write_dataset([render_record(i, BENCH) for i in plan_items(BENCH)], root / "bench", name="procpedes-bench",
                  kind="benchmark", shard_rows=10)
    train(load_config("tiny", ["data.split=null", "train.max_steps=2", "train.checkpoint_every=1"]),
          root / "captions", root / "run")
    return root


def _eval(*args) -> int:
    return plip(["eval", "--verify", "quick", *map(str, args)])


def test_eval_writes_results_for_each_direction(data, capsys):
    run, bench = data / "run", data / "bench"
    ds = open_dataset(bench)
    for direction, name in [("t2i", "procpedes-bench-test.json"), ("i2t", "procpedes-bench-test-i2t.json"),
                            ("both", "procpedes-bench-test-both.json")]:
        assert _eval("--checkpoint", run, "--data", bench, "--direction", direction) == 0
        doc = json.loads((run / "eval" / name).read_text())
        assert doc["dataset"]["id"] == ds.id and doc["dataset"]["name"] == "procpedes-bench"
        assert doc["split"] == "test" and doc["direction"] == direction and doc["mode"] == "text"
        assert doc["checkpoint"]["step"] == 2 and doc["checkpoint"]["checkpoint"].endswith("step-000002")
        assert doc["checkpoint"]["dataset"]["id"] == open_dataset(data / "captions").id  # what it was trained on
        expected = ["t2i", "i2t"] if direction == "both" else [direction]
        assert list(doc["metrics"]) == expected and all(set(doc["metrics"][d]) == METRIC_KEYS for d in expected)
        assert doc["code"]["package"] and doc["seconds"] > 0
        assert doc["preprocessing"] == {"image_size": [64, 32], "resize": "bicubic", "mean": [0.357, 0.323, 0.328],
                                        "std": [0.252, 0.242, 0.239], "text_max_length": 64, "text_pooling": "mean"}
    n_test = ds.manifest.splits["test"]
    assert doc["counts"]["images"] == n_test and doc["counts"]["captions"] == 2 * n_test
    assert doc["metrics"]["t2i"]["num_queries"] == 2 * n_test and doc["metrics"]["i2t"]["num_queries"] == n_test
    out = capsys.readouterr().out
    assert "procpedes-bench test i2t" in out and "R10" in out and "results" in out


def test_select_on_val_reports_test_for_the_chosen_checkpoint(data, capsys):
    run = data / "run"
    assert _eval("--checkpoint", run, "--data", data / "bench", "--select-on", "val") == 0
    doc = json.loads((run / "eval" / "procpedes-bench-test-selected-on-val.json").read_text())
    sel = doc["selection"]
    assert sel["split"] == "val" and [c["step"] for c in sel["candidates"]] == [1, 2]
    r1 = [c["metrics"]["R1"] for c in sel["candidates"]]
    best = max(range(2), key=lambda i: (r1[i], i))  # ties go to the later step
    assert sel["chosen"]["step"] == sel["candidates"][best]["step"] == doc["checkpoint"]["step"]
    assert doc["split"] == "test" and doc["metrics"]["t2i"]["num_queries"] > 0
    assert f"selected step {sel['chosen']['step']} on val" in capsys.readouterr().out
    # the reported split is never the selection split
    assert _eval("--checkpoint", run, "--data", data / "bench", "--select-on", "test") == 2
    assert "validation split" in capsys.readouterr().err


def test_config_baseline_is_reproducible(data, tmp_path, capsys):
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        assert _eval("--config", "tiny", "--data", data / "bench", "--split", "val", "--out", out) == 0
    a, b = (json.loads(p.read_text()) for p in outs)
    assert a["checkpoint"]["description"] == "initial weights of config tiny" and a["checkpoint"]["step"] is None
    assert a["split"] == "val" and a["metrics"] == b["metrics"]  # seeded initial weights
    assert _eval("--config", "tiny", "--data", data / "bench") == 2
    assert "give --out" in capsys.readouterr().err


def test_market1501_image_reid(data, tmp_path, capsys):
    raw, ds = tmp_path / "raw", tmp_path / "market"
    assert plip(["render", "--out", str(raw), "--format", "market1501", "--identities", "16", "--images-per-identity",
                 "4", "--seed", "3", "--height", "64", "--width", "32", "--captions-per-image", "0",
                 "--workers", "0"]) == 0
    assert plip(["import", "market1501", str(raw), "--out", str(ds), "--workers", "0"]) == 0
    out = tmp_path / "m.json"
    assert _eval("--checkpoint", data / "run", "--data", ds, "--out", out) == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "reid" and doc["direction"] == "i2i" and doc["split"] == "query+gallery"
    assert set(doc["metrics"]["i2i"]) == METRIC_KEYS and "same identity and camera" in doc["protocol"]
    m = open_dataset(ds).manifest
    assert doc["counts"]["query_images"] == m.splits["query"] and doc["counts"]["gallery_images"] == m.splits["gallery"]
    capsys.readouterr()
    assert _eval("--checkpoint", data / "run", "--data", ds, "--direction", "t2i", "--out", out) == 2
    assert "use --direction i2i" in capsys.readouterr().err


class ColourEmbedder:
    """A stand-in model: the embedding of an image is its mean RGB colour (so rankings can be designed)."""

    embed_dim, batch_size, device = 3, 4, torch.device("cpu")

    def encode_image(self, images):
        v = torch.tensor(np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.float32).mean((0, 1))
                                   for b in images]))
        return v / v.norm(dim=1, keepdim=True)

    def encode_text(self, texts):
        raise AssertionError("image ReID encodes no text")


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 8), rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_same_identity_same_camera_and_junk_are_excluded(tmp_path):
    red = (255, 0, 0)
    rows = [  # (key, identity, split, camera, colour)
        ("q1", 1, "query", "c1", red),
        ("q2", 3, "query", "c1", (0, 255, 0)),  # its only gallery match is on its own camera: not a valid query
        ("g-same-cam", 1, "gallery", "c1", red),  # identical to q1 but same id + camera: excluded
        ("g-junk", -1, "gallery", "c2", red),  # junk: excluded for every query
        ("g-neg", 2, "gallery", "c2", (250, 40, 0)),  # nearest remaining: a wrong identity
        ("g-pos", 1, "gallery", "c3", (200, 0, 150)),  # q1's only countable match, ranked second
        ("g-distractor", 0, "gallery", "c4", (0, 0, 255)),
        ("g-q2-same-cam", 3, "gallery", "c1", (0, 255, 0)),
    ]
    records = [make_record(f"m/{k}", identity=i, split=s, camera=c, image_bytes=_png(rgb), source="m")
               for k, i, s, c, rgb in rows]
    write_dataset(records, tmp_path / "m", name="constructed", kind="benchmark", shard_rows=3)
    res = evaluate_dataset(ColourEmbedder(), tmp_path / "m")
    m = res["metrics"]["i2i"]
    assert (m["num_queries"], m["num_valid_queries"]) == (2, 1)
    assert (m["R1"], m["R5"], m["mAP"], m["mINP"]) == (0.0, 100.0, 50.0, 50.0)  # would be R1 100 without the rule
    assert res["counts"]["junk_gallery_images"] == 1 and res["counts"]["distractor_gallery_images"] == 1


def test_embedder_inputs_agree_and_are_unit_norm(data, tmp_path):
    enc = embed.load(data / "run", device="cpu", batch_size=3)
    assert enc.info["step"] == 2 and enc.info["config"] == "tiny" and enc.info["dataset"]["name"] == "eval-captions"
    rows = list(open_dataset(data / "bench").iter_records(["key", "image"]))[:5]
    blobs = [r["image"]["bytes"] for r in rows]
    paths = []
    for i, b in enumerate(blobs):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(b)
    by_bytes = enc.encode_image(blobs)
    assert by_bytes.shape == (5, 32) and by_bytes.dtype == torch.float32 and by_bytes.device.type == "cpu"
    assert torch.allclose(by_bytes.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(enc.encode_image(paths), by_bytes)
    assert torch.equal(enc.encode_image([str(p) for p in paths]), by_bytes)
    assert torch.equal(enc.encode_image([Image.open(p) for p in paths]), by_bytes)
    assert torch.allclose(enc.encode_image(blobs[0]), by_bytes[:1], atol=1e-5)  # one image, not a list
    assert torch.allclose(enc.encode_image(enc.preprocess(blobs)), by_bytes, atol=1e-6)  # preprocessed tensors
    assert torch.allclose(embed.load(data / "run", device="cpu", batch_size=64).encode_image(blobs), by_bytes,
                          atol=1e-5)  # batching does not change the result
    txt = enc.encode_text(["a man in a red jacket", "a woman with a backpack", "blue jeans", "x"])
    assert txt.shape == (4, 32) and torch.allclose(txt.norm(dim=1), torch.ones(4), atol=1e-5)
    assert enc.encode_text([]).shape == (0, 32)
    older = embed.load(data / "run", checkpoint=1, device="cpu")
    assert older.info["step"] == 1 and not torch.equal(older.encode_image(blobs), by_bytes)
    with pytest.raises(ValueError, match=r"float tensor \(N, 3, 64, 32\)"):
        enc.encode_image(torch.zeros(1, 3, 256, 128))
    with pytest.raises(ValueError, match="could not be read"):
        enc.encode_image([b"not an image"])
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint.*step-000001, step-000002"):
        embed.load(data / "run", checkpoint=7)


def test_plip_embed_writes_parquet(data, tmp_path, capsys):
    out = tmp_path / "emb.parquet"
    assert plip(["embed", "--checkpoint", str(data / "run"), "--data", str(data / "bench"), "--out", str(out),
                 "--split", "test", "--rows-per-group", "5", "--verify", "quick"]) == 0
    ds = open_dataset(data / "bench")
    f = pq.ParquetFile(out)
    n = ds.manifest.splits["test"]
    assert f.metadata.num_rows == n and f.metadata.row_group(0).num_rows == 5
    meta = json.loads(f.schema_arrow.metadata[b"plip.embed"])
    assert meta["dataset"]["id"] == ds.id and meta["checkpoint"]["step"] == 2 and meta["split"] == "test"
    t = f.read().to_pylist()
    assert {r["split"] for r in t} == {"test"} and all(len(r["caption_texts"]) == 2 for r in t)
    vec = np.asarray(t[0]["caption_embeddings"], np.float32)
    assert vec.shape == (2, 32) and np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    enc = embed.load(data / "run", device="cpu")
    row = next(r for r in ds.iter_records(["key", "image"]) if r["key"] == t[0]["key"])
    assert np.allclose(t[0]["image_embedding"], enc.encode_image([row["image"]["bytes"]])[0].numpy(), atol=1e-6)
    assert str(out) in capsys.readouterr().out


def test_error_messages_name_the_problem(data, tmp_path, capsys):
    run, bench = data / "run", data / "bench"
    assert _eval("--checkpoint", run, "--data", bench, "--split", "nope") == 2
    err = capsys.readouterr().err
    assert "split 'nope' is not in this dataset" in err and "test (12 rows)" in err and "val (12 rows)" in err
    assert _eval("--checkpoint", tmp_path, "--data", bench) == 2
    assert "no run.json" in capsys.readouterr().err
    assert _eval("--checkpoint", run, "--data", bench, "--direction", "i2i") == 2
    assert "needs 'query' and 'gallery' splits" in capsys.readouterr().err
    # captionless text split, and a split without identities
    cfg = ProcPedesConfig(identities=4, images_per_identity=2, height=64, width=32, seed=1, captions_per_image=0,
                          split_fractions=(0.0, 0.0, 1.0))
    write_dataset([render_record(i, cfg) for i in plan_items(cfg)], tmp_path / "nocap", name="nocap", shard_rows=8,
                  kind="benchmark")
    with pytest.raises(EvaluationError, match="no captions.*use --direction i2i"):
        evaluate_dataset(embed.load(run, device="cpu"), tmp_path / "nocap")
    noid = [dict(render_record(i, BENCH), identity=-1, split="test") for i in plan_items(BENCH)[:4]]
    write_dataset(noid, tmp_path / "noid", name="noid", kind="images", shard_rows=8)
    assert _eval("--checkpoint", run, "--data", tmp_path / "noid") == 2
    assert "every row has identity -1" in capsys.readouterr().err


# ---- the official checkpoint layout -------------------------------------------------------------------------------
def official_checkpoint(layers, width, heads, grid, embed_dim, bert: dict, *, module_prefix=False, seed=0) -> dict:
    """A checkpoint in the released layout, built from the reference architectures (CLIP's ModifiedResNet in
    open_clip, transformers' BertModel as ``encoder``), not from our model: attention pool with a
    ``grid[0]*grid[1] + 1`` positional embedding, the old persistent ``position_ids`` buffer, a decoder and an
    epoch. Random values (BN running variances 1)."""
    from open_clip.modified_resnet import ModifiedResNet
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        img = ModifiedResNet(list(layers), embed_dim, heads, image_size=64, width=width).state_dict()
        txt = {f"encoder.{k}": v for k, v in BertModel(BertConfig(**bert), add_pooling_layer=True).state_dict().items()}
    img["attnpool.positional_embedding"] = torch.empty(grid[0] * grid[1] + 1, width * 32, device="meta")
    gen = torch.Generator().manual_seed(seed)

    def fill(k, v):
        if k.endswith("num_batches_tracked"):
            return torch.tensor(1000)
        if k.endswith("running_var"):
            return torch.ones(v.shape)
        return torch.randn(v.shape, generator=gen) * 0.02

    pre = "module." if module_prefix else ""
    img = {pre + k: fill(k, v) for k, v in img.items()}
    txt = {pre + k: fill(k, v) for k, v in txt.items()}
    txt[pre + "encoder.embeddings.position_ids"] = torch.arange(bert.get("max_position_embeddings", 512))[None]
    return {"ImgEncoder_state_dict": img, "TxtEncoder_state_dict": txt, "epoch": 69,
            "Decoder_state_dict": {"fuse.weight": torch.zeros(4, 4)}}


TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}


def test_convert_official_layout_tiny(data, tmp_path, capsys):
    ckpt = official_checkpoint([1, 1, 1, 1], 8, 4, (2, 1), 32, TINY_BERT, module_prefix=True)
    torch.save(ckpt, tmp_path / "plip.pth.tar")
    assert plip(["convert", "official", str(tmp_path / "plip.pth.tar"), "--out", str(tmp_path / "run"),
                 "--config", "tiny"]) == 0
    assert "strict load OK" in capsys.readouterr().out
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["converted_from"]["epoch"] == 69 and len(info["converted_from"]["sha256"]) == 64
    assert info["converted_from"]["dropped"] == {"text_keys": ["module.encoder.embeddings.position_ids"],
                                                 "top_level": ["Decoder_state_dict", "epoch"]}
    assert info["config"]["model"]["text"]["pooling"] == "pooler"
    enc = embed.load(tmp_path / "run", device="cpu")
    own = enc.model.state_dict()
    img, txt = ckpt["ImgEncoder_state_dict"], ckpt["TxtEncoder_state_dict"]
    for ours, theirs in [("image_tower.trunk.conv1.weight", img["module.conv1.weight"]),
                         ("image_tower.trunk.layer4.0.downsample.0.weight", img["module.layer4.0.downsample.0.weight"]),
                         ("image_tower.trunk.attnpool.positional_embedding",
                          img["module.attnpool.positional_embedding"]),
                         ("image_tower.trunk.bn1.running_var", img["module.bn1.running_var"]),
                         ("text_tower.encoder.encoder.layer.1.output.dense.weight",
                          txt["module.encoder.encoder.layer.1.output.dense.weight"]),
                         ("text_tower.encoder.pooler.dense.bias", txt["module.encoder.pooler.dense.bias"])]:
        assert torch.equal(own[ours], theirs), ours
    assert len(own) == len(img) + len(txt) - 1  # everything but the position_ids buffer
    # the text embedding is BERT's pooler output, as in the released model
    tokens = enc.tokenize(["a man"])
    with torch.no_grad():
        pooled = enc.model.text_tower.encoder(**tokens).pooler_output
    assert torch.allclose(enc.encode_text(["a man"]), pooled / pooled.norm(), atol=1e-6)
    # converting into the same directory again is refused
    with pytest.raises(ValueError, match="already holds a run"):
        convert_official(tmp_path / "plip.pth.tar", tmp_path / "run", config="tiny")


def test_convert_refuses_pickled_objects_unless_trusted(tmp_path):
    ckpt = official_checkpoint([1, 1, 1, 1], 8, 4, (2, 1), 32, TINY_BERT)
    ckpt["args"] = argparse.Namespace(lr=1e-3)
    torch.save(ckpt, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match=r"argparse\.Namespace.*--trust-pickle"):
        convert_official(tmp_path / "pickled.pth", tmp_path / "a", config="tiny")
    assert not (tmp_path / "a" / "run.json").exists()
    res = convert_official(tmp_path / "pickled.pth", tmp_path / "b", config="tiny", trust_pickle=True)
    assert "args" in res["dropped"]["top_level"]
    bad = {"ImgEncoder_state_dict": {}, "TxtEncoder_state_dict": {}}
    torch.save(bad, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="does not match model config 'tiny'.*missing"):
        convert_official(tmp_path / "empty.pth", tmp_path / "c", config="tiny")


@pytest.mark.slow
def test_convert_official_paper_size_follows_the_official_protocol(tmp_path, capsys):
    """The released layout at full size (ModifiedResNet-50, attention pool at 256x128, bert-base): ~147 M
    parameters, ~0.6 GB on disk."""
    ckpt = official_checkpoint([3, 4, 6, 3], 64, 8, (8, 4), 768, {})
    img, txt = ckpt["ImgEncoder_state_dict"], ckpt["TxtEncoder_state_dict"]
    assert tuple(img["attnpool.positional_embedding"].shape) == (33, 2048)
    assert tuple(img["attnpool.c_proj.weight"].shape) == (768, 2048) and tuple(img["conv1.weight"].shape) == (32, 3, 3, 3)
    assert tuple(txt["encoder.embeddings.word_embeddings.weight"].shape) == (30522, 768)
    torch.save(ckpt, tmp_path / "PLIP_MRN50.pth.tar")
    assert plip(["convert", "official", str(tmp_path / "PLIP_MRN50.pth.tar"), "--out", str(tmp_path / "run")]) == 0
    assert "147.3 M parameters" in capsys.readouterr().out
    enc = embed.load(tmp_path / "run", device="cpu", batch_size=1)
    own = enc.model.state_dict()
    for k in ("layer3.5.conv2.weight", "layer4.2.bn3.running_mean", "attnpool.q_proj.bias", "attnpool.c_proj.weight"):
        assert torch.equal(own["image_tower.trunk." + k], img[k]), k
    for k in ("encoder.embeddings.word_embeddings.weight", "encoder.encoder.layer.11.attention.self.key.weight",
              "encoder.pooler.dense.weight"):
        assert torch.equal(own["text_tower." + k], txt[k]), k
    # the official evaluation protocol (docs/evaluation.md#preprocessing): 256x128 bicubic, SYNTH-PEDES mean/std,
    # BERT-uncased WordPiece padded to 64 tokens, attention-pool image embedding, pooler text embedding
    assert enc.image_size == (256, 128) and enc.max_length == 64 and enc.config.model.text.pooling == "pooler"
    assert np.allclose(enc.transform.mean.ravel(), [0.357, 0.323, 0.328])
    assert np.allclose(enc.transform.std.ravel(), [0.252, 0.242, 0.239])
    assert len(enc.tokenizer) == 30522
    ids = enc.tokenize(["A man."])["input_ids"][0]
    assert ids.shape == (64,) and ids[:5].tolist() == [101, 1037, 2158, 1012, 102]  # bert-base-uncased ids
    x = enc.encode_image([Image.new("RGB", (60, 160), (120, 30, 200))])
    t = enc.encode_text(["a man in a red jacket"])
    assert x.shape == t.shape == (1, 768) and torch.isfinite(x).all() and torch.isfinite(t).all()
    assert abs(float(x.norm()) - 1) < 1e-5 and abs(float(t.norm()) - 1) < 1e-5

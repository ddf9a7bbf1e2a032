"""SPAC's stylised prefix captioner: configs, model structure, decoding, training/resume, checkpoints, CLI."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from plip_runtime.runs import RunOptions
from spac.captioner import (CaptionerConfig, CaptionTokenizer, CheckpointError, DecodingOptions, SpacCaptioner,
                            count_parameters, generate_tokens, list_configs, load_captioner, load_checkpoint,
                            load_config, train)
from spac.captioner.data import Collate, CorpusDataset, EpochBatches, caption_style_index, load_corpus
from synth_pedes import write_dataset
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

PROC = ProcPedesConfig(identities=10, images_per_identity=2, seed=3, captions_per_image=2, height=128, width=64)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A small ProcPedes dataset: 8 train identities x 2 images, captions cuhk-pedes + icfg-pedes."""
    out = tmp_path_factory.mktemp("spac_cap") / "procpedes"
    items = plan_items(PROC)
    write_dataset([render_record(it, PROC) for it in items], out, name="procpedes-test", kind="benchmark",
                  shard_rows=100)
    return out


@pytest.fixture(scope="module")
def tiny_run(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spac_cap") / "run"
    train(load_config("tiny", ["train.max_steps=2"]), [data_dir], out, RunOptions(progress=False))
    return out


def tiny_model(seed: int = 0, shortlist: int | None = 24) -> tuple[SpacCaptioner, CaptionTokenizer]:
    cfg = load_config("tiny")
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(seed)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).eval()
    if shortlist:  # a small output vocabulary makes END likely, so rows finish at different steps
        model.set_shortlist(range(2000, 2000 + shortlist))
    return model, tok


# --- configs ----------------------------------------------------------------------------------
def test_shipped_configs_load_and_validate():
    assert {"paper", "cpu-small", "tiny"} <= set(list_configs())
    for name in list_configs():
        cfg = load_config(name)
        assert cfg.name == name and cfg.num_styles == 2 and cfg.caption_prefix_len == 23
    paper = load_config("paper")
    assert (paper.image_size, paper.backbone, paper.decoder_layers, paper.decoder_width) == \
           ((384, 128), "resnet101", 12, 768)
    assert paper.attribute_loss_weight == 0.15 and paper.lr == 1e-4 and abs(paper.leaky_slope - 1 / 5.5) < 1e-9


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="decoder_width"):
        load_config("tiny", ["decoder_width=15"])
    with pytest.raises(ValueError, match="style_assignment"):
        load_config("tiny").replace(style_assignment="by-annotator")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['decoder_widht'\]"):
        CaptionerConfig.from_dict({"name": "x", "decoder_widht": 8})
    with pytest.raises(ValueError, match="tokenizer_path"):
        load_config("tiny").replace(tokenizer="gpt2")
    with pytest.raises(ValueError, match=r"train\.epochs: must be a number"):
        load_config("tiny", ["train.epochs=0"])
    # a config.json written before the train section existed still loads
    legacy = {k: v for k, v in load_config("tiny").to_dict().items() if k not in ("train", "split")}
    legacy.update(epochs=3, precision="bf16", checkpoint_every=7, log_every=2)
    assert CaptionerConfig.from_dict(legacy).train.to_dict() == {
        **load_config("tiny").train.to_dict(), "epochs": 3, "precision": "bf16", "checkpoint_every": 7, "log_every": 2}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_config(bad)
    good = tmp_path / "good.json"
    load_config("tiny").replace(name="mine", lr=0.01).save(good)
    assert load_config(good).lr == 0.01


def test_every_shipped_config_builds():
    tok = CaptionTokenizer.from_config(load_config("tiny"))
    with torch.device("meta"):  # paper size: count parameters without allocating them
        paper = SpacCaptioner(load_config("paper"), tok.vocab_size, tok.eos_id)
    counts = count_parameters(paper)
    assert 40e6 < counts["encoder"] < 50e6  # ResNet-101 trunk (42.5M) + FPN
    assert 105e6 < counts["decoder"] < 112e6  # GPT-2 small (124M) with the 30,522-token BERT vocab, 87 positions
    # Table 12 at D = 768: attribute 768 -> 2304 (3 tokens), sentence 1536 -> 3840 (5 tokens)
    a, s = paper.attribute_branches[0], paper.sentence_branch
    assert (a.fc1.out_features, a.fc2.out_features, len(a.convs)) == (768, 2304, 1)
    assert (s.fc1.out_features, s.fc2.out_features, len(s.convs)) == (1536, 3840, 2)
    assert a.convs[0].stride == (2, 2) and a.drop.p == 0.25 and abs(a.act.negative_slope - 1 / 5.5) < 1e-9
    assert len(paper.attribute_branches) == 6 and len(paper.style_encoders) == 2
    small = SpacCaptioner(load_config("cpu-small"), tok.vocab_size, tok.eos_id).eval()  # real EfficientNet weights
    attr, styled = small.encode_prefixes(torch.randn(2, 3, 256, 128))
    assert attr.shape == (2, 6, 3, 256) and styled.shape == (2, 2, 23, 256)


def test_large_parts_from_random_weights_are_warned_about(caplog):
    """The paper config with null weights warns once, naming both fields and their --set fixes; configs whose
    random-init parts are small (cpu-small's 256-wide decoder, tiny) and paper with local weights do not."""
    from spac.captioner.config import warn_random_init

    with caplog.at_level("WARNING", logger="spac.captioner.config"):
        message = warn_random_init(load_config("paper"))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [message]
    for text in ("backbone_weights is null", "decoder_weights is null", "ImageNet ResNet-101", "pre-trained GPT-2",
                 "--set backbone_weights=", "--set decoder_weights=", "--set tokenizer=gpt2"):
        assert text in message, text
    caplog.clear()
    only_backbone = warn_random_init(load_config("paper", ["decoder_weights=/models/gpt2", "tokenizer=gpt2",
                                                           "tokenizer_path=/models/gpt2"]))
    assert "backbone_weights" in only_backbone and "decoder_weights" not in only_backbone
    local = ["backbone_weights=/models/r101.pth", "decoder_weights=/models/gpt2", "tokenizer=gpt2",
             "tokenizer_path=/models/gpt2"]
    assert warn_random_init(load_config("paper", local)) is None
    assert warn_random_init(load_config("cpu-small")) is None and warn_random_init(load_config("tiny")) is None
    assert "decoder_weights is null" in warn_random_init(load_config("tiny", ["decoder_width=512"]))


def test_a_new_run_warns_about_random_weights_and_its_resume_does_not(data_dir, tmp_path, caplog):
    """The trainer runs the same check when it builds a new model (tiny with a 512-wide decoder: the decoder
    rule without building a paper-size model); resuming loads trained weights and says nothing."""
    cfg = load_config("tiny", ["decoder_width=512", "train.max_steps=1", "batch_size=2"])
    opts = RunOptions(progress=False)
    with caplog.at_level("WARNING"):
        train(cfg, [data_dir], tmp_path / "run", opts, limit=2)
    assert sum("decoder_weights is null" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level("WARNING"):
        train(cfg.replace(train=cfg.train.replace(max_steps=2)), [data_dir], tmp_path / "run",
              replace(opts, resume=True), limit=2)
    assert not any("random weights" in r.getMessage() for r in caplog.records)


def test_bert_tokenizer_uses_the_real_vocab():
    tok = CaptionTokenizer.from_config(load_config("tiny"))
    ids = tok.encode("A woman in a red t-shirt.", 32)
    assert tok.vocab_size == 30522 and ids[-1] == tok.eos_id and 100 not in ids  # 100 = [UNK]
    assert tok.decode(ids) == "a woman in a red t-shirt."
    assert len(tok.encode("word " * 100, 10)) == 10


# --- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["greedy", "beam", "nucleus"])
def test_cached_decoding_equals_uncached(method):
    model, _ = tiny_model()
    images = torch.randn(3, 3, 64, 32)
    opts = replace(DecodingOptions.from_config(model.cfg), method=method, num_beams=2, seed=7,
                   max_attribute_tokens=5, max_caption_tokens=9)
    cached = generate_tokens(model, images, opts)
    uncached = generate_tokens(model, images, replace(opts, use_cache=False))
    assert cached == uncached
    lengths = {len(t) for per in cached[0] + cached[1] for t in per}
    assert len(lengths) > 1, "rows should finish at different steps (exercises dropping finished rows)"
    assert max(len(t) for per in cached[0] for t in per) <= 4  # END counts towards max_attribute_tokens
    if method == "nucleus":
        assert generate_tokens(model, images, opts) == cached  # same seed, same samples
    else:  # a row decodes the same alone as in a batch (left padding + position ids)
        alone = generate_tokens(model, images[1:2], opts)
        assert alone == ([cached[0][1]], [cached[1][1]])


def test_decoding_options_are_validated_and_none_is_a_value():
    from plip_runtime.config import ConfigError

    cfg = load_config("tiny")
    opts = DecodingOptions.from_config(cfg, method="beam", num_beams=4)
    assert (opts.method, opts.num_beams, opts.top_p) == ("beam", 4, cfg.top_p)
    with pytest.raises(ConfigError, match=r"DecodingOptions.top_p: must be a number in \(0, 1\], got None"):
        DecodingOptions.from_config(cfg, top_p=None)  # not "keep the config's": pass only what you mean
    with pytest.raises(ConfigError, match="DecodingOptions.method: must be one of greedy, beam, nucleus, got 'top-k'"):
        opts.replace(method="top-k")
    with pytest.raises(ConfigError, match="DecodingOptions.num_beams: must be an integer >= 1, got 0"):
        DecodingOptions(num_beams=0)
    with pytest.raises(ConfigError, match="DecodingOptions.temperature"):
        DecodingOptions(temperature=0)
    with pytest.raises(ConfigError, match="DecodingOptions.precision"):
        DecodingOptions(precision="fp8")


def test_caption_reports_bad_images_and_captions_the_rest(data_dir, tiny_run, tmp_path):
    cap = load_captioner(tiny_run)
    rec = next(iter(__import__("synth_pedes").open_dataset(data_dir).iter_records()))
    good = tmp_path / "good.jpg"
    good.write_bytes(rec["image"]["bytes"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(rec["image"]["bytes"][:200])
    results = cap.caption([str(good), str(broken), str(tmp_path / "missing.jpg"), b"not an image", good.read_bytes()])
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "no such file" in results[2].error and "cannot decode" in results[3].error
    assert set(results[0].attributes) == {"person", "head", "upper", "lower", "shoes", "belongings"}
    assert set(results[0].captions) == {"cuhk-pedes", "icfg-pedes"}
    assert results[0].captions == results[4].captions


# --- data -------------------------------------------------------------------------------------
def test_style_assignment_and_attribute_targets(data_dir):
    cfg = load_config("tiny")
    tok = CaptionTokenizer.from_config(cfg)
    corpus = load_corpus([data_dir], cfg, tok)
    assert corpus.stats["captions_per_style"] == {"cuhk-pedes": len(corpus), "icfg-pedes": len(corpus)}
    ex = corpus.examples[0]
    assert [s for s, _ in ex.captions] == [0, 1] and ex.attributes["person"] != "unknown"
    by_pos = load_config("tiny").replace(style_assignment="by-position", styles=("first", "second"))
    assert caption_style_index(by_pos, {"style": "whatever"}, {}, 1) == 1
    assert caption_style_index(by_pos, {"style": "whatever"}, {}, 2) is None
    from_dataset = load_corpus([data_dir], load_config("tiny").replace(attribute_source="dataset"), tok)
    assert all(len(a) for a in from_dataset.examples[0].attribute_ids)
    with pytest.raises(ValueError, match="caption styles are"):
        load_corpus([data_dir], load_config("tiny").replace(styles=("rstpreid-only",)), tok)
    batch = Collate(tok.pad_id)([CorpusDataset(corpus, cfg.image_size)[x]
                                 for x in next(iter(EpochBatches(len(corpus), 3, 0, 0, 0.5)))])
    assert batch["images"].shape == (3, 3, 64, 32) and batch["attribute_tokens"].shape[0] == 18
    assert batch["caption_style"].tolist() == [0, 1, 0, 1, 0, 1]


# --- training ---------------------------------------------------------------------------------
def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    from spac.captioner import find_checkpoint

    return load_file(str(find_checkpoint(run) / "model.safetensors"))


def test_resume_gives_identical_weights(data_dir, tmp_path):
    """6 steps in one go == 3 steps, stop, resume 3 more (crossing an epoch boundary at step 4); and a
    finished 3-step run resumed with --max-steps 6 trains on to the same weights (train it longer)."""
    straight, split, longer = tmp_path / "straight", tmp_path / "split", tmp_path / "longer"
    cfg = load_config("tiny", ["train.max_steps=6", "batch_size=4", "train.checkpoint_every=2"])
    opts = RunOptions(progress=False)
    train(cfg, [data_dir], straight, opts)
    train(cfg, [data_dir], split, replace(opts, stop_after=3))
    with pytest.raises(ValueError, match="--resume"):
        train(cfg, [data_dir], split, opts)
    with pytest.raises(ValueError, match=r"batch_size 4 in the run, 2 now"):
        train(cfg.replace(batch_size=2), [data_dir], split, replace(opts, resume=True))
    res = train(cfg, [data_dir], split, replace(opts, resume=True))
    assert (res.start_step, res.end_step, res.finished) == (3, 6, True) and len(res.losses) == 3
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(ln) for ln in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    run = json.loads((split / "run.json").read_text())
    assert run["kind"] == "spac-captioner" and run["datasets"][0]["id"].startswith("sha256:") and run["step"] == 6
    assert run["finished"] and run["code"]["package"] and run["corpus"]["images"] == 16
    assert {p.name for p in (split / run["checkpoint"]).iterdir()} == {
        "config.json", "model.safetensors", "vocab.txt", "trainer.pt", "state.json", "decoder_config.json"}
    # train a finished run longer: 3 steps, then --resume with max_steps 6
    train(cfg.replace(train=cfg.train.replace(max_steps=3)), [data_dir], longer, opts)
    with pytest.raises(ValueError, match=r"already holds 3 training steps, the whole budget"):
        train(cfg.replace(train=cfg.train.replace(max_steps=3)), [data_dir], longer, replace(opts, resume=True))
    train(cfg, [data_dir], longer, replace(opts, resume=True))
    c = _weights(longer)
    assert all(torch.equal(a[k], c[k]) for k in a)
    info = json.loads((longer / "run.json").read_text())
    assert info["extensions"] == [{"at_step": 3, "changed": {"train.max_steps": [3, 6]}}]


def test_a_non_finite_loss_stops_training_at_its_step(data_dir, tmp_path, monkeypatch):
    """A captioner whose loss goes NaN stops with the step named (a NaN captioner used to train on silently and
    then add nothing to the union)."""
    from plip_runtime.finite import NonFiniteLossError
    from spac.captioner.model import SpacCaptioner

    forward = SpacCaptioner.forward

    def nan_at_step_three(self, batch):
        out = forward(self, batch)
        calls.append(1)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) == 3 else out

    calls = []
    monkeypatch.setattr(SpacCaptioner, "forward", nan_at_step_three)
    cfg = load_config("tiny", ["train.max_steps=6", "batch_size=4"])
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 2: loss=nan"):
        train(cfg, [data_dir], tmp_path / "nan", RunOptions(progress=False))


def test_checkpoint_mismatches_raise_clear_errors(tiny_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    def copy() -> Path:
        d = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_run / "checkpoints" / "step-000002", d)
        return d

    model, tok, meta = load_checkpoint(tiny_run)
    assert meta["step"] == "2" and len(model.shortlist) > 10
    d = copy()  # a vocabulary that does not belong to the weights
    lines = (d / "vocab.txt").read_text().splitlines()
    (d / "vocab.txt").write_text("\n".join(lines[:30000]) + "\n")
    with pytest.raises(CheckpointError, match=r"vocab\.txt has 30000 tokens .* 30522 rows"):
        load_checkpoint(d)
    d = copy()  # a missing tensor
    t = load_file(str(d / "model.safetensors"), device="cpu")
    meta = {"format": "spac-captioner/1", "tokenizer": "bert"}
    save_file({k: v for k, v in t.items() if k != "style_encoders.1.weight"}, str(d / "model.safetensors"), meta)
    with pytest.raises(CheckpointError, match=r"model\.safetensors .*missing tensors \['style_encoders\.1\.weight'\]"):
        load_checkpoint(d)
    d = copy()  # a config that builds different shapes
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "fpn_channels": 8}))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(d)
    d = copy()
    (d / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="not a captioner checkpoint"):
        load_checkpoint(tmp_path)


def test_local_gpt2_decoder_and_tokenizer(tmp_path):
    """The paper path on a GPU machine: a GPT-2 decoder and its BPE tokenizer from local directories."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from spac.captioner import save_checkpoint

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a man in a red jacket and blue jeans", "a woman with long black hair"] * 20,
                            vocab_size=300, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(tmp_path))
    tok = CaptionTokenizer.from_config(load_config("tiny").replace(tokenizer="gpt2", tokenizer_path=str(tmp_path)))
    torch.manual_seed(1)
    GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2)
                    ).save_pretrained(tmp_path)
    cfg = load_config("tiny").replace(tokenizer="gpt2", tokenizer_path=str(tmp_path), decoder_weights=str(tmp_path),
                                      vocab_shortlist=False)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id)
    ref = GPT2LMHeadModel.from_pretrained(tmp_path)
    assert torch.equal(model.decoder.transformer.wte.weight, ref.transformer.wte.weight)
    save_checkpoint(tmp_path / "ckpt", model, tok)
    loaded, tok2, _ = load_checkpoint(tmp_path / "ckpt")
    assert tok2.kind == "gpt2" and tok2.decode(tok2.encode("a red jacket", 10)) == "a red jacket"
    assert torch.equal(loaded.decoder.transformer.wpe.weight, ref.transformer.wpe.weight)
    with pytest.raises(ValueError, match="width, layers, vocab"):
        SpacCaptioner(cfg.replace(decoder_width=32, decoder_heads=2), tok.vocab_size, tok.eos_id)


# --- command line -----------------------------------------------------------------------------
def _cli(argv: list[str]) -> int:
    from pipelines.commands import spac

    parser = argparse.ArgumentParser()
    spac.add_arguments(parser)
    return spac.run(parser.parse_args(argv))


def test_cli_train_evaluate_and_caption(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(["train", "--data", str(data_dir), "--out", str(out), "--config", "tiny", "--max-steps", "2",
                 "--set", "max_caption_tokens=12", "--no-progress", "--evaluate", "--eval-limit", "1"]) == 0
    text = capsys.readouterr().out
    assert "trained SPAC captioner" in text and "| attribute slot |" in text and (out / "quality.md").is_file()
    report = json.loads((out / "quality.json").read_text())
    assert report["images"] == 1 and set(report["styles"]) == {"cuhk-pedes", "icfg-pedes"}
    img = tmp_path / "p.jpg"
    rec = next(iter(__import__("synth_pedes").open_dataset(data_dir).iter_records()))
    img.write_bytes(rec["image"]["bytes"])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    rc = _cli(["caption", "--checkpoint", str(out), str(img), str(tmp_path / "bad.jpg"), "--decoding", "beam"])
    text = capsys.readouterr().out
    assert rc == 1 and "belongings" in text and "icfg-pedes" in text and "error: cannot decode image" in text
    assert _cli(["caption", "--checkpoint", str(out), str(img), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error"] is None
    with pytest.raises(ValueError, match="IMAGE"):
        _cli(["caption", "--checkpoint", str(out)])


# --- captions conditioned on attributes ------------------------------------------------------------------------
def test_conditioned_captions_read_the_attribute_phrases():
    from spac.captioner.data import condition_ids
    from spac.captioner.generate import Captioner, generate

    cfg = load_config("tiny", ["caption_condition_tokens=3"])
    assert cfg.condition_len == 18 and cfg.max_positions == cfg.caption_prefix_len + 18 + cfg.max_caption_tokens
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(0)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).eval()
    phrases = [["man", "long black hair", "red t-shirt", "blue jeans", "white sneakers", "unknown"],
               ["woman", "short hair", "green coat", "black skirt", "black boots", "red backpack"]]
    ids = [tok.encode_many(p, cfg.max_attribute_tokens) for p in phrases]
    assert len(condition_ids(ids[0], 3, tok.eos_id)) == 18
    assert condition_ids([[5, 6, 7, 8, tok.eos_id]], 3, tok.eos_id) == [5, 6, 7]  # cut to 3 tokens per slot
    assert condition_ids([[5, tok.eos_id]], 3, tok.eos_id) == [5, tok.eos_id, tok.eos_id]  # padded with END

    # training: the loss depends on the condition (the decoder reads it)
    items = [{"image": torch.randn(3, 64, 32), "attribute_ids": ids[k], "caption_ids": [(0, tok.encode(
        "a man in a red t-shirt .", 20))]} for k in range(2)]
    batch = Collate(tok.pad_id, 3, tok.eos_id)(items)
    assert batch["condition_tokens"].shape == (2, 18)
    with torch.no_grad():
        loss = model(batch)["caption_loss"]
        batch["condition_tokens"][0] = batch["condition_tokens"][1]  # image 0 reads image 1's attributes
        assert float(model(batch)["caption_loss"]) != float(loss)  # near-uniform at random init: an exact test

    # generation: captions come from the condition the caller gives, with the captioner's own attributes at hand
    model.set_shortlist(range(2000, 2024))  # a small output vocabulary ends sequences early: fast decoding
    images = torch.randn(2, 3, 64, 32)
    opts = replace(DecodingOptions.from_config(cfg), max_attribute_tokens=4, max_caption_tokens=8)
    seen = []

    def condition(attribute_ids, scores):
        seen.append((len(attribute_ids), [len(row) for row in attribute_ids], scores))
        return [condition_ids(i, 3, tok.eos_id) for i in ids]

    out = generate(model, images, opts, condition)
    assert seen[0][0] == 2 and seen[0][1] == [6, 6] and all(0.0 <= p <= 1.0 for row in seen[0][2] for p in row)
    assert generate(model, images, replace(opts, use_cache=False), condition).caption_ids == out.caption_ids
    swapped = generate(model, images, opts, lambda a, s: [condition_ids(i, 3, tok.eos_id) for i in ids[::-1]])
    assert swapped.attribute_ids == out.attribute_ids  # attributes come from the image alone

    captioner = Captioner(model, tok)
    final = [dict(zip(("person", "head", "upper", "lower", "shoes", "belongings"), p)) for p in phrases]
    result = captioner.run(images, opts, attributes_for=lambda own, scores: final)
    assert result.final == final and len(result.captions) == 2 and set(result.captions[0]) == set(cfg.styles)
    assert result.captions == captioner.texts([], out.caption_ids)[1]  # the same tokens as the explicit condition

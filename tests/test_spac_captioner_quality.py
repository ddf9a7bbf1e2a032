"""SPAC captioner quality measures and the speed benchmark helpers."""
from __future__ import annotations

import pytest

from spac.captioner import load_config
from spac.captioner.quality import (StyleClassifier, Truth, canonical, canonical_words, distinct_n, evaluate_captioner,
                                    format_quality, mean_pairwise_similarity, wasserstein_1d)
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

PROC = ProcPedesConfig(identities=10, images_per_identity=2, seed=5, captions_per_image=2, height=128, width=64)


@pytest.fixture(scope="module")
def records():
    return [render_record(it, PROC) for it in plan_items(PROC)]


def test_canonical_phrases_unify_synonyms():
    assert canonical("gray denim pants") == canonical("grey jeans")
    assert canonical("black long hair") == canonical("long black hair")
    assert canonical("white running shoes") == canonical("white sneakers")
    assert canonical("Young lady") == canonical("young woman")
    assert canonical("short-sleeved dark blue tee") == canonical("navy t-shirt")
    assert canonical("red shorts") != canonical("blue shorts")


def test_canonical_words_are_built_once_and_immutable():
    words = canonical_words()
    assert canonical_words() is words
    assert words.synonyms["gray"] == "grey" and "jeans" in words.type_tokens and "hair" in words.type_tokens
    assert list(words.written_longest_first) == sorted(words.synonyms, key=len, reverse=True)
    with pytest.raises(TypeError):
        words.synonyms["gray"] = "blue"


def test_human_references_are_true_and_wrong_colours_are_not(records):
    """The truth model accepts every phrase a ProcPedes caption states, and rejects changed colours."""
    from spac.phrases import extract

    checked = 0
    for rec in records:
        truth = Truth(rec)
        for cap in rec["captions"]:
            for sp in extract(cap["text"]):
                assert truth.is_true(sp.slot, sp.text), (sp, cap["text"], truth.attributes)
                checked += 1
        upper = truth.attributes["upper"]
        if upper != "unknown":
            colour = upper.split()[0]
            other = "orange" if colour != "orange" else "purple"
            assert not truth.is_true("upper", upper.replace(colour, other, 1))
        for slot in ("lower", "shoes", "belongings"):
            if not truth.known(slot):
                assert not truth.is_true(slot, "black backpack")
    assert checked > 100


def test_text_statistics():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b c"], 2) == 1.0
    assert mean_pairwise_similarity([["a red coat", "a red coat"]]) == pytest.approx(1.0)
    assert wasserstein_1d([1, 2, 3], [1, 2, 3]) == 0.0 and wasserstein_1d([0], [2]) == 2.0
    clf = StyleClassifier(["x", "y"], min_count=1, steps=100).fit(
        ["the man is tall", "the man wears red", "a lady in her thirties", "a lady in her forties"], [0, 0, 1, 1])
    assert clf.predict(["the man is red", "a lady in her twenties"]) == [0, 1]


def test_evaluate_reports_every_measure(tmp_path, records):
    from synth_pedes import write_dataset

    from plip_runtime.runs import RunOptions
    from spac.captioner import load_captioner, train

    data = tmp_path / "data"
    write_dataset(records, data, name="procpedes-q", kind="benchmark", shard_rows=100)
    train(load_config("tiny", ["max_caption_tokens=10", "train.max_steps=1"]), [data], tmp_path / "run",
          RunOptions(progress=False))
    report = evaluate_captioner(load_captioner(tmp_path / "run"), [data], "test", samples=2)
    assert report["images"] == sum(r["split"] == "test" for r in records) and report["failed"] == 0
    assert set(report["attributes"]) == {"person", "head", "upper", "lower", "shoes", "belongings"}
    for style in ("cuhk-pedes", "icfg-pedes"):
        ref = report["styles"][style]["reference"]
        assert ref["precision"] == 1.0 and ref["recall"] > 0.8 and ref["classified_as_style"] is not None
    table = format_quality(report)
    assert "| attribute slot |" in table and "classified as style" in table and len(report["samples"]) == 2


def test_speed_helpers_measure_a_tiny_captioner():
    from spac.captioner.speed import build_random_captioner, measure_captioning

    res = measure_captioning(build_random_captioner("tiny"), batch_size=2, batches=1, warmup=0)
    assert res["images_per_s"] > 0 and res["rows_per_image"] == 8 and res["peak_rss_mb"] > 0

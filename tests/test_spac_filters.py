import numpy as np
import pytest

from spac.attributes import AttributeSet
from spac.filters import (FilterConfig, balance, gender_vote, relabel_caption, relabel_person, seed_filter,
                          unknown_slots_reason)


def _attrs(**known):
    return AttributeSet.from_dict(known)


def test_unknown_slot_rule_of_the_paper():
    full = dict(person="man", head="short hair", upper="red jacket", lower="blue jeans", shoes="white shoes",
                belongings="black bag")
    assert unknown_slots_reason(_attrs(**full)) is None
    two_unknown = {**full, "shoes": "unknown", "belongings": "unknown"}
    assert unknown_slots_reason(_attrs(**two_unknown)) is None
    three = {**two_unknown, "head": "unknown"}
    assert unknown_slots_reason(_attrs(**three)).startswith("unknown-slots: 3 of 6")
    both = {**full, "upper": "unknown", "lower": "unknown"}
    assert unknown_slots_reason(_attrs(**both)) == "unknown-slots: upper and lower both unknown"


def test_gender_vote_threshold_and_relabel():
    vote = gender_vote(["man", "young man", "man", "woman"], threshold=0.7)  # 0.75 > 0.7
    assert vote.gender == "male" and vote.share == 0.75
    assert gender_vote(["man", "woman", "man"], threshold=0.7).gender is None  # 0.67: identity dropped
    assert gender_vote(["person", "pedestrian"]).gender is None
    assert relabel_person("young woman", "male") == "young man"
    assert relabel_person("old gentleman", "female") == "old lady"
    assert relabel_person("unknown", "female") == "woman"


def test_relabel_caption_moves_words_pronouns_and_spans():
    text = "A young man in a red shirt. He carries his black bag."
    spans = [{"slot": "person", "start": 2, "end": 11}, {"slot": "upper", "start": 17, "end": 26},
             {"slot": "belongings", "start": 43, "end": 52}]
    got = relabel_caption({"text": text, "kind": "generated", "style": "s", "spans": spans}, "female")
    assert got["text"] == "A young woman in a red shirt. She carries her black bag."
    assert [got["text"][sp["start"]:sp["end"]] for sp in got["spans"]] == ["young woman", "red shirt", "black bag"]
    back = relabel_caption(got, "male")
    assert back["text"] == text and back["spans"] == spans
    same = {"text": "a person in blue", "spans": []}
    assert relabel_caption(same, "male") is same


def test_balance_bounds():
    assert balance(["a", "b"], 5, 20, 0) == ([], "balance: identity has 2 images, fewer than 5")
    keys = [f"k{i:02d}" for i in range(25)]
    kept, reason = balance(keys, 5, 20, seed=1)
    assert len(kept) == 20 and set(kept) <= set(keys) and reason.startswith("balance: identity capped")
    assert balance(keys, 5, 20, seed=1)[0] == kept  # deterministic for a seed
    assert balance(keys[:7], 5, 20, 0) == (keys[:7], None)


def _cluster(centre, n, noise, rng):
    return centre + noise * rng.standard_normal((n, len(centre)))


def test_seed_filter_filters_out_reassigns_and_merges():
    rng = np.random.default_rng(0)
    d = 32
    a, b, c = (rng.standard_normal(d) for _ in range(3))
    # identity 0: 5 of person A plus one sample of person B (a tracking error)
    # identity 1: 5 of person B; identity 2: 5 more of person B (a split tracklet: should merge with 1)
    # identity 3: 5 of person C plus one sample unlike anyone (stays excluded)
    emb = np.concatenate([_cluster(a, 5, 0.1, rng), b[None], _cluster(b, 5, 0.1, rng), _cluster(b, 5, 0.1, rng),
                          _cluster(c, 5, 0.1, rng), rng.standard_normal((1, d))])
    ids = [0] * 6 + [1] * 5 + [2] * 5 + [3] * 6
    keys = [f"k{i:02d}" for i in range(len(ids))]
    res = seed_filter(ids, keys, emb, FilterConfig())
    assert res.reassigned == 1 and res.identity["k05"] == 1  # the stray B sample went to a B identity
    assert list(res.excluded) == ["k21"] and "outlier of identity 3" in res.excluded["k21"]
    assert (1, 2) in res.merged_pairs and res.identity["k12"] == 1  # identity 2 merged into 1
    assert {res.identity[k] for k in keys[:5]} == {0} and {res.identity[k] for k in keys[16:21]} == {3}


def test_seed_filter_neighbour_range_limits_reassignment():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    fillers = [rng.standard_normal(16) for _ in range(3)]
    emb = np.concatenate([_cluster(a, 4, 0.05, rng), b[None], *[_cluster(f, 4, 0.05, rng) for f in fillers],
                          _cluster(b, 4, 0.05, rng)])
    ids = [0] * 5 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4  # B's identity (4) is 4 positions away from 0
    res = seed_filter(ids, [str(i) for i in range(len(ids))], emb, FilterConfig(neighbours=2))
    assert res.reassigned == 0 and "4" in res.excluded
    res = seed_filter(ids, [str(i) for i in range(len(ids))], emb, FilterConfig(neighbours=4))
    assert res.reassigned == 1 and res.identity["4"] == 4


def test_config_validates():
    with pytest.raises(ValueError, match=r"FilterConfig\.max_images: must be >= FilterConfig\.min_images \(10\), got 5"):
        FilterConfig(min_images=10, max_images=5)
    with pytest.raises(ValueError, match=r"FilterConfig\.sigma_s: must be a number in \[-1, 1\], got 1\.5"):
        FilterConfig(sigma_s=1.5)

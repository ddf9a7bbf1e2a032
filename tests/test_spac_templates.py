import itertools
import json
import random
import re

import numpy as np
import pytest

from spac.attributes import SLOTS, UNKNOWN, AttributeSet
from spac.phrases import attributes_from_text, extract
from spac.templates import (MARKERS, TemplateError, candidates, fill, fill_with_spans, indefinite_article,
                            load_library,
                            mine_templates, mine_templates_from_files, parse_template, prompt_caption)

FULL = [
    AttributeSet("man", "short black hair", "orange jacket", "black jeans", "white sneakers", "black backpack"),
    AttributeSet("young woman", "black cap", "white t-shirt", "long floral skirt", "brown boots", "two bags"),
    AttributeSet("pedestrian", "long hair", "umbrella-print dress", "grey trousers", "sandals", "umbrella"),
    AttributeSet("elderly lady", "ponytail", "uniform", "khaki shorts", "black running shoes", "handbag"),
]
_BAD = re.compile(r"[\[\]{}<>]|  | [,.;]|\b(a|an) (a|an|the)\b|\ba (umbrella|orange|elderly)\b|\ban uniform|"
                  r"\b(a|an) (black jeans|khaki shorts|grey trousers|sandals|long hair|short black hair|two bags|"
                  r"white sneakers|brown boots|black running shoes)", re.IGNORECASE)


def _restrict(attrs, slots):
    return AttributeSet(**{s: getattr(attrs, s) if s in slots else UNKNOWN for s in SLOTS})


def _check_output(text, spans, attrs):
    assert not _BAD.search(text), text
    assert text[0].isupper() and text.endswith("."), text
    for sentence in re.split(r"(?<=\.) ", text):
        assert sentence[0].isupper(), text
    for s in spans:
        assert text[s["start"]:s["end"]].lower() == getattr(attrs, s["slot"]).lower(), (text, s)


def test_library_size_and_syntax():
    lib = load_library()
    assert len(lib) >= 300
    assert len({t.text for t in lib}) == len(lib)
    for t in lib:
        names = re.findall(r"\[(\w+)\]", t.text)
        assert names and set(names) <= set(SLOTS), t.text
        assert set(re.findall(r"\{(\w+)\}", t.text)) <= set(MARKERS), t.text
        assert "person" in t.slots


def test_every_shipped_template_fills_grammatically():
    for t in load_library():
        for attrs in FULL:
            a = _restrict(attrs, t.slots)
            text, spans = fill_with_spans(t, a)
            _check_output(text, spans, a)
            assert {s["slot"] for s in spans} == set(t.slots)


@pytest.mark.parametrize("template,attrs,expected", [
    ("The [person] is wearing a [upper].", {"person": "man", "upper": "orange jacket"},
     "The man is wearing an orange jacket."),
    ("The [person] is wearing a [upper].", {"person": "man", "upper": "white t-shirt"},
     "The man is wearing a white t-shirt."),
    ("The [person] is wearing a [lower].", {"person": "man", "lower": "black jeans"},
     "The man is wearing black jeans."),
    ("A [person] with [head] wears a [upper].", {"person": "woman", "head": "long hair", "upper": "coat"},
     "A woman with long hair wears a coat."),
    ("A [person] with [head] wears a [upper].", {"person": "woman", "head": "black cap", "upper": "uniform"},
     "A woman with a black cap wears a uniform."),
    ("A [person] in a [upper] and [lower].", {"person": "elderly man", "upper": "umbrella-print shirt",
                                               "lower": "skirt"},
     "An elderly man in an umbrella-print shirt and a skirt."),
    ("A [person] wears a [upper] and a pair of [shoes].", {"person": "boy", "upper": "tee", "shoes": "black boots"},
     "A boy wears a tee and a pair of black boots."),
    ("A [person] wears a [upper] and a pair of [lower].", {"person": "girl", "upper": "top", "lower": "red skirt"},
     "A girl wears a top and a red skirt."),
    ("[person] carrying a [belongings].", {"person": "man", "belongings": "two bags"}, "A man carrying two bags."),
    ("The [person] is wearing a [upper], [lower] and [shoes].",
     {"person": "man", "upper": "shirt", "lower": "jeans", "shoes": "shoes"},
     "The man is wearing a shirt, jeans and shoes."),
    ("{He} has [head]. {His} [upper] is long, {he} is a [person].",
     {"person": "lady", "head": "bun", "upper": "dress"}, "She has a bun. Her dress is long, she is a lady."),
    ("A [person] is wearing a [upper]. {He} carries a [belongings] with {him}, {he} is also walking and {he} has "
     "[head].", {"person": "pedestrian", "upper": "coat", "belongings": "bag", "head": "hat"},
     "A pedestrian is wearing a coat. They carry a bag with them, they are also walking and they have a hat."),
])
def test_articles_and_pronouns(template, attrs, expected):
    a = AttributeSet.from_dict(attrs)
    text, spans = fill_with_spans(template, a)
    assert text == expected == fill(template, a)
    _check_output(text, spans, a)


def test_indefinite_article():
    assert indefinite_article("orange jacket") == "an" and indefinite_article("uniform") == "a"
    assert indefinite_article("jeans") == indefinite_article("long hair") == indefinite_article("two bags") == ""
    assert indefinite_article("dress") == "a" and indefinite_article("handbag") == "a"


def test_optional_groups_and_errors():
    t = "A [person]< with [head]> is wearing a [upper]<, carrying a [belongings]>."
    assert parse_template(t).required == {"person", "upper"}
    assert fill(t, AttributeSet("man", upper="red coat")) == "A man is wearing a red coat."
    assert fill(t, AttributeSet("man", "grey hair", "red coat", belongings="bag")) == \
        "A man with grey hair is wearing a red coat, carrying a bag."
    with pytest.raises(TemplateError, match="upper"):
        fill(t, AttributeSet("man"))
    for bad in ("A [hat].", "{She} wears a [upper].", "A [person] <with [head].", "plain text", "[upper] [upper]"):
        with pytest.raises(TemplateError):
            parse_template(bad)
    assert parse_template("A [person] with [head] wears a [up] and [down] and carries a [others].").slots == \
        set(SLOTS) - {"shoes"}


def test_every_missing_slot_pattern_has_a_template():
    """All 64 subsets: the library has a fitting template (a missing person is filled as "person")."""
    rng = random.Random(0)
    for n in range(len(SLOTS) + 1):
        for known in itertools.combinations(SLOTS, n):
            attrs = _restrict(FULL[0], known)
            assert candidates(attrs), known
            text, spans = prompt_caption(attrs, rng)
            expected = set(known) | {"person"}
            assert {s["slot"] for s in spans} == expected, (known, text)
            _check_output(text, spans, attrs if "person" in known else attrs.replace(person="person"))
    # the patterns that matter most have several templates each
    for known in [SLOTS, ("person", "upper", "lower"), *[tuple(s for s in SLOTS if s != m) for m in SLOTS[1:]],
                  ("person", "head", "upper", "lower"), ("person", "upper", "lower", "shoes"),
                  ("person", "upper", "lower", "belongings")]:
        assert len(candidates(_restrict(FULL[1], known))) >= 5, known


def test_prompt_caption_is_seeded_and_extractable():
    a = FULL[0]
    assert prompt_caption(a, random.Random(3)) == prompt_caption(a, random.Random(3))
    assert prompt_caption(a, np.random.default_rng(3)) == prompt_caption(a, np.random.default_rng(3))
    rng = random.Random(1)
    agree = total = 0
    for attrs in FULL:
        for _ in range(25):
            text, spans = prompt_caption(attrs, rng)
            got = {(s.slot, s.start, s.end) for s in extract(text)}
            want = {(s["slot"], s["start"], s["end"]) for s in spans}
            agree, total = agree + len(got & want), total + len(got | want)
    assert agree / total >= 0.95


def test_mining_round_trip():
    caption = ("The woman has long black hair and is wearing a white blouse with a dark blue skirt. "
               "She carries a brown leather handbag on her left shoulder.")
    templates = mine_templates([caption, caption])
    assert templates == ["The [person] has [head] and is wearing a [upper] with a [lower]. "
                         "{He} carries a [belongings] on {his} left shoulder."]
    text = fill(templates[0], attributes_from_text(caption))
    assert text == caption
    male = fill(templates[0], AttributeSet("man", "short hair", "orange coat", "jeans", UNKNOWN, "bag"))
    assert male == ("The man has short hair and is wearing an orange coat with jeans. "
                    "He carries a bag on his left shoulder.")


def test_mining_filters():
    assert mine_templates(["", "Nothing to see here.", "A man in a red coat over a white shirt.",
                           "A man in a red coat has no bag.", "A man in his twenties wears a red coat.",
                           "A man wearing glasses and a red coat.", "A man's shoes are white."]) == []
    assert mine_templates(["a man in a red coat. he has a black bag"]) == [
        "A [person] in a [upper]. {He} has a [belongings]."]
    assert fill("a [person] in a [upper].", AttributeSet("old man", upper="coat")) == "An old man in a coat."
    assert mine_templates(["A man with her bag walks behind her."]) == ["A [person] with {his} [belongings] walks "
                                                                        "behind {him}."]


def test_mine_templates_from_files(tmp_path):
    (tmp_path / "c.txt").write_text("A man in a red coat and blue jeans.\n\nA woman in a white dress.\n")
    (tmp_path / "c.json").write_text(json.dumps([{"captions": ["A man in a red coat and blue jeans.",
                                                               "The girl wears a black coat."]},
                                                 "A boy carries a backpack."]))
    out = mine_templates_from_files([tmp_path / "c.txt", tmp_path / "c.json"])
    assert out == ["A [person] in a [upper] and [lower].", "A [person] in a [upper].",
                   "The [person] wears a [upper].", "A [person] carries a [belongings]."]
    for t in out:
        parse_template(t)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        mine_templates_from_files([tmp_path / "bad.json"])


def test_mining_tells_an_object_placeholder_from_a_subject():
    from spac.templates import mine_templates

    assert mine_templates(["A man with short black hair is wearing a red jacket and blue jeans."]) == [
        "A [person] with [head] is wearing a [upper] and [lower]."]
    assert mine_templates(["His white sneakers are dirty and he wears a red jacket."]) == []

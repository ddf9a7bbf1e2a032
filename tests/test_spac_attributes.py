import pytest

from spac.attributes import SLOTS, UNKNOWN, AttributeSet, gender_of_word, keywords, load_lexicon
from synth_pedes import schema


def test_slots_are_the_schema_slots():
    assert SLOTS == schema.SLOTS and UNKNOWN == schema.UNKNOWN


def test_lexicon_loads_and_keyword_sets_are_disjoint():
    lex = load_lexicon()
    for slot in SLOTS:
        assert keywords(slot), slot
    for i, a in enumerate(SLOTS):
        for b in SLOTS[i + 1:]:
            assert not keywords(a) & keywords(b), (a, b, keywords(a) & keywords(b))
    assert lex.slot_of_keyword("Down Jacket") == "upper"
    assert lex.slot_of_keyword("dress") == "upper"  # full-body garments go with the upper body
    assert lex.slot_of_keyword("shoulder bag") == "belongings"
    assert {"glasses", "scarf", "watch", "socks"} <= lex.excluded
    assert not lex.excluded & set().union(*lex.keywords.values())
    for cls in ("colours", "colour_modifiers", "patterns", "materials", "adjectives"):
        assert lex.modifiers[cls]
    assert {"light", "dark", "bright"} <= lex.modifiers["colour_modifiers"]
    assert {"striped", "plaid", "checked", "floral", "printed"} <= lex.modifiers["patterns"]
    assert {"denim", "leather", "wool"} <= lex.modifiers["materials"]


def test_gender_words():
    assert gender_of_word("He") == "male" and gender_of_word("his") == "male"
    assert gender_of_word("she") == "female" and gender_of_word("her") == "female"
    assert gender_of_word("lady") == "female" and gender_of_word("pedestrian") == "neutral"
    assert gender_of_word("jacket") is None


def test_from_synth_pedes_string_round_trip():
    s = "man,black hair,black shirt,pink shorts,black shoes,unknown"
    a = AttributeSet.from_synth_pedes_string(s)
    assert a.person == "man" and a.lower == "pink shorts" and a.belongings == UNKNOWN
    assert a.to_synth_pedes_string() == s
    assert a.known_slots() == frozenset(SLOTS) - {"belongings"}
    assert AttributeSet.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="6 comma-separated parts"):
        AttributeSet.from_synth_pedes_string("man,black hair")


def test_from_dict_validation_and_normalisation():
    a = AttributeSet.from_dict({"person": "  young   woman ", "head": "", "upper": None, "shoes": "Unknown"})
    assert a.person == "young woman" and a.head == a.upper == a.shoes == a.lower == UNKNOWN
    with pytest.raises(ValueError, match="hat"):
        AttributeSet.from_dict({"person": "man", "hat": "red cap"})
    with pytest.raises(ValueError):
        AttributeSet(person=3)
    with pytest.raises(ValueError, match="slot"):
        a.is_known("hair")
    with pytest.raises(Exception):
        a.person = "man"  # frozen


@pytest.mark.parametrize("person,gender", [
    ("man", "male"), ("young woman", "female"), ("middle-aged gentleman", "male"), ("old lady", "female"),
    ("female pedestrian", "female"), ("boy", "male"), ("person", UNKNOWN), ("pedestrian", UNKNOWN),
    (UNKNOWN, UNKNOWN), ("Woman", "female"),
])
def test_gender(person, gender):
    assert AttributeSet(person=person).gender() == gender

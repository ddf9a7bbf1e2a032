"""Regenerate ``library.json``: hand-written sentence frames expanded over every subset of
{head, upper, lower, shoes, belongings}. Run ``python -m spac.templates.build_library``.

Each frame is one wording (CUHK-PEDES, ICFG-PEDES, RSTPReid or the paper's Fig. 7-8 style) that says
what it can for a subset and returns nothing where it would read badly; articles are written as "a"
and fixed by the filler.
"""
import itertools
import json
import logging
from pathlib import Path

_log = logging.getLogger(__name__)

OPTIONAL_SLOTS = ("head", "upper", "lower", "shoes", "belongings")  # the person slot is in every template


def worn(garments, form=0):
    """The list of ``garments`` (slots) in one of three phrasings (``form``), articles written as 'a' (the
    filler fixes them); None when there is none."""
    items = [f"[{slot}]" for slot in garments]
    if not items:
        return None
    if len(items) == 1:
        return f"a {items[0]}"
    if len(items) == 2:
        if form % 2 and garments[0] == "upper":
            return f"a {items[0]} with {items[1]}"
        return f"a {items[0]} and {items[1]}"
    return [f"a {items[0]}, {items[1]} and {items[2]}", f"a {items[0]} and {items[1]} with {items[2]}",
            f"a {items[0]}, {items[1]}, and {items[2]}"][form % 3]

def frames(has_head: bool, garments: list[str], has_belongings: bool) -> list[str]:
    """The sentences of every frame that can say this subset of slots.

    Short names, as the frames are dense string building: ``h`` is the head phrase (or None), ``b`` the
    belongings phrase (or None), ``w0``/``w1``/``w2`` the garments in ``worn``'s three phrasings (or None),
    ``s`` the sentence being built."""
    out = []
    w0, w1, w2 = worn(garments, 0), worn(garments, 1), worn(garments, 2)
    h = "[head]" if has_head else None
    b = "a [belongings]" if has_belongings else None
    # F1 paper/CUHK
    s = "A [person]" + (f" with {h}" if h else "")
    if w0: s += f" is wearing {w0}." + (" {He} is carrying a [belongings]." if b else "")
    elif b: s += " is carrying a [belongings]."
    else: s += " is walking."
    out.append(s)
    # F2
    if h:
        s = f"The [person] has {h}."
        if w1: s += " {He} is wearing " + w1 + (" and carrying a [belongings]." if b else ".")
        elif b: s += " {He} is carrying a [belongings]."
        out.append(s)
    # F3 ICFG
    parts = [f"A [person] with {h}" if h else "A [person]"]
    if w0: parts.append(f"wearing {w0}")
    if b: parts.append("carrying a [belongings]")
    if len(parts) > 1:
        out.append((parts[0] + ", " if h else parts[0] + " ") + ", ".join(parts[1:]) + ".")
    # F4 RSTP
    if w2:
        s = f"The [person] is wearing {w2}."
        if h and b: s += " {He} has " + h + " and carries a [belongings]."
        elif h: s += " {He} has " + h + "."
        elif b: s += " {He} carries a [belongings]."
        out.append(s)
    # F5
    if w1:
        s = f"This [person] is dressed in {w1}."
        if h and b: s += " {He} has " + h + " and is holding a [belongings]."
        elif h: s += " {He} has " + h + "."
        elif b: s += " {He} is holding a [belongings]."
        out.append(s)
    # F6
    if w0:
        extra = [x for x in (h, b) if x]
        s = f"A [person] in {w0}" + (", with " + " and ".join(extra) if extra else "") + "."
        out.append(s)
    # F7
    if w2:
        s = "The [person]" + (f" with {h}" if h else "") + f" wears {w2}"
        s += " and has a [belongings] with {him}." if b else "."
        out.append(s)
    # F8
    if w0 and (h or b):
        acts = [f"is wearing {w0}"] + ([f"has {h}"] if h else []) + (["is carrying a [belongings]"] if b else [])
        s = "A [person] is walking. {He} " + (", ".join(acts[:-1]) + " and " + acts[-1]) + "."
        out.append(s)
    # F9
    if w1 and (h or b):
        extra = " and ".join(x for x in (h, b) if x)
        out.append(f"A [person] with {extra} is wearing {w1}.")
    # F10
    if w2 and (h or b):
        s = f"Wearing {w2}, the [person]" + (f" with {h}" if h else "")
        s += " is carrying a [belongings]." if b else " is walking."
        out.append(s)
    # F12
    if h or w0:
        s = "There is a [person]" + (f" with {h}" if h else "") + "."
        if w2: s += " {He} wears " + w2 + (" and carries a [belongings]." if b else ".")
        elif b: s += " {He} carries a [belongings]."
        if s.count(".") > 1: out.append(s)
    # F13 paper: shoes in a second sentence
    if "shoes" in garments and len(garments) >= 2:
        clothes = worn([x for x in garments if x != "shoes"], 1)
        s = "A [person]" + (f" with {h}" if h else "") + f" is wearing {clothes}. " + "{He} is also wearing [shoes]"
        s += " and carrying a [belongings]." if b else "."
        out.append(s)
    # F14 paper example 2
    if h and w0:
        s = f"The [person] has {h}. " + "{He} is wearing " + w0.replace("a ", "a ", 1) + "."
        if b: s += " {He} is carrying a [belongings]."
        out.append(s)
    # F15
    if b and w0:
        s = f"A [person] carrying a [belongings] is wearing {w0}."
        if h: s += " {He} has " + h + "."
        out.append(s)
    # F16
    if h and (w1 or b):
        s = f"A [person] who has {h} is " + (f"wearing {w1}" if w1 else "") 
        if b: s += (" and holding a [belongings]" if w1 else "holding a [belongings]")
        out.append(s + ".")
    # F17
    if w0:
        extra = " and ".join(x for x in (h, b) if x)
        s = f"The [person] is in {w0}." + (" {He} has " + extra + "." if extra else "")
        out.append(s)
    # F18 ICFG with shoes apart and belongings clause
    if w1 and b:
        s = "A [person]" + (f" with {h}" if h else "") + f" is wearing {w1} and has a [belongings] with {{him}}."
        out.append(s)
    # F19 pronoun-free
    if garments:
        s = "The [person]" + (f" with {h}" if h else "") + f" is dressed in {w0}"
        s += ", carrying a [belongings]." if b else "."
        out.append(s)
    # F20 RSTP, head last
    if garments and h:
        s = f"The [person] wears {w1}" + (" and carries a [belongings]" if b else "") + ". {He} has " + h + "."
        out.append(s)
    return out

def build(path: Path = Path(__file__).with_name("library.json")) -> int:
    """Write the library; returns the number of templates."""
    templates, seen = [], set()
    for size in range(0, len(OPTIONAL_SLOTS) + 1):
        for subset in itertools.combinations(OPTIONAL_SLOTS, size):
            garments = [slot for slot in ("upper", "lower", "shoes") if slot in subset]
            if subset:
                sentences = frames("head" in subset, garments, "belongings" in subset)
            else:
                sentences = ["A [person] is walking.", "The [person] is walking down the street.",
                             "This is a [person] walking on the street."]
            for sentence in sentences:
                text = " ".join(sentence.split())
                if text not in seen:
                    seen.add(text)
                    templates.append(text)
    doc = ("Curated prompt-caption templates (see spac.templates). Written as hand-made sentence frames in the "
           "CUHK-PEDES / ICFG-PEDES / RSTPReid / paper (Fig. 7-8) styles, expanded over every subset of "
           "{head, upper, lower, shoes, belongings}, then reviewed. Pronoun markers make each template serve "
           "female, male and unknown-gender persons; an unknown gender reads 'The pedestrian ... their ...'.")
    lines = ",\n".join("  " + json.dumps({"text": t, "gender": "any"}) for t in templates)
    with open(path, "w") as f:
        f.write('{\n"version": 1,\n"_doc": ' + json.dumps(doc) + ',\n"templates": [\n' + lines + "\n]\n}\n")
    return len(templates)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _log.info("wrote %d templates", build())

"""``AttributeSet``: the six SPAC attribute phrases of one person image."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from synth_pedes.schema import SLOTS, UNKNOWN

from .lexicon import load_lexicon


def _normalise(value) -> str:
    if value is None:
        return UNKNOWN
    if not isinstance(value, str):
        raise ValueError(f"attribute values must be strings, got {type(value).__name__}: {value!r}")
    v = " ".join(value.split())
    return UNKNOWN if not v or v.lower() == UNKNOWN else v


@dataclass(frozen=True)
class AttributeSet:
    """The six slot phrases (``"unknown"`` where a slot is not known). Values are whitespace-normalised."""

    person: str = UNKNOWN
    head: str = UNKNOWN
    upper: str = UNKNOWN
    lower: str = UNKNOWN
    shoes: str = UNKNOWN
    belongings: str = UNKNOWN

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _normalise(getattr(self, f.name)))

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeSet":
        """From ``{slot: phrase}``; missing slots and ``None`` become ``unknown``; an unknown slot name raises."""
        bad = sorted(set(d) - set(SLOTS))
        if bad:
            raise ValueError(f"unknown attribute slot(s) {bad}; the slots are {SLOTS}")
        return cls(**{k: d[k] for k in d})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_synth_pedes_string(cls, s: str) -> "AttributeSet":
        """Parse SYNTH-PEDES's ``"man,black hair,black shirt,pink shorts,black shoes,unknown"`` (6 parts)."""
        if not isinstance(s, str):
            raise ValueError(f"expected a string, got {type(s).__name__}")
        parts = s.split(",")
        if len(parts) != len(SLOTS):
            raise ValueError(f"a SYNTH-PEDES attribute string has {len(SLOTS)} comma-separated parts "
                             f"({', '.join(SLOTS)}), got {len(parts)}: {s!r}")
        return cls(*parts)

    def to_synth_pedes_string(self) -> str:
        return ",".join(getattr(self, s) for s in SLOTS)

    def known_slots(self) -> frozenset:
        return frozenset(s for s in SLOTS if getattr(self, s) != UNKNOWN)

    def is_known(self, slot: str) -> bool:
        if slot not in SLOTS:
            raise ValueError(f"unknown attribute slot {slot!r}; the slots are {SLOTS}")
        return getattr(self, slot) != UNKNOWN

    def replace(self, **changes) -> "AttributeSet":
        return AttributeSet.from_dict({**self.to_dict(), **changes})

    def gender(self) -> str:
        """``male`` / ``female`` from the person phrase's gender words, else ``unknown``."""
        lex = load_lexicon()
        found = {lex.gender_of_word(w) for w in re.findall(r"[a-z]+", self.person.lower())}
        if "female" in found and "male" not in found:
            return "female"
        if "male" in found and "female" not in found:
            return "male"
        return UNKNOWN

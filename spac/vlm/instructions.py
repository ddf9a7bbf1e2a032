"""The instructions a vision-language model captions with, one per image and caption style.

In the manner of the dynamic instructions of Tan et al. (LUPerson-MLLM, "Harnessing the Power of MLLMs for
Transferable Text-to-Image Person ReID", CVPR 2024): a fixed instruction that says what to describe and forbids
guessing, plus one sentence frame from the project's template library (``spac/templates/library.json``) shown as
an example of the wording to follow. Each style of each image draws its own frame, so the m captions of an image
are worded differently while describing the same person.

The example keeps the frame's slots as placeholders ("[upper clothing]"), never filled: the model is to fill them
from the image. Pronoun markers read "he/she", optional groups lose their angle brackets.

Which frames: the library's templates with at least :data:`MIN_SLOTS` slots (required and optional together),
i.e. the frames that describe a whole outfit; "A [person] is walking." teaches a model nothing.

Which frame: ``random.Random(f"{seed}:{key}:{style_index}").randrange(len(templates))``, so the instruction of a
(seed, image key, style) is the same on every run and every worker.
"""
from __future__ import annotations

import functools
import random
import re
from typing import Sequence

from ..templates import Template, load_library, parse_template

MIN_SLOTS = 4  # frames naming fewer slots are left out of the instruction templates

FIXED_INSTRUCTION = (
    "Write one paragraph describing the person in the image: their gender, their hair, their upper clothing, "
    "their lower clothing, their shoes and their belongings (a bag, a backpack, an umbrella or anything else they "
    "carry), naming the colour of each. Describe only what is visible in the image; do not guess anything that "
    "cannot be seen, and leave out what is hidden.")
EXAMPLE_LEAD = "Word your description like this example, filling the brackets with what you see:"

SLOT_PLACEHOLDERS = {"person": "[person]", "head": "[hair]", "upper": "[upper clothing]",
                     "lower": "[lower clothing]", "shoes": "[shoes]", "belongings": "[belongings]"}
_MARKER_WORDS = {"He": "He/She", "he": "he/she", "His": "His/Her", "his": "his/her", "him": "him/her",
                 "Him": "Him/Her"}
_SLOT_ALIASES = {"up": "upper", "down": "lower", "others": "belongings", "gender": "person", "hair": "head"}


@functools.lru_cache(maxsize=1)
def load_instruction_templates() -> tuple[Template, ...]:
    """The template frames instructions draw their example from: the shipped library's templates with at least
    :data:`MIN_SLOTS` slots, in library order."""
    return tuple(t for t in load_library() if len(t.slots) >= MIN_SLOTS)


def template_example(template: Template | str) -> str:
    """A template as an example sentence: slots as readable placeholders ("[upper clothing]"; the "a"/"an" before
    one dropped, as the article depends on the phrase), pronoun markers as "he/she", optional groups' brackets
    dropped (their content kept)."""
    text = template.text if isinstance(template, Template) else parse_template(template).text

    def slot(m: re.Match) -> str:
        return SLOT_PLACEHOLDERS[_SLOT_ALIASES.get(m.group(1), m.group(1))]

    text = re.sub(r"\b(?:a|an) (?=\[(?!person\]))", "", text)  # the model picks articles, as the filler does
    text = re.sub(r"\[(\w+)\]", slot, text)
    text = re.sub(r"\{(\w+)\}", lambda m: _MARKER_WORDS[m.group(1)], text)
    return " ".join(text.replace("<", "").replace(">", "").split())


def pick_template(style_index: int, key: str, seed: int, templates: Sequence) -> Template | str:
    """The template of one (style, image key, seed): ``random.Random(f"{seed}:{key}:{style_index}")``."""
    if not templates:
        raise ValueError("no instruction templates to draw from")
    return templates[random.Random(f"{seed}:{key}:{style_index}").randrange(len(templates))]


def style_instruction(style_index: int, key: str, seed: int, templates: Sequence | None = None) -> str:
    """The instruction for one image (``key``) and one caption style: :data:`FIXED_INSTRUCTION`, then one template
    (``templates``: :func:`load_instruction_templates` when None) drawn by :func:`pick_template` and shown by
    :func:`template_example`. Same arguments, same text."""
    templates = load_instruction_templates() if templates is None else templates
    example = template_example(pick_template(style_index, key, seed, templates))
    return f'{FIXED_INSTRUCTION} {EXAMPLE_LEAD} "{example}"'


__all__ = ["FIXED_INSTRUCTION", "EXAMPLE_LEAD", "MIN_SLOTS", "SLOT_PLACEHOLDERS", "load_instruction_templates",
           "template_example", "pick_template", "style_instruction"]

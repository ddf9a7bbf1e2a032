"""ProcPedes in the PA-100K pedestrian-attribute layout (``plip render --format pa100k``).

PA-100K ships its images as ``data/000001.jpg``, ``data/000002.jpg`` ... and one MATLAB v5
``annotation.mat`` with ``attributes`` (26 x 1 cell of names), ``train_images_name`` /
``val_images_name`` / ``test_images_name`` (N x 1 cells of file names) and ``train_label`` /
``val_label`` / ``test_label`` (N x 26 0/1 matrices, rows aligned with the names). That is what
Rethinking_of_PAR's ``dataset/pedes_attr/preprocess/format_pa100k.py`` reads, and what
``synth_pedes.sources.par_annotations.read_pa100k`` reads here.

``pa100k_labels`` maps one image's ground truth (its identity's ``appearance``, the per-slot
``visible`` flags, the ``view`` and the drawn ``details``, all from ``render_record``'s ``extra``) to
the 26 labels in the file's raw order (``PA100K_ATTRIBUTES``). Labels describe *this image*, as a
PA-100K annotator would: a garment or bag whose slot is not visible in the image is 0, and so is a
pattern the drawing does not show.

ProcPedes draws no glasses and no patterned lower garments, so ``Glasses``, ``LowerStripe`` and
``LowerPattern`` are always 0. The columns are kept: the layout has 26 attributes, and a reader
indexes them by position.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# The raw order of annotation.mat's `attributes` (Rethinking_of_PAR reorders them into its group order on read).
PA100K_ATTRIBUTES = ("Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses",
                     "HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
                     "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern",
                     "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots")
# Columns ProcPedes cannot make positive: it draws no glasses and no lower-body patterns.
ALWAYS_ZERO = ("Glasses", "LowerStripe", "LowerPattern")
PA100K_SPLITS = ("train", "val", "test")
# Upper garments body.py always draws with long sleeves (`_arm`), whatever `upper_sleeve` says.
_LONG_SLEEVED_TYPES = ("jacket", "coat", "down jacket", "sweater", "hoodie")
_VIEWS = ("front", "back", "side")


def pa100k_labels(appearance: Mapping, visible: Mapping[str, bool], view: str,
                  details: Mapping[str, bool]) -> list[int]:
    """The 26 PA-100K labels (0/1, in ``PA100K_ATTRIBUTES`` order) of one ProcPedes image.

    ``appearance`` is an ``Appearance.to_dict()``, ``visible`` the per-slot flags, ``view`` the image's
    front/back/side and ``details`` ``{"inner_visible", "logo_visible"}``, as ``render_record`` stores them in
    ``extra``. Glasses, LowerStripe and LowerPattern are always 0 (ProcPedes draws neither).
    """
    a = appearance
    if view not in _VIEWS:
        raise ValueError(f"pa100k_labels: view must be one of {', '.join(_VIEWS)}, got {view!r}")
    if a["gender"] not in ("man", "woman") or a["age"] not in ("young", "adult", "old"):
        raise ValueError(f"pa100k_labels: unknown gender/age {a['gender']!r}/{a['age']!r}")
    upper, lower = bool(visible["upper"]), bool(visible["lower"])
    belongings, shoes, head = bool(visible["belongings"]), bool(visible["shoes"]), bool(visible["head"])
    # Patterns, the logo and the inner garment are all drawn in upper_second_colour. people._mutate_one
    # recolours a near-duplicate's upper_colour and upper_second_colour independently, so they can come out
    # equal; then stripes, checks, logo and inner layer are drawn in the garment's own colour and cannot be seen.
    contrast = upper and a["upper_second_colour"] != a["upper_colour"]
    bag = a["bag_type"]
    labels = {
        # The person (always visible) is a woman.
        "Female": a["gender"] == "woman",
        # `age` old is exactly age_group sixties/seventies (people._fresh): over 60.
        "AgeOver60": a["age"] == "old",
        # The rest of young (twenties) and adult (thirties to fifties) lie in 18-60; one of the three is set.
        "Age18-60": a["age"] != "old" and a["age_group"] != "teens",
        # Teens is the only age group under 18 (it includes 18 and 19: the vocabulary is no finer).
        "AgeLess18": a["age_group"] == "teens",
        # The view the person is drawn in (render.py picks exactly one per image).
        "Front": view == "front",
        "Side": view == "side",
        "Back": view == "back",
        # A cap or a hat is drawn on the head in every view (body._head).
        "Hat": head and a["headwear"] in ("cap", "hat"),
        # Never drawn.
        "Glasses": False,
        # A carried item counts only when it is visible in this image: render.py marks belongings not visible
        # when the item is not drawn (a handbag or umbrella in the far hand of a side view) or mostly hidden.
        "HandBag": belongings and bag == "handbag",
        "ShoulderBag": belongings and bag == "shoulder bag",
        # From the front only the straps are drawn; they are the backpack's visible part (slot belongings).
        "Backpack": belongings and bag == "backpack",
        # The only hand-held object besides a handbag is a folded umbrella.
        "HoldObjectsInFront": belongings and bag == "umbrella",
        # body._arm draws long sleeves for upper_sleeve long and for jackets, coats, sweaters and hoodies;
        # otherwise (t-shirt, shirt, dress with upper_sleeve short) a short sleeve over a bare arm.
        "ShortSleeve": upper and not _long_sleeved(a),
        "LongSleeve": upper and _long_sleeved(a),
        # Striped fabric over the torso (body.Painter.patterned), a striped dress included.
        "UpperStride": contrast and a["upper_pattern"] == "striped",
        # The logo is drawn only in front and back views (details.logo_visible), and in a back view a backpack
        # is drawn over the spot it sits on (body._draw_backpack_over_torso covers it entirely).
        "UpperLogo": (contrast and a["upper_pattern"] == "logo" and bool(details.get("logo_visible"))
                      and not (view == "back" and bag == "backpack")),
        # Checked fabric (body.Painter.patterned draws stripes both ways).
        "UpperPlaid": contrast and a["upper_pattern"] == "checked",
        # An open jacket / coat / down jacket seen from the front shows the inner garment in a second colour
        # (details.inner_visible): the upper body is made of two differently coloured pieces.
        "UpperSplice": contrast and bool(details.get("inner_visible")),
        # Never drawn: lower garments are plain.
        "LowerStripe": False,
        "LowerPattern": False,
        # The coat is the one upper garment drawn down to the knees (hem 0.75 of the body height).
        "LongCoat": upper and a["upper_type"] == "coat",
        # Jeans are trousers too; lower is not visible when an occluder or the frame hides the legs.
        "Trousers": lower and a["lower_type"] in ("trousers", "jeans"),
        "Shorts": lower and a["lower_type"] == "shorts",
        # A skirt is a lower garment (slot lower); a dress is drawn as the upper garment (lower_type none and
        # the lower slot never visible), so it counts when the upper body is visible.
        "Skirt&Dress": (lower and a["lower_type"] == "skirt") or (upper and a["upper_type"] == "dress"),
        # Boots are drawn only on feet; shoes not visible when cut off or occluded.
        "boots": shoes and a["shoe_type"] == "boots",
    }
    return [int(bool(labels[name])) for name in PA100K_ATTRIBUTES]


def _long_sleeved(a: Mapping) -> bool:
    return a["upper_sleeve"] == "long" or a["upper_type"] in _LONG_SLEEVED_TYPES


def record_pa100k_labels(record: Mapping) -> list[int]:
    """``pa100k_labels`` of a ProcPedes record (its ``extra``, JSON text or already a dict)."""
    extra = record["extra"]
    if isinstance(extra, str):
        extra = json.loads(extra)
    if not extra or "appearance" not in extra:
        raise ValueError(f"record {record.get('key')!r} has no ProcPedes ground truth in extra")
    return pa100k_labels(extra["appearance"], extra["visible"], extra["render"]["view"], extra.get("details") or {})


def _cell(items: list[str]) -> np.ndarray:
    """An N x 1 MATLAB cell array of strings (savemat writes an object array as a cell)."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_pa100k(records: Iterable[Mapping], out_dir) -> dict:
    """Write ``records`` into ``out_dir`` as PA-100K: ``data/<NNNNNN>.jpg`` and ``annotation.mat``.

    Records keep their split (train / val / test, identity-disjoint in ProcPedes); any other split (query,
    gallery) is written as test. Within a split images are ordered by identity then key, and named
    ``000001.jpg`` ... consecutively over train, then val, then test, as PA-100K numbers them. Records whose
    status is not ``ok`` or that have no image bytes are skipped. Returns a summary: format, images_dir,
    annotation, n_images, images_per_split, positives per attribute, always_zero and skipped_records.
    """
    from scipy.io import savemat

    out = Path(out_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    # The names depend on how many train and val images there are, so each image is staged under a temporary
    # name as it arrives (no image is held in memory) and renamed once all are in.
    staged: list[tuple[int, int, str, Path, list[int]]] = []
    skipped = 0
    for rec in records:
        if rec.get("status") != "ok" or not rec.get("image") or rec["image"].get("bytes") is None:
            skipped += 1
            continue
        split = rec.get("split") if rec.get("split") in PA100K_SPLITS else "test"
        labels = record_pa100k_labels(rec)
        tmp = data / f".staged-{len(staged):08d}.jpg"
        tmp.write_bytes(rec["image"]["bytes"])
        staged.append((PA100K_SPLITS.index(split), int(rec["identity"]), rec["key"], tmp, labels))
    staged.sort(key=lambda s: s[:3])
    names: dict[str, list[str]] = {s: [] for s in PA100K_SPLITS}
    rows: dict[str, list[list[int]]] = {s: [] for s in PA100K_SPLITS}
    for number, (split_index, _, _, tmp, labels) in enumerate(staged, start=1):
        name = f"{number:06d}.jpg"
        os.replace(tmp, data / name)
        names[PA100K_SPLITS[split_index]].append(name)
        rows[PA100K_SPLITS[split_index]].append(labels)
    content = {"attributes": _cell(list(PA100K_ATTRIBUTES))}
    for split in PA100K_SPLITS:
        content[f"{split}_images_name"] = _cell(names[split])
        content[f"{split}_label"] = np.asarray(rows[split], dtype=np.uint8).reshape(-1, len(PA100K_ATTRIBUTES))
    annotation = out / "annotation.mat"
    savemat(annotation, content, format="5")
    everything = np.concatenate([content[f"{s}_label"] for s in PA100K_SPLITS], axis=0)
    positives = {name: int(n) for name, n in zip(PA100K_ATTRIBUTES, everything.sum(axis=0))}
    per_split = {s: len(names[s]) for s in PA100K_SPLITS}
    logger.info("wrote pa100k layout: %s -> %s", per_split, out)
    return {"format": "pa100k", "images_dir": str(data), "annotation": str(annotation), "n_images": len(staged),
            "images_per_split": per_split, "positives": positives, "always_zero": list(ALWAYS_ZERO),
            "skipped_records": skipped}

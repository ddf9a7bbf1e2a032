"""ProcPedes in the PA-100K layout: the ground truth -> 26 attributes mapping, and `plip render --format pa100k`
read back by the PA-100K reader (synth_pedes.sources.par_annotations.read_pa100k)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import scipy.io

from pipelines.cli import main
from synth_pedes.sources.par_annotations import PA100K_GROUP_ORDER, read_pa100k
from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record
from synth_pedes.procpedes.par_layout import (ALWAYS_ZERO, PA100K_ATTRIBUTES, pa100k_labels, record_pa100k_labels,
                                              write_pa100k)
from synth_pedes.procpedes.people import Appearance

# The raw order of PA-100K's annotation.mat, as Rethinking_of_PAR's format_pa100k.py sees it, spelled out again here
# so that a typo or a swap in the module's list fails.
RAW_NAMES = ["Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
             "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
             "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts",
             "Skirt&Dress", "boots"]
ALL_VISIBLE = {"person": True, "head": True, "upper": True, "lower": True, "shoes": True, "belongings": True}


def person(**changes) -> dict:
    """An adult man in a plain long-sleeved blue shirt, black trousers and sneakers, with nothing to carry."""
    base = Appearance(gender="man", age="adult", age_group="thirties", height_factor=1.0, width_factor=1.0, skin=0,
                      hair_length="short", hair_colour="black", headwear="none", headwear_colour="none",
                      upper_type="shirt", upper_colour="blue", upper_second_colour="white", upper_sleeve="long",
                      upper_pattern="plain", inner_type="none", lower_type="trousers", lower_colour="black",
                      skirt_length="none", shoe_type="sneakers", shoe_colour="white", bag_type="none",
                      bag_colour="none", bag_side="left", near_duplicate_of=-1).to_dict()
    base.update(changes)
    return base


def positives(appearance, view="front", hidden=(), inner=False, logo=False) -> set[str]:
    visible = {s: s not in hidden for s in ALL_VISIBLE}
    labels = pa100k_labels(appearance, visible, view, {"inner_visible": inner, "logo_visible": logo})
    assert len(labels) == 26 and set(labels) <= {0, 1}
    return {name for name, v in zip(PA100K_ATTRIBUTES, labels) if v}


def test_attribute_names_are_pa100k_raw_order():
    assert list(PA100K_ATTRIBUTES) == RAW_NAMES
    assert set(ALWAYS_ZERO) == {"Glasses", "LowerStripe", "LowerPattern"}


def test_plain_man_gets_only_what_he_shows():
    assert positives(person()) == {"Age18-60", "Front", "LongSleeve", "Trousers"}


def test_woman_in_striped_tshirt_with_hidden_backpack():
    woman = person(gender="woman", upper_type="t-shirt", upper_sleeve="short", upper_pattern="striped",
                   bag_type="backpack", bag_colour="red", lower_type="jeans")
    # the backpack is not visible in this image (e.g. its straps leave the frame): an annotator cannot label it
    assert positives(woman, hidden=("belongings",)) == {"Female", "Age18-60", "Front", "ShortSleeve", "UpperStride",
                                                        "Trousers"}
    # the same image with the backpack in sight (seen from behind) does get it
    assert positives(woman, view="back") == {"Female", "Age18-60", "Back", "ShortSleeve", "UpperStride", "Trousers",
                                             "Backpack"}


def test_garments_of_hidden_parts_are_zero():
    boots = person(shoe_type="boots", lower_type="shorts")
    assert {"boots", "Shorts"} <= positives(boots)
    assert positives(boots, hidden=("shoes", "lower")) == {"Age18-60", "Front", "LongSleeve"}
    skirt = person(gender="woman", lower_type="skirt", skirt_length="short")
    assert "Skirt&Dress" in positives(skirt)
    assert "Skirt&Dress" not in positives(skirt, hidden=("lower",))


@pytest.mark.parametrize("bag,label", [("handbag", "HandBag"), ("shoulder bag", "ShoulderBag"),
                                       ("backpack", "Backpack"), ("umbrella", "HoldObjectsInFront")])
def test_each_carried_item_needs_its_belongings_visible(bag, label):
    bags = {"HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront"}
    carrier = person(bag_type=bag, bag_colour="brown")
    assert positives(carrier, view="side") & bags == {label}
    assert positives(carrier, view="side", hidden=("belongings",)) & bags == set()


def test_dress_counts_though_its_lower_slot_is_never_visible():
    # render.py marks `lower` not visible for a dress (lower_type none): the dress is the upper garment
    dress = person(gender="woman", upper_type="dress", upper_sleeve="short", upper_pattern="striped",
                   lower_type="none", lower_colour="none", skirt_length="long")
    assert positives(dress, hidden=("lower",)) == {"Female", "Age18-60", "Front", "ShortSleeve", "UpperStride",
                                                   "Skirt&Dress"}


def test_open_jacket_is_a_splice_only_when_the_inner_garment_shows_in_another_colour():
    jacket = person(upper_type="jacket", inner_type="t-shirt", upper_colour="black", upper_second_colour="green")
    assert "UpperSplice" in positives(jacket, inner=True)
    assert "UpperSplice" not in positives(jacket, view="back", inner=False)  # body.py draws the inner only in front
    # a near-duplicate can be recoloured to upper_second_colour == upper_colour: the inner layer is then invisible
    same = dict(jacket, upper_second_colour="black")
    assert "UpperSplice" not in positives(same, inner=True)
    coat = person(upper_type="coat", inner_type="sweater")
    assert positives(coat, inner=True) == {"Age18-60", "Front", "LongSleeve", "UpperSplice", "LongCoat", "Trousers"}


def test_sleeves_follow_what_body_draws():
    # body._arm draws a hoodie with long sleeves whatever upper_sleeve says
    assert {"LongSleeve"} == positives(person(upper_type="hoodie", upper_sleeve="short")) & {"LongSleeve",
                                                                                            "ShortSleeve"}
    assert {"ShortSleeve"} == positives(person(upper_type="shirt", upper_sleeve="short")) & {"LongSleeve",
                                                                                             "ShortSleeve"}


def test_logo_and_checks():
    logo = person(upper_type="hoodie", upper_pattern="logo", bag_type="backpack", bag_colour="grey")
    assert "UpperLogo" in positives(logo, view="front", logo=True)
    assert "UpperLogo" not in positives(logo, view="side", logo=False)  # not drawn in a side view
    assert "UpperLogo" not in positives(logo, view="back", logo=True)  # drawn, but the backpack covers it
    assert "UpperLogo" in positives(dict(logo, bag_type="none", bag_colour="none"), view="back", logo=True)
    assert "UpperPlaid" in positives(person(upper_pattern="checked"))
    assert "UpperPlaid" not in positives(person(upper_pattern="checked", upper_second_colour="blue"))


@pytest.mark.parametrize("age,group,label", [("young", "teens", "AgeLess18"), ("young", "twenties", "Age18-60"),
                                             ("adult", "fifties", "Age18-60"), ("old", "sixties", "AgeOver60")])
def test_age_columns(age, group, label):
    ages = {"AgeOver60", "Age18-60", "AgeLess18"}
    assert positives(person(age=age, age_group=group)) & ages == {label}


def test_headwear():
    assert "Hat" in positives(person(headwear="cap", headwear_colour="red"))
    assert "Hat" in positives(person(headwear="hat", headwear_colour="black"))
    assert "Hat" not in positives(person())


def test_unknown_view_is_an_error():
    with pytest.raises(ValueError, match="view"):
        pa100k_labels(person(), ALL_VISIBLE, "top", {})


# ---- on rendered records ---------------------------------------------------------------------------------------

CFG = ProcPedesConfig(identities=40, images_per_identity=3, seed=3, captions_per_image=0)


@pytest.fixture(scope="module")
def records():
    return [render_record(it, CFG) for it in plan_items(CFG)]


def test_view_and_age_are_one_of_three_on_rendered_records(records):
    col = {name: i for i, name in enumerate(PA100K_ATTRIBUTES)}
    seen_views, seen_ages = set(), set()
    for rec in records:
        labels = record_pa100k_labels(rec)
        extra = json.loads(rec["extra"])
        views = [name for name in ("Front", "Side", "Back") if labels[col[name]]]
        ages = [name for name in ("AgeOver60", "Age18-60", "AgeLess18") if labels[col[name]]]
        assert views == [extra["render"]["view"].capitalize()]
        assert len(ages) == 1
        assert labels[col["ShortSleeve"]] + labels[col["LongSleeve"]] == 1
        seen_views.update(views)
        seen_ages.update(ages)
        a = extra["appearance"]
        if a["lower_type"] in ("trousers", "jeans"):
            assert labels[col["Trousers"]] == int(extra["visible"]["lower"])
        for name in ALWAYS_ZERO:
            assert labels[col[name]] == 0
    assert seen_views == {"Front", "Side", "Back"}  # the sample covers every view, so the checks above bite
    assert seen_ages == {"AgeOver60", "Age18-60", "AgeLess18"}


def test_rendered_records_with_a_hidden_slot_drop_its_attributes(records):
    """The visibility rule meets real renders: some trousers, boots or bags are hidden by an occluder or the frame,
    and those images lose exactly that label."""
    hidden = 0
    col = {name: i for i, name in enumerate(PA100K_ATTRIBUTES)}
    for rec in records:
        extra = json.loads(rec["extra"])
        a, vis = extra["appearance"], extra["visible"]
        labels = record_pa100k_labels(rec)
        if a["shoe_type"] == "boots" and not vis["shoes"]:
            assert labels[col["boots"]] == 0
            hidden += 1
        if a["bag_type"] == "backpack" and not vis["belongings"]:
            assert labels[col["Backpack"]] == 0
            hidden += 1
        if a["shoe_type"] == "boots" and vis["shoes"]:
            assert labels[col["boots"]] == 1
    assert hidden > 0


def test_write_pa100k_skips_bad_records_and_maps_other_splits_to_test(records, tmp_path):
    train = [r for r in records if r["split"] == "train"][:4]
    broken = dict(train[0], key="procpedes/broken.jpg", status="error", image=None)
    gallery = dict(train[1], key="procpedes/gallery/x.jpg", split="gallery")
    summary = write_pa100k(train[2:] + [broken, gallery], tmp_path)
    assert summary["skipped_records"] == 1 and summary["n_images"] == 3
    assert summary["images_per_split"] == {"train": 2, "val": 0, "test": 1}
    ann = read_pa100k(tmp_path / "annotation.mat")  # empty val: still a valid file
    assert ann.image_names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert (tmp_path / "data" / "000003.jpg").read_bytes() == gallery["image"]["bytes"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ann.image_names  # no staging files left


def test_write_pa100k_does_not_depend_on_record_order(records, tmp_path):
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    write_pa100k(records, tmp_path / "a")
    write_pa100k(shuffled, tmp_path / "b")
    a, b = (scipy.io.loadmat(tmp_path / d / "annotation.mat") for d in "ab")
    for key in ("train_label", "val_label", "test_label"):
        np.testing.assert_array_equal(a[key], b[key])
    for name in sorted(p.name for p in (tmp_path / "a" / "data").iterdir()):
        assert (tmp_path / "a" / "data" / name).read_bytes() == (tmp_path / "b" / "data" / name).read_bytes()


# ---- plip render --format pa100k -------------------------------------------------------------------------------


def test_render_pa100k_reads_back_with_the_pa100k_reader(tmp_path, capsys):
    out = tmp_path / "pa100k"
    assert main(["render", "--out", str(out), "--format", "pa100k", "--identities", "12", "--images-per-identity",
                 "2", "--seed", "5", "--captions-per-image", "0", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "annotation.mat") in printed and "UpperStride" in printed

    config = ProcPedesConfig(identities=12, images_per_identity=2, seed=5, captions_per_image=0)
    rendered = [render_record(it, config) for it in plan_items(config)]
    ann = read_pa100k(out / "annotation.mat")
    # names: numbered consecutively over train, then val, then test, and every file there
    assert ann.image_names == [f"{i:06d}.jpg" for i in range(1, 25)]
    assert all((out / "data" / name).is_file() for name in ann.image_names)
    # split sizes: the records' own splits
    for split in ("train", "val", "test"):
        assert len(ann.partition[split]) == sum(r["split"] == split for r in rendered) > 0
    # each row: the image of one record, with that record's labels (the reader puts them in group order)
    expected = []
    for split in ("train", "val", "test"):
        expected += sorted((r for r in rendered if r["split"] == split), key=lambda r: (r["identity"], r["key"]))
    for row, (name, rec) in enumerate(zip(ann.image_names, expected)):
        assert (out / "data" / name).read_bytes() == rec["image"]["bytes"]
        np.testing.assert_array_equal(ann.labels[row], np.asarray(record_pa100k_labels(rec))[PA100K_GROUP_ORDER])
    assert ann.attribute_names == [RAW_NAMES[i] for i in PA100K_GROUP_ORDER]
    # the raw file as format_pa100k.py indexes it
    raw = scipy.io.loadmat(out / "annotation.mat")
    assert [raw["attributes"][i][0][0] for i in range(26)] == RAW_NAMES
    assert raw["train_label"].shape == (len(ann.partition["train"]), 26)
    assert ann.labels.sum() > 0 and not ann.labels.all()

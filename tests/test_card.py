"""``plip card``: statistics computed on a real Dask cluster, the card's YAML and prose, the report's
pictures, ground truth on ProcPedes rows, and refusal of tampered datasets.

The small caption dataset below is built so every figure can be worked out by hand (see ``_rows``).
"""
import json
import os
import shutil
import stat

import pytest
import yaml
from _fixtures import jpeg_bytes, make_writable, write_old_layout_dataset
from PIL import Image

from pipelines.cli import main
from synth_pedes import make_record, validate_dataset, write_dataset
from synth_pedes.card import make_card
from synth_pedes.card.job import writable
from synth_pedes.card.sketch import DistinctSketch
from synth_pedes.card.text import judge

ATTRS = {"person": "man", "head": "short black hair", "upper": "red jacket", "lower": "blue jeans",
         "shoes": "unknown", "belongings": "unknown"}
G1 = "A man in a red jacket and blue jeans."  # 9 words, 3 spans that agree
G2 = "A man in a red jacket and blue jeans with a backpack."  # 12 words, + a bag the attributes call unknown
PROMPT = "The man wears a green jacket."  # 6 words: person agrees, upper contradicts


def _spans(text, *pairs):
    return [{"slot": slot, "start": text.index(p), "end": text.index(p) + len(p)} for slot, p in pairs]


def _rows():
    """10 ok rows (identities 1,1,1,1,2,2,2,3,3,3), one error row, one filtered row.

    Rows 0-4 carry a black backpack and caption G1; rows 5-9 have no bag but caption G2 names one."""
    rows = []
    for i in range(10):
        attrs = dict(ATTRS, belongings="black backpack" if i < 5 else "unknown")
        gen = G1 if i < 5 else G2
        gen_spans = _spans(gen, ("person", "man"), ("upper", "red jacket"), ("lower", "blue jeans"),
                           *([("belongings", "backpack")] if i >= 5 else []))
        captions = [{"text": gen, "style": "s1", "kind": "generated", "spans": gen_spans},
                    {"text": PROMPT, "style": "prompt", "kind": "prompt",
                     "spans": _spans(PROMPT, ("person", "man"), ("upper", "green jacket"))}]
        rows.append(make_record(f"t/{i:03d}.jpg", identity=1 if i < 4 else 2 if i < 7 else 3, source="t",
                                image_bytes=jpeg_bytes(i), width=32, height=64, attributes=attrs, captions=captions))
    rows.append(make_record("t/bad.jpg", identity=1, source="t", status="error", error="corrupt image: bad bytes"))
    rows.append(make_record("t/f.jpg", identity=9, source="t", image_bytes=jpeg_bytes(99), attributes=ATTRS,
                            status="filtered", error="gender-vote: no gender above 0.7 in identity 9"))
    return rows


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    """The dataset, written in 3 shards, and its card made by the command on a 2-worker LocalCluster."""
    root = tmp_path_factory.mktemp("card")
    write_dataset(_rows(), root / "ds", name="tiny-captions", kind="captions", shard_rows=5,
                  producer={"stage": "test", "config": {"a": 1}, "captioner": {"path": "/m", "sha256": "ab" * 32}})
    assert main(["card", str(root / "ds"), "--workers", "2"]) == 0
    return root / "ds"


def test_statistics_match_the_hand_computed_numbers(carded):
    s = json.loads((carded / "report" / "stats.json").read_text())
    assert s["rows"] == 12 and s["files"] == 3 and s["images"] == 10
    assert s["status_counts"] == {"error": 1, "filtered": 1, "ok": 10}
    assert s["reasons"] == {"error": {"corrupt image": 1}, "filtered": {"gender-vote": 1}}
    ids = s["identities"]
    assert ids["count"] == 3 and ids["images_per_identity"]["histogram"] == {"3": 2, "4": 1}
    assert ids["images_per_identity"]["mean"] == pytest.approx(10 / 3, abs=1e-3)
    assert s["captions"]["total"] == 20 and s["captions"]["per_image"]["mean"] == 2.0
    assert s["caption_length"]["generated/s1"]["mean"] == 10.5 and s["caption_length"]["prompt"]["mean"] == 6.0
    div = s["diversity"]
    assert (div["s1"]["distinct_1_count"], div["s1"]["ngrams_1"]) == (10, 105)
    assert div["s1"]["distinct_1"] == round(10 / 105, 4) and div["s1"]["distinct_2"] == round(11 / 95, 4)
    assert div["prompt"]["distinct_1"] == 0.1 and div["prompt"]["distinct_2"] == 0.1
    assert s["vocabulary"]["size"] == 13 and s["vocabulary"]["exact"]
    assert s["openings"]["s1"][0] == ["a man in", 10, 1.0]
    slots = s["attributes"]["slots"]
    assert slots["shoes"]["unknown_rate"] == 1.0 and slots["belongings"]["unknown_rate"] == 0.5
    assert slots["person"]["unknown_rate"] == 0.0 and slots["belongings"]["distinct_values"] == 2
    assert s["attributes"]["unknown_slots_per_image"]["histogram"] == {"1": 5, "2": 5}


def test_faithfulness_compares_stored_spans_with_the_attributes(carded):
    f = json.loads((carded / "report" / "stats.json").read_text())["faithfulness"]
    gen, prompt, overall = f["by_group"]["generated/s1"], f["by_group"]["prompt"], f["overall"]
    assert (gen["spans"], gen["exact"], gen["unsupported"], gen["contradict"]) == (35, 30, 5, 0)
    assert gen["agreement"] == round(30 / 35, 4) and gen["coverage"] == round(30 / 45, 4)
    assert (prompt["exact"], prompt["contradict"], prompt["agreement"]) == (10, 10, 0.5)
    assert (overall["spans"], overall["agreement"]) == (55, round(40 / 55, 4))
    assert f["by_slot"]["upper"]["contradiction_rate"] == 0.5 and f["by_slot"]["belongings"]["unsupported"] == 5


def test_card_front_matter_prose_and_report(carded, tmp_path, monkeypatch):
    text = (carded / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    default, rejected = meta["dataset_info"]  # the usable rows (status ok) and the rows kept for provenance
    assert default["config_name"] == "default" and rejected["config_name"] == "rejected"
    assert default["splits"] == [{"name": "train", "num_bytes": default["dataset_size"], "num_examples": 10}]
    assert rejected["splits"] == [{"name": "train", "num_bytes": rejected["dataset_size"], "num_examples": 2}]
    assert [f["name"] for f in default["features"]][:3] == ["key", "identity", "source"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": ["data/train-00000-of-00003.parquet",
                                                                             "data/train-00001-of-00003.parquet"]}]},
        {"config_name": "rejected", "data_files": [{"split": "train",
                                                    "path": ["rejected/train-00002-of-00003.parquet"]}]}]
    assert meta["synth_pedes"]["rows"] == {"all": 12, "default_config": 10}  # size_categories counts the default's
    assert meta["size_categories"] == ["n<1K"] and meta["pretty_name"] == "tiny-captions" and meta["license"]
    assert "synthetic-captions" in meta["tags"] and meta["synth_pedes"]["verified"] == "full"
    for needle in ("## How it was made", "stage `test`", "model `captioner`: /m", "72.7%", "9.1% describe a slot",
                   "synth_pedes.open_dataset", "@inproceedings", "| SYNTH-PEDES | 4,791,711 | 312,321 |",
                   "report/index.html"):
        assert needle in text, needle
    report = carded / "report"
    page = (report / "index.html").read_text()
    pngs = sorted(p.relative_to(report).as_posix() for p in [*report.glob("*.png"), *report.glob("samples/*")])
    assert {"faithfulness.png", "images_per_identity.png", "caption_length.png", "attribute_values.png",
            "status.png", "samples/00.jpg"} <= set(pngs)
    for name in pngs:
        assert f'src="{name}"' in page
        with Image.open(report / name) as im:
            im.verify()
    assert 'href="../README.md"' in page and 'href="stats.json"' in page
    assert validate_dataset(carded).ok  # the card's files are not shards: the dataset still validates
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    hf = datasets.load_dataset(str(carded))  # through the card's YAML, with no other argument: the usable rows
    assert list(hf) == ["train"] and hf["train"].num_rows == 10 and set(hf["train"]["status"]) == {"ok"}
    assert hf["train"].features["image"].__class__.__name__ == "Image" and hf["train"][0]["image"].size == (32, 64)
    kept = datasets.load_dataset(str(carded), "rejected")["train"]  # the rows kept for provenance, by name
    assert sorted(kept["status"]) == ["error", "filtered"]
    assert not os.stat(carded / "data/train-00000-of-00003.parquet").st_mode & stat.S_IWUSR  # and stays read-only


def _flip_image_byte(shard):
    """Change one byte inside a stored JPEG: same size, still readable, different sha256."""
    make_writable(shard)
    data = bytearray(shard.read_bytes())
    at = data.index(b"\xff\xd8\xff") + 200
    data[at] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_tampered_dataset_is_refused_unless_no_verify(carded, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(carded, ds)
    shutil.rmtree(ds / "report")
    (ds / "README.md").unlink()
    _flip_image_byte(ds / "data/train-00001-of-00003.parquet")
    assert main(["card", str(ds), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "data/train-00001-of-00003.parquet" in err and "sha256" in err and "no card was written" in err
    assert not (ds / "README.md").exists() and not (ds / "report").exists()
    assert main(["card", str(ds), "--workers", "0", "--no-verify"]) == 0
    text = (ds / "README.md").read_text()
    assert "**Not verified.**" in text and yaml.safe_load(text.split("---\n")[1])["synth_pedes"]["verified"] == "none"
    assert "Not verified" in (ds / "report" / "index.html").read_text()
    shard = ds / "rejected/train-00002-of-00003.parquet"
    make_writable(shard)
    shard.write_bytes(shard.read_bytes()[:300])  # unreadable: without verification it is named, not a traceback
    assert main(["card", str(ds), "--workers", "0", "--no-verify"]) == 2
    assert "rejected/train-00002-of-00003.parquet cannot be read" in capsys.readouterr().err


def test_edited_manifest_is_refused_and_described_with_no_verify(carded, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(carded, ds)
    manifest = ds / "manifest.json"
    make_writable(manifest)
    manifest.write_text(manifest.read_text().replace('"stage": "test"', '"stage": "edited"'))
    assert main(["card", str(ds), "--workers", "0"]) == 2
    assert "does not match its content" in capsys.readouterr().err
    assert main(["card", str(ds), "--workers", "0", "--no-verify"]) == 0
    assert "the manifest failed its check" in (ds / "README.md").read_text()


def test_out_dir_hand_written_readme_and_read_only_directory(carded, tmp_path, monkeypatch, capsys):
    out = tmp_path / "card"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    args = ["card", str(carded), "--out", str(out), "--workers", "0", "--quick", "--samples", "2"]
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert (out / "README.md").read_text() == "# my notes\n"
    assert main([*args, "--force"]) == 0
    meta = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert meta["configs"][0]["data_files"][0]["path"][0] == os.path.relpath(carded / "data/train-00000-of-00003.parquet", out)
    assert main(args) == 0  # our own card is replaced without --force
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores modes: pretend we are not root
    with writable(locked):
        assert os.stat(locked).st_mode & stat.S_IWUSR
    assert stat.S_IMODE(os.stat(locked).st_mode) == 0o555


def test_ground_truth_accuracy_on_procpedes_rows(tmp_path):
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    config = ProcPedesConfig(identities=2, images_per_identity=2, captions_per_image=1)
    rows = [render_record(item, config) for item in plan_items(config)]
    truth_upper = rows[0]["attributes"]["upper"]
    rows[0]["attributes"] = dict(rows[0]["attributes"], upper="purple striped coat")  # one wrong prediction
    write_dataset(rows, tmp_path / "pp", name="pp", kind="captions", shard_rows=2)
    result = make_card(tmp_path / "pp", verify="quick", samples=1)
    gt = result.stats["ground_truth"]
    assert gt["rows"] == 4 and truth_upper != "purple striped coat"
    assert gt["attributes"]["upper"]["accuracy"] == 0.75 and gt["attributes"]["upper"]["wrong"] == 1
    assert gt["attributes"]["person"]["exact_accuracy"] == 1.0
    assert all(g["precision"] == 1.0 for g in gt["caption_phrases"].values())  # ProcPedes captions are true
    assert "ground_truth.png" in result.plots


def test_phrase_rule_and_distinct_sketch():
    assert judge("a pair of gray running shoes", "grey sneakers") == "exact"
    assert judge("black hair", "long black hair") == "consistent" and judge("man", "young man") == "consistent"
    assert judge("young man", "young woman") == "contradict" and judge("backpack", "unknown") == "unsupported"
    small = DistinctSketch(k=64).update(str(i) for i in range(50))
    assert small.exact and small.count() == 50
    big = DistinctSketch(k=256).update(str(i) for i in range(20000))
    assert not big.exact and abs(big.count() - 20000) < 0.25 * 20000
    merged = DistinctSketch(k=64).update(["a", "b"]).merge(DistinctSketch(k=64).update(["b", "c"]))
    assert merged.count() == 3


def test_per_caption_faithfulness_scores_each_caption_against_its_row(carded):
    from synth_pedes.card.faithfulness import caption_faithfulness, repeated_word

    assert caption_faithfulness(G1, _spans(G1, ("person", "man"), ("upper", "red jacket")), ATTRS) == 1.0
    assert caption_faithfulness(PROMPT, _spans(PROMPT, ("person", "man"), ("upper", "green jacket")), ATTRS) == 0.5
    assert caption_faithfulness("A woman in a green coat.", _spans("A woman in a green coat.", ("person", "woman"),
                                                                   ("upper", "green coat")), ATTRS) == 0.0
    assert caption_faithfulness("A person.", [], ATTRS) is None  # names no attribute phrase: nothing to judge
    assert repeated_word("a man man man man in black") == "man" and repeated_word(G2) is None
    c = json.loads((carded / "report" / "stats.json").read_text())["caption_faithfulness"]
    # generated: 5 captions at 1.0 (G1) and 5 at 0.75 (G2 names a bag the attributes call unknown); prompt: 10 at 0.5
    assert c["by_group"]["generated/s1"]["count"] == 10 and c["by_group"]["generated/s1"]["median"] == 0.75
    assert c["by_group"]["prompt"]["mean"] == 0.5 and c["by_group"]["prompt"]["below_0_5"] == 0.0
    assert c["overall"]["count"] == 20 and c["overall"]["mean"] == pytest.approx(13.75 / 20, abs=1e-3)
    text = (carded / "README.md").read_text()
    assert "self-agreement" in text and "not the truth" in text and "per-caption faithfulness" in text


def _procpedes_folder_rows():
    """ProcPedes rows as they look after the image-folder path: no ground truth in ``extra``. Every row's
    attributes and its one generated caption say "purple striped coat": self-consistent, and false."""
    from synth_pedes.card.truth import truth_table_line
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    config = ProcPedesConfig(identities=2, images_per_identity=3, captions_per_image=1)
    rendered = [render_record(item, config) for item in plan_items(config)]
    table = "".join(truth_table_line(r, r["key"]) for r in rendered)
    text = "Someone in a purple striped coat."
    for r in rendered:
        r["extra"] = None
        r["attributes"] = dict(r["attributes"], upper="purple striped coat")
        r["captions"] = [{"text": text, "style": "s", "kind": "generated",
                          "spans": _spans(text, ("upper", "purple striped coat"))}]
    return rendered, table


def test_card_with_a_truth_table_scores_against_the_truth_not_the_rows_own_attributes(tmp_path, capsys):
    rows, table = _procpedes_folder_rows()
    write_dataset(rows, tmp_path / "ds", name="folder-synth", kind="captions", shard_rows=4)
    (tmp_path / "ground-truth.jsonl").write_text(table)
    plain = make_card(tmp_path / "ds", tmp_path / "plain", verify="quick", samples=1).stats
    assert plain["ground_truth"]["rows"] == 0  # the folder path dropped the truth
    assert main(["card", str(tmp_path / "ds"), "--workers", "0", "--truth", str(tmp_path / "ground-truth.jsonl")]) == 0
    assert "synthetic caption phrases 0.0% true" in capsys.readouterr().out
    s = json.loads((tmp_path / "ds" / "report" / "stats.json").read_text())
    assert s["faithfulness"]["overall"]["agreement"] == 1.0  # self-agreement says all is well ...
    gt = s["ground_truth"]
    assert gt["rows"] == gt["rows_in_truth_table"] == 6 and gt["synthetic_caption_phrases"]["accuracy"] == 0.0
    assert gt["attributes"]["upper"]["accuracy"] == 0.0 and gt["attributes"]["head"]["accuracy"] > 0.5  # ... it is not
    readme_text = (tmp_path / "ds" / "README.md").read_text()
    assert "**synthetic caption phrases true (ground truth)** | **0.0%**" in readme_text


def test_a_bad_or_foreign_truth_table_is_refused_with_nothing_written(tmp_path, capsys):
    rows, table = _procpedes_folder_rows()
    write_dataset(rows, tmp_path / "ds", name="folder-synth", kind="captions", shard_rows=4)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(table.splitlines()[0] + "\n{\"image_sha256\": \"xyz\"}\n")
    assert main(["card", str(tmp_path / "ds"), "--workers", "0", "--truth", str(bad)]) == 2
    assert f"{bad} line 2: image_sha256 'xyz' is not a sha256 hex digest" in capsys.readouterr().err
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("".join(json.dumps({**json.loads(line), "image_sha256": "0" * 64}) + "\n"
                               for line in table.splitlines()))
    assert main(["card", str(tmp_path / "ds"), "--workers", "0", "--truth", str(foreign)]) == 2
    assert "not the table of these images" in capsys.readouterr().err
    assert not (tmp_path / "ds" / "README.md").exists()


def test_degenerate_captions_are_warnings_not_faithful_scores(tmp_path):
    loop = "a man man man man man man man man man man"  # a decoding loop whose one phrase agrees
    attrs = dict(ATTRS, shoes="unknown")
    rows = [make_record(f"d/{i:03d}.jpg", identity=i // 5, source="d", image_bytes=jpeg_bytes(i), width=32, height=64,
                        attributes=attrs, captions=[{"text": loop, "style": "s1", "kind": "generated",
                                                     "spans": _spans(loop, ("person", "man"))}])
            for i in range(120)]
    write_dataset(rows, tmp_path / "loop", name="loop", kind="captions", shard_rows=60)
    s = make_card(tmp_path / "loop", verify="quick", samples=1).stats
    assert {w["code"] for w in s["warnings"]} == {"tiny-vocabulary", "distinct-2-near-zero", "repeated-word",
                                                  "slot-always-unknown"}
    assert s["faithfulness"]["overall"]["agreement"] == 1.0  # phrase by phrase it looks perfect
    c = s["caption_faithfulness"]
    assert not c["measurable"] and c["overall"]["count"] == 0 and c["repeating"]["generated/s1"]["captions"] == 120
    text = (tmp_path / "loop" / "README.md").read_text()
    assert "**Warning (repeated-word)**" in text and "slot `shoes` is `unknown`" in text
    assert "Warning (repeated-word)" in (tmp_path / "loop" / "report" / "index.html").read_text()
    assert make_card(tmp_path / "loop", tmp_path / "clean", verify="quick", samples=1).stats  # still writes


# --- the report's pictures, as a reader sees them (tools/card_screenshots.py shows the whole page) ---

@pytest.fixture(scope="module")
def procpedes_card(tmp_path_factory):
    """A card of 4 ProcPedes identities x 2 images (ground truth included), made in-process."""
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    root = tmp_path_factory.mktemp("ppcard")
    config = ProcPedesConfig(identities=4, images_per_identity=2, height=64, width=32)
    write_dataset([render_record(item, config) for item in plan_items(config)], root / "pp", name="pp",
                  kind="captions", shard_rows=4)
    return make_card(root / "pp", verify="quick", samples=3)


def _drawn(fig):
    """The figure laid out and drawn, and its renderer (for the artists' on-canvas bounding boxes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _figures(stats):
    from synth_pedes.card import plots

    return {name: fig for name, draw in plots.PLOTS.items() if (fig := draw(stats)) is not None}


def test_histograms_have_integer_ticks_and_one_value_is_one_bar(procpedes_card):
    from synth_pedes.card import plots

    stats = procpedes_card.stats
    assert stats["captions"]["per_image"]["histogram"] == {"2": 8}  # every image has 2: one bar
    for draw in (plots.captions_per_image, plots.images_per_identity):
        fig = draw(stats)
        _drawn(fig)
        ax = fig.axes[0]
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (draw.__name__, ticks)
        assert all(float(t).is_integer() for t in ax.get_yticks()), draw.__name__  # counts are whole too
        bar = ax.patches[0]
        assert bar.get_width() <= 0.5 * (high - low), draw.__name__  # a bar, not the whole axis


def test_legends_cover_no_bar_and_no_text(procpedes_card):
    overlapping = []
    for name, fig in _figures(procpedes_card.stats).items():
        renderer = _drawn(fig)
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        texts = [fig._suptitle] if fig._suptitle else []
        for ax in fig.axes:
            texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                overlapping += [(name, "bar") for p in ax.patches
                                if p.get_width() and p.get_height() and box.overlaps(p.get_window_extent(renderer))]
            overlapping += [(name, t.get_text()) for t in texts
                            if t.get_text() and box.overlaps(t.get_window_extent(renderer))]
    assert not overlapping


def test_every_plot_labels_its_axes(procpedes_card):
    figures = _figures(procpedes_card.stats)
    assert {"faithfulness.png", "attribute_values.png", "diversity.png", "ground_truth.png"} <= set(figures)
    unlabelled = []
    for name, fig in figures.items():
        _drawn(fig)
        for ax in fig.axes:
            categorical_y = any(t.get_text() and not t.get_text().replace(".", "").replace("−", "").isdigit()
                                for t in ax.get_yticklabels())  # horizontal bars name their rows
            if not ax.get_xlabel() or not (ax.get_ylabel() or categorical_y):
                unlabelled.append((name, ax.get_title()))
    assert not unlabelled


def test_diversity_plot_shows_values_corpus_sizes_and_the_warning_line(procpedes_card):
    from synth_pedes.card import plots
    from synth_pedes.card.faithfulness import MAX_DISTINCT_2

    div = procpedes_card.stats["diversity"]
    fig = plots.diversity(procpedes_card.stats)
    _drawn(fig)
    ax = fig.axes[0]
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [MAX_DISTINCT_2]
    values = {t.get_text() for t in ax.texts}
    assert {f"{div[g]['distinct_2']:.2f}" for g in div} <= values  # each bar says its value
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{g}\n{div[g]['ngrams_2']:,} bigrams" for g in div]


def test_report_page_has_the_samples_captions_as_text_beside_their_images(procpedes_card, tmp_path):
    from synth_pedes.card import plots

    report = procpedes_card.report
    page = (report / "index.html").read_text()
    samples = procpedes_card.stats["samples"]
    assert len(samples) == 3 and not (report / "samples.png").exists()
    for i, sample in enumerate(samples):
        assert f'src="samples/{i:02d}.jpg"' in page
        with Image.open(report / "samples" / f"{i:02d}.jpg") as im:
            assert im.size == (32, 64)  # the stored image, not shrunk into a grid
        for caption in sample["captions"]:
            assert caption["text"].replace("'", "&#x27;") in page
    # an undecodable image is a picture saying so, in its place: the samples and their files stay in step
    names = plots.sample_images([{"key": "a.jpg", "image": b"not an image"}, {"key": "b.jpg", "image": None}],
                                tmp_path)
    assert names == ["samples/00.png", "samples/01.png"]


def test_a_card_of_an_old_layout_dataset_lists_every_file_and_says_how_to_migrate(tmp_path):
    """Datasets written before the data/ layout keep their cards: one train split of every file, and the way out."""
    old = tmp_path / "old"
    write_old_layout_dataset(old, _rows())
    assert main(["card", str(old), "--workers", "0"]) == 0
    text = (old / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": [
        "part-00000.parquet"]}]}]
    assert meta["synth_pedes"]["rows"] == {"all": 12, "default_config": 12}
    assert "older layout" in text and f"plip migrate {old} --out NEW_DIR" in text



def test_an_attribute_dataset_s_card_says_what_it_is_and_counts_its_labels(tmp_path):
    """A PA-100K-layout import: the card calls it attribute recognition (not retrieval) and tabulates every
    attribute's positives per split, in the order of the manifest's names."""
    from synth_pedes import open_dataset

    assert main(["render", "--format", "pa100k", "--out", str(tmp_path / "raw"), "--identities", "12",
                 "--images-per-identity", "2"]) == 0
    assert main(["import", "pa100k", str(tmp_path / "raw"), "--out", str(tmp_path / "pa"), "--workers", "0"]) == 0
    assert main(["card", str(tmp_path / "pa"), "--workers", "0"]) == 0
    text = (tmp_path / "pa" / "README.md").read_text()
    assert "- image-classification" in text and "pedestrian-attribute-recognition" in text
    assert "text-based-person-retrieval" not in text and "a pedestrian attribute recognition dataset" in text
    ds = open_dataset(tmp_path / "pa")
    rows = [r for r in ds.iter_records(["split", "attribute_labels"], status="ok") if r["split"] == "train"]
    female = ds.manifest.attribute_names.index("Female")
    positives = sum(r["attribute_labels"][female] for r in rows)
    assert f"| {female} | Female | {positives} ({100 * positives / len(rows):.1f}%) |" in text
    assert "Never positive here: " in text and "Glasses" in text.split("Never positive here: ")[1]

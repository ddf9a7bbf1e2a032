import json

from pipelines.cli import main


def test_bench_shards_quick_writes_results_and_table(tmp_path, capsys):
    out = tmp_path / "bench" / "results.json"
    assert main(["bench", "shards", "--quick", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    rows = {r["metric"]: r for r in results["shards"]["rows"]}
    assert rows["writer / write_table"]["value"] > 0
    assert {"writer peak RSS, 2000 rows", "writer peak RSS, 20000 rows"} <= set(rows)
    assert results["shards"]["machine"]["cores"] >= 1
    assert "| shards | writer / write_table |" in out.with_suffix(".md").read_text()
    assert main(["bench", "nope", "--out", str(out)]) == 2
    assert "unknown benchmark suite" in capsys.readouterr().err


def test_gpu_suite_runs_in_its_tiny_form_on_the_cpu(tmp_path):
    """`plip bench gpu` on a GPU machine is this same code at paper size: every section runs here first, and the
    results land in one JSON."""
    out = tmp_path / "gpu.json"
    assert main(["bench", "gpu", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["gpu"]
    assert set(res["details"]) == {"ceiling", "retrieval", "pretrain", "caption", "synth", "vlm", "finetune"}
    rows = {r["metric"]: r for r in res["rows"]}
    assert not [m for m in rows if m.endswith(": failed")], [rows[m]["note"] for m in rows if m.endswith(": failed")]
    pre = res["details"]["pretrain"]
    assert pre["in_memory"] > 0 and pre["end_to_end"] > 0 and pre["flops_per_sample"] > 1e6
    assert set(pre["loader_images_per_s"]) >= {"0", "1"} and min(pre["loader_images_per_s"].values()) > 0
    assert res["details"]["caption"]["images_per_s"] > 0 and res["details"]["retrieval"]["R1"] >= 0
    runs = res["details"]["synth"]["runs"]
    assert set(runs) == {"1", "2"} and all(r["images_per_s_per_gpu"] > 0 for r in runs.values())
    best = max(r["images_per_s_per_gpu"] for r in runs.values())
    hours = rows["projected: LUPerson's 4.18 M images on one such GPU"]["value"]
    assert abs(hours - 4_180_000 / best / 3600) <= 0.01 * hours + 0.01
    vlm = res["details"]["vlm"]
    assert vlm["images_per_s"] > 0 and vlm["tokens_per_s"] > 0 and all(r["images_per_s_per_gpu"] > 0
                                                                      for r in vlm["runs"].values())
    ft = res["details"]["finetune"]
    assert ft["in_memory"] > 0 and ft["end_to_end"] > 0 and ft["batch_size"] == 8 and ft["config"] == "text-reid"
    assert ft["image_reid"]["in_memory"] > 0 and ft["image_reid"]["config"] == "image-reid"
    assert ft["attributes"]["in_memory"] > 0 and ft["attributes"]["config"] == "attributes"
    assert ft["attributes"]["image_size"] == [64, 64]  # tiny's 64x32 at 4:3, rounded to the 32-pixel grid
    assert all("pass" not in r for r in res["rows"] if "per GPU" in r.get("goal", ""))  # no GPU: no GPU goal


def test_spac_quality_suite_scores_the_real_path_with_tiny_models(tmp_path, monkeypatch):
    """The real render → train → synth → score path at the tiniest sizes: the structure, accuracies in [0, 1],
    the baseline and ceiling beside the recognizers, goals on the rows that have targets, the per-slot table."""
    from pipelines.benchmarks import spac_quality

    monkeypatch.setitem(spac_quality.SIZES, "quick", {
        "train_corpus_identities": 20, "test_corpus_identities": 30, "images_per_identity": 2,
        "classifier_steps": 2, "captioner_steps": 2})
    monkeypatch.setattr(spac_quality, "CLASSIFIER", ("tiny", []))
    monkeypatch.setattr(spac_quality, "CAPTIONER", ("tiny", []))
    out = tmp_path / "bench" / "results.json"
    assert main(["bench", "spac-quality", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["spac-quality"]
    details = res["details"]
    assert details["test_images"] == 6 and details["synth"]["status"] == {"ok": 6}
    assert set(details["recognizers"]) == {"classifier", "captioner", "spac", "majority", "ceiling"}
    for source in details["recognizers"].values():
        for slot in source["slots"].values():
            assert 0 <= slot["exact"] <= 1 and 0 <= slot["true"] <= 1
    assert details["recognizers"]["ceiling"]["summary"]["true"]["mean"] > 0.9  # human captions name true phrases
    assert set(details["captions"]) == {"greedy", "nucleus"} and len(details["samples"]) == 6
    assert set(details["captions"]["nucleus"]["styles"]) == {"cuhk-pedes", "icfg-pedes"}
    rows = {r["metric"]: r for r in res["rows"]}
    assert "attributes, majority baseline: mean per-slot accuracy (true wording)" in rows
    assert "attributes, caption-label ceiling: mean per-slot accuracy (true wording)" in rows
    goals = [r for r in res["rows"] if "goal" in r]
    assert len(goals) == 2 + 2 * 2 * 5 and all(isinstance(r["pass"], bool) for r in goals)
    assert "| upper |" in (out.parent / "spac-quality.md").read_text()


def _tiny_transfer_settings(tmp_path, monkeypatch, steps: int, batch: int) -> None:
    """The transfer suites at the tiniest sizes: a tiny PLIP pre-trained for ``steps`` on the quick benchmark (as
    PLIP_TRANSFER_PRETRAINED), tiny models at 64x32 with ``batch`` images per step."""
    from pipelines.benchmarks import transfer

    pretrained = tmp_path / "pretrained"
    bench = transfer.render_benchmark(tmp_path, quick=True)
    assert main(["train", "--data", str(bench), "--out", str(pretrained), "--config", "tiny", "--max-steps",
                 str(steps), "--set", "data.num_workers=0"]) == 0
    monkeypatch.setenv("PLIP_TRANSFER_PRETRAINED", str(pretrained))
    monkeypatch.setattr(transfer, "SETTINGS", {"config": "tiny", "height": 64, "width": 32, "lr": 1e-3,
                                                  "batch": batch})


def test_transfer_suite_compares_initialisations_over_protocols(tmp_path, monkeypatch):
    """`plip bench transfer` at the tiniest sizes: zero-shot, linear probe, fine-tune (100 % and 10 %) and the
    cross-style shift, each for both initialisations, in one table with the paper's numbers beside it."""
    from pipelines.benchmarks import transfer

    _tiny_transfer_settings(tmp_path, monkeypatch, steps=2, batch=8)
    out = tmp_path / "bench" / "results.json"
    assert main(["bench", "transfer", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["transfer"]
    assert set(res["results"]) == {
        "zero-shot | -", "linear probe | 100 %", "linear probe | 10 % of identities", "fine-tune (CMPM/C) | 100 %",
        "fine-tune (CMPM/C) | 10 % of identities", "fine-tune on cuhk-pedes captions, test on icfg-pedes | 100 %",
        "the same, tested on cuhk-pedes (its own style) | 100 %"}
    for per_init in res["results"].values():
        for init in transfer.INITS:
            assert all(0 <= r["test"]["R1"] <= 100 for r in per_init[init])
    table = (out.parent / "transfer.md").read_text()
    assert "| fine-tune (CMPM/C) | 100 % |" in table and "71.13" in table


def test_image_reid_suite_compares_initialisations(tmp_path, monkeypatch):
    """`plip bench image-reid` at the tiniest sizes: zero-shot and BoT for both initialisations in one table."""

    _tiny_transfer_settings(tmp_path, monkeypatch, steps=1, batch=16)
    out = tmp_path / "bench" / "results.json"
    assert main(["bench", "image-reid", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["image-reid"]
    assert set(res["results"]) == {"zero-shot", "BoT fine-tune, 1 epochs"}
    assert all(0 <= r["test"]["mAP"] <= 100 for per in res["results"].values() for v in per.values() for r in v)
    assert "| BoT fine-tune, 1 epochs |" in (out.parent / "image-reid.md").read_text()


def test_attributes_suite_compares_initialisations(tmp_path, monkeypatch):
    """`plip bench attributes` at the tiniest sizes: ProcPedes rendered as PA-100K and imported as PA-100K, the
    linear probe and the fine-tune for both initialisations in one table with the paper's figures beside it."""
    from pipelines.benchmarks import transfer

    _tiny_transfer_settings(tmp_path, monkeypatch, steps=1, batch=16)
    out = tmp_path / "bench" / "results.json"
    assert main(["bench", "attributes", "--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["attributes"]
    assert set(res["results"]) == {"linear probe", "fine-tune"}
    for per_init in res["results"].values():
        for init in transfer.INITS:
            (only,) = per_init[init]
            assert set(only["test"]) == {"mA", "Acc", "Prec", "Rec", "F1"} and 0 <= only["test"]["mA"] <= 100
            assert len(only["per_attribute"]) == 26
    table = (out.parent / "attributes.md").read_text()
    assert "| fine-tune |" in table and "82.21" in table

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


def test_synth_accelerator_rows_run_the_paper_size_path_on_any_device(tmp_path):
    """The GPU section of `plip bench synth` (paper size, several workers per GPU, LUPerson projection)
    is the same code as here, with device="cpu" and the tiny config: it must not first run on a GPU box."""
    from pipelines.benchmarks.synth import LUPERSON_IMAGES, accelerator_rows

    rows = accelerator_rows(tmp_path, device="cpu", config="tiny", n=32, batch_size=8)
    by_metric = {r["metric"]: r for r in rows}
    best = by_metric["images/s per GPU at tiny size, end to end (best of the above)"]["value"]
    assert best > 0 and by_metric["images/s per GPU at tiny size, end to end (best of the above)"]["pass"] is False
    hours = by_metric["projected time for LUPerson's 4.18 M images"]["value"]
    assert abs(hours - LUPERSON_IMAGES / best / 3600) <= 0.01 * hours + 0.01
    runs = [r for r in rows if r["metric"].startswith("plip synth tiny")]
    assert runs and all(r["value"] > 0 and "32 images end to end" in r["note"] for r in runs)

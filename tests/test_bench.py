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

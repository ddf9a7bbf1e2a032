import json

from pipelines.cli import main


def test_mine_templates_from_a_dataset_and_a_text_file(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["render", "--out", str(data), "--identities", "6", "--images-per-identity", "2",
                 "--workers", "0"]) == 0
    text = tmp_path / "caps.txt"
    text.write_text("A man with short black hair is wearing a red jacket and blue jeans.\n\n")
    out = tmp_path / "mined.json"
    assert main(["spac", "mine-templates", str(data), str(text), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    texts = [t["text"] for t in doc["templates"]]
    assert "A [person] with [head] is wearing a [upper] and [lower]." in texts
    assert doc["sources"][0]["captions"] == 24 and doc["sources"][1]["captions"] == 1
    assert all("[" in t for t in texts)
    assert "mined" in capsys.readouterr().out
    assert main(["spac", "mine-templates", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2

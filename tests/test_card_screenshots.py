"""tools/card_screenshots.py: the card's report page drawn by headless Chromium (skipped where there is none,
as on CI: install it with ``apt-get install chromium`` to run it)."""
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from synth_pedes import write_dataset
from synth_pedes.card import make_card

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "card_screenshots.py"
sys.path.insert(0, str(TOOL.parent))
from card_screenshots import find_browser  # noqa: E402


def _run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_without_a_browser_it_says_how_to_get_one(tmp_path):
    proc = _run(tmp_path, "--out", tmp_path / "shots", "--browser", tmp_path / "no-chromium")
    assert proc.returncode == 2 and "install Chromium (apt-get install chromium) or pass --browser" in proc.stderr


@pytest.mark.skipif(find_browser() is None, reason="no Chromium or Chrome on PATH")
def test_screenshots_of_a_cards_report_page(tmp_path):
    from synth_pedes.procpedes import ProcPedesConfig, plan_items, render_record

    config = ProcPedesConfig(identities=3, images_per_identity=2, height=64, width=32)
    write_dataset([render_record(item, config) for item in plan_items(config)], tmp_path / "pp", name="pp",
                  kind="captions", shard_rows=6)
    report = make_card(tmp_path / "pp", verify="quick", samples=2).report
    proc = _run(report, "--out", tmp_path / "shots", "--width", 900)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "shots" / "index-900.png") as page:
        assert page.width == 900 and page.height > 3000  # the whole page, every plot, not one screenful
        pieces = -(-page.height // 1000)
    assert sorted(p.name for p in (tmp_path / "shots").glob("index-900-*.png")) == [
        f"index-900-{i:02d}.png" for i in range(pieces)]
    assert proc.stdout.splitlines()[0] == str(tmp_path / "shots" / "index-900.png")

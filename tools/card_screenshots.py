"""Screenshots of a dataset card's report page (``report/index.html``) in headless Chromium, to look at the page
as a reader's browser draws it: plots at the page's width, the samples' text, tables.

    python tools/card_screenshots.py DATASET/report --out shots [--width 1280 --width 800] [--browser PATH]

For each width it writes ``index-<width>.png``, the whole page (the window is made tall, then the blank space
below the page is cut off), and ``index-<width>-NN.png``, the same cut into screen-high pieces that an image
viewer shows at full size. Needs Chromium (``apt-get install chromium``) or Chrome on PATH, or ``--browser``.
Maintenance tool: prints what it wrote.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_HEIGHT = 16000  # px: the tallest page captured (a card's page is 5,000-9,000 px at 1280 wide)
SCREEN_HEIGHT = 1000  # px: the height of one piece


def find_browser(given: str | None = None) -> str | None:
    if given:
        return shutil.which(given) or (given if Path(given).is_file() else None)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _capture(browser: str, page: Path, width: int, target: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state from, or left in, the user's own
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{PAGE_HEIGHT}", f"--screenshot={target}",
               page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not target.is_file():
        raise RuntimeError(f"{browser} did not write {target} (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")


def _trim(path: Path) -> Image.Image:
    """Cut the blank (white) space below the page off the tall window's screenshot."""
    with Image.open(path) as shot:
        shot = shot.convert("RGB")
    box = ImageChops.difference(shot, Image.new("RGB", shot.size, "white")).getbbox()
    if box is None:
        raise RuntimeError(f"{path}: the page rendered blank")
    return shot.crop((0, 0, shot.width, min(shot.height, box[3] + 20)))


def screenshots(report: Path, out: Path, widths: list[int], browser: str) -> list[Path]:
    """Write the full-page and the screen-high screenshots of ``report/index.html`` at each width."""
    page = report / "index.html" if report.is_dir() else report
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no report page here; pass the report/ directory that plip card wrote")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for width in widths:
        full = out / f"index-{width}.png"
        _capture(browser, page, width, full)
        shot = _trim(full)
        shot.save(full)
        written.append(full)
        for i, top in enumerate(range(0, shot.height, SCREEN_HEIGHT)):
            piece = out / f"index-{width}-{i:02d}.png"
            shot.crop((0, top, width, min(shot.height, top + SCREEN_HEIGHT))).save(piece)
            written.append(piece)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the card's report/ directory (or its index.html)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG screenshots")
    parser.add_argument("--width", type=int, action="append", help="window width in px (repeatable; "
                        "default 1280 and 800)")
    parser.add_argument("--browser", help="Chromium or Chrome executable (default: the first of "
                        f"{', '.join(BROWSERS)} on PATH)")
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        print(f"card_screenshots: no browser found ({args.browser or ', '.join(BROWSERS)}); install Chromium "
              "(apt-get install chromium) or pass --browser PATH", file=sys.stderr)
        return 2
    try:
        written = screenshots(args.report, args.out, args.width or [1280, 800], browser)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"card_screenshots: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

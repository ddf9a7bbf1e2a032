"""Every ``docs/<page>.md#<section>`` cited in the repository's Python, JSON and Markdown files exists.

Code cites the documentation by repository path and GitHub heading anchor; these tests keep the citations
true when a page or a heading is renamed, and keep citations to documents outside the repository out.
Pure file reading: no imports of the packages.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SUFFIXES = {".py", ".json", ".md"}
SKIP_DIRS = {".venv", "venv", "__pycache__", "build", "dist", "node_modules", "runs", "demo-out"}
CITATION = re.compile(r"(?<![\w-])docs/([\w./-]+?\.md)(?:#([\w-]+))?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
# citations of documents that live outside the repository (written so that this file does not match itself)
OUTSIDE = re.compile("(design|spec) \u00a7|plip" + "-spec|design\\.md|anchors\\.md|style\\.md|environment\\.md")


def source_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                       and not d.endswith(".egg-info")]
        out += [Path(dirpath, f) for f in filenames if Path(f).suffix in SUFFIXES]
    return sorted(out)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: inline markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    found, seen, fenced = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def problem(page: Path, anchor: str | None) -> str | None:
    if not page.is_file():
        return "no such page"
    if anchor and anchor not in anchors(page):
        return f"no heading with anchor #{anchor} (anchors: {', '.join(sorted(anchors(page)))})"
    return None


def test_every_cited_docs_page_and_anchor_exists():
    bad, cited = [], 0
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                cited += 1
                why = problem(DOCS / m.group(1), m.group(2))
                if why:
                    bad.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)}: {why}")
    assert cited > 0, "no docs/ citation found: is ROOT right?"
    assert not bad, "citations of missing documentation:\n" + "\n".join(bad)


def test_links_between_docs_pages_resolve():
    bad = []
    for page in sorted(DOCS.glob("*.md")):
        for lineno, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for target in MD_LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue  # http:, https:, mailto:
                file, _, anchor = target.partition("#")
                if file and not file.endswith(".md"):
                    if not (page.parent / file).exists():
                        bad.append(f"{page.name}:{lineno}: {target}: no such file")
                    continue
                why = problem((page.parent / file) if file else page, anchor or None)
                if why:
                    bad.append(f"{page.name}:{lineno}: {target}: {why}")
    assert not bad, "broken links in docs/:\n" + "\n".join(bad)


def test_no_citations_of_documents_outside_the_repository():
    me = Path(__file__).resolve()
    bad = []
    for path in source_files():
        if path.resolve() == me:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:100]}")
    assert not bad, ("cite docs/<page>.md#<section> instead of documents outside the repository:\n"
                     + "\n".join(bad))


def test_slug_follows_github():
    assert slug("The record") == "the-record"
    assert slug("`plip_runtime`: the bottom") == "plip_runtime-the-bottom"
    assert slug("Image ReID on Market-1501") == "image-reid-on-market-1501"
    assert slug("Downstream CMPM/C") == "downstream-cmpmc"

"""``make_card``: verify a dataset, compute its statistics in one Dask pass, write the card and report.

Order of work, so nothing is written for a dataset that fails its checks:
1. open the manifest and check every shard's presence, size, schema and row count (``--no-verify``:
   read the manifest only, even one whose id check fails, and say so in the card);
2. one task per shard on the Dask cluster (or in this process) streams the shard and returns a
   ``PartialStats``; with full verification the task also hashes the shard, so the checksums are
   checked in the same parallel pass instead of a second read; partials merge on the client;
3. a second, tiny read fetches the images of the sampled rows;
4. plots, ``stats.json`` and ``index.html`` are written to a temporary ``report`` directory that
   replaces the old one at the end, then ``README.md`` is replaced atomically.

A finished dataset's files are read-only and stay so: the card only adds ``README.md`` and
``report/``, which are not in the manifest's shard list, so ``validate_dataset`` still passes. If the
directory itself was made read-only, its owner's write bit is lifted for the write and restored.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from plip_runtime.version import package_version

from ..dataset import validate_dataset
from ..futures import as_finished
from ..errors import IntegrityError, ManifestError, SynthPedesError
from ..manifest import MANIFEST_NAME, Manifest, ShardInfo, read_manifest
from . import html, plots, readme, reference
from .lineage import lineage
from .partial import PartialStats, shard_partial
from .summary import summarize
from .truth import load_truth_table

CARD_FORMAT = "synth-pedes-card/1"
README_NAME, REPORT_DIR = "README.md", "report"
VERIFY_NOTES = {"full": "manifest id, and every shard's size, schema, row count and sha256, and unique keys",
                "quick": "manifest id, and every shard's size, schema and row count (checksums skipped)"}


class CardError(SynthPedesError):
    """The card cannot be written (an existing hand-written README, a directory that is not ours)."""


@dataclass
class CardResult:
    readme: Path
    report: Path
    stats: dict
    plots: list[str]


def _unchecked_manifest(directory: Path, problem: Exception) -> Manifest:
    """``--no-verify``: the manifest as written, even if its id no longer matches its content."""
    try:
        doc = json.loads((directory / MANIFEST_NAME).read_text())
        fields = {k: doc[k] for k in ("name", "kind", "version", "producer", "splits", "status_counts",
                                      "description", "created_at") if k in doc}
        return Manifest(shards=tuple(ShardInfo(**s) for s in doc["shards"]), parents=tuple(doc.get("parents", ())),
                        **fields)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ManifestError(f"{directory}: cannot read the manifest even without verification ({e}); "
                            f"the original problem: {problem}") from e


def open_checked(directory: Path, verify: str) -> tuple[Manifest, str]:
    """The manifest and a sentence saying what was verified; raises naming every problem found."""
    if verify == "none":
        try:
            return read_manifest(directory), "NOT verified (--no-verify): shards were not checked against the manifest"
        except ManifestError as e:
            note = f"NOT verified (--no-verify), and the manifest failed its check: {e}"
            return _unchecked_manifest(directory, e), note
    report = validate_dataset(directory, "quick")  # sizes, schema, rows; the checksums come in the pass
    if report.manifest is None:
        raise ManifestError(f"{report.problems[0]} No card was written.")
    if report.problems:
        raise IntegrityError(f"{directory} failed verification, so no card was written: " + " | ".join(report.problems)
                             + ". Restore the dataset, or pass --no-verify to describe the files as they are "
                               "(the card will say it was not verified).")
    return report.manifest, VERIFY_NOTES[verify]


def run_pass(directory: Path, manifest: Manifest, client=None, verify_sha256: bool = False,
             on_progress: Callable | None = None, truth_table: str | None = None) -> PartialStats:
    """One task per shard; merge the partials as they finish (memory: one partial in flight per shard).
    ``truth_table``: a truth table's path, read by each worker once (see ``shard_partial``)."""
    paths = [str(directory / s.path) for s in manifest.shards]
    total, merged = PartialStats(), 0

    def take(part: PartialStats) -> None:
        nonlocal merged
        merged += 1
        if on_progress:
            on_progress(part, merged, len(paths))
        total.merge(part)

    if client is None:
        for path in paths:
            take(_unreadable_is_integrity(path, lambda: shard_partial(path, verify_sha256, truth_table)))
    else:
        futures = client.map(shard_partial, paths, verify_sha256=verify_sha256, truth_table=truth_table, pure=False)
        path_of = {f.key: p for f, p in zip(futures, paths)}
        for future, ok, value in as_finished(client, futures, what="shards to read"):
            if not ok:
                raise _unreadable(path_of[future.key], value) if isinstance(value, _UNREADABLE) else value
            take(value)
    if verify_sha256:
        _check_digests(directory, manifest, total)
    return total


_UNREADABLE = (OSError, ValueError, KeyError, pa.ArrowException)  # a shard that cannot be read (or decoded)


def _unreadable_is_integrity(path: str, get: Callable[[], PartialStats]) -> PartialStats:
    """A shard that cannot be read (possible only without verification) is named, not a traceback."""
    try:
        return get()
    except _UNREADABLE as e:
        raise _unreadable(path, e) from e


def _unreadable(path: str, error: Exception) -> IntegrityError:
    return IntegrityError(f"shard {path} cannot be read ({type(error).__name__}: {error}); no card was written. "
                          "Run `plip validate` on the dataset to see what is wrong with it.")


def _check_digests(directory: Path, manifest: Manifest, part: PartialStats) -> None:
    bad = [s.path for s in manifest.shards if part.sha256.get(str(directory / s.path)) != s.sha256]
    if bad:
        raise IntegrityError(f"{directory}: shard(s) {bad} do not match the sha256 in the manifest; the files were "
                             "altered after they were written, so no card was written. Restore them, or pass "
                             "--no-verify to describe the files as they are.")


def fetch_samples(part: PartialStats, n: int) -> list[dict]:
    """The ``n`` ok rows with the smallest key hashes, images included (reads only their row groups)."""
    chosen = sorted(part.samples, reverse=True)[:n]  # items are (-hash, key, shard, row)
    by_shard: dict[str, list[int]] = {}
    for _, _, shard, row in chosen:
        by_shard.setdefault(shard, []).append(row)
    rows: dict[tuple[str, int], dict] = {}
    for shard, wanted in by_shard.items():
        f = pq.ParquetFile(shard)
        start = 0
        for g in range(f.metadata.num_row_groups):
            size = f.metadata.row_group(g).num_rows
            here = [r for r in wanted if start <= r < start + size]
            if here:
                table = f.read_row_group(g, columns=["key", "identity", "image", "attributes", "captions"])
                for r in here:
                    rec = table.slice(r - start, 1).to_pylist()[0]
                    rows[(shard, r)] = {**rec, "image": (rec["image"] or {}).get("bytes")}
            start += size
    return [rows[(shard, row)] for _, _, shard, row in chosen if (shard, row) in rows]


@contextlib.contextmanager
def writable(directory: Path) -> Iterator[None]:
    """Let this process write into ``directory`` (lifting and restoring its owner's write bit if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.access(directory, os.W_OK):
        yield
        return
    mode = directory.stat().st_mode
    if directory.stat().st_uid != os.getuid():
        raise CardError(f"{directory} is read-only and belongs to another user; write the card elsewhere with "
                        "--out DIR")
    os.chmod(directory, mode | stat.S_IWUSR)
    try:
        yield
    finally:
        os.chmod(directory, mode)


def _check_readme(out: Path, force: bool) -> None:
    path = out / README_NAME
    if path.is_file() and not force and readme.MARKER not in path.read_text(errors="replace")[:20000]:
        raise CardError(f"{path} exists and was not written by plip card; it is left alone. Pass --force to replace "
                        "it, or write the card elsewhere with --out DIR.")


def _check_truth_join(truth: Path, part: PartialStats) -> None:
    """A --truth table that matches no image is the wrong table: say so rather than report no ground truth."""
    if not part.truth_table_rows:
        raise CardError(f"{truth}: no row of the dataset has an image_sha256 listed in this truth table, so it is "
                        "not the table of these images; pass the ground-truth.jsonl that `plip render` wrote beside "
                        "the images this dataset was imported from")


def _dataset_block(directory: Path, manifest: Manifest, verify: str, note: str, pretty_name: str | None) -> dict:
    return {"name": manifest.name, "pretty_name": pretty_name or manifest.name, "id": manifest.id,
            "kind": manifest.kind, "version": manifest.version, "path": str(directory),
            "description": manifest.description, "num_bytes": manifest.num_bytes, "splits": manifest.splits,
            "attribute_names": list(manifest.attribute_names),
            "verified": verify, "verify_note": note}


def build_doc(directory: Path, manifest: Manifest, part: PartialStats, samples: list[dict], *, verify: str,
              note: str, seconds: float, workers: int, lineage_roots: Iterable[Path] = (),
              pretty_name: str | None = None) -> dict:
    stats = summarize(part)
    doc = {"format": CARD_FORMAT, "dataset": _dataset_block(directory, manifest, verify, note, pretty_name),
           "generated": {"by": "plip card", "package_version": package_version(),
                         "at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
           **stats, "producer_counts": (manifest.producer or {}).get("counts", {}),
           "comparison": reference.comparison(manifest.name, stats),
           "lineage": lineage(directory, manifest, lineage_roots),
           "samples": [{k: v for k, v in s.items() if k != "image"} for s in samples],
           "timing": {"seconds": round(seconds, 2), "rows_per_s": round(part.rows / max(seconds, 1e-9)),
                      "workers": workers}}
    return doc


def _write_report(out: Path, doc: dict, samples: list[dict]) -> list[str]:
    """Plots, stats.json and index.html into a fresh directory that then replaces ``out/report``."""
    tmp = out / f".{REPORT_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        files = plots.draw_all(doc, samples, tmp)
        doc["plots"] = files
        (tmp / "stats.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        (tmp / "index.html").write_text(html.render(doc, files, f"../{README_NAME}"))
        final, old = out / REPORT_DIR, out / f".{REPORT_DIR}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files


def _write_readme(out: Path, text: str) -> Path:
    path, tmp = out / README_NAME, out / f".{README_NAME}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def make_card(directory: str | os.PathLike, out: str | os.PathLike | None = None, *, verify: str = "full",
              client=None, lineage_roots: Iterable[Path] = (), license: str = "unknown", samples: int = 8,
              pretty_name: str | None = None, force: bool = False, on_progress: Callable | None = None,
              truth: str | os.PathLike | None = None) -> CardResult:
    """Write ``README.md`` and ``report/`` for the dataset in ``directory`` (into ``out`` if given).

    ``verify``: ``"full"`` (default: sizes, schema, rows and sha256 of every shard), ``"quick"`` (no
    checksums) or ``"none"`` (the card then says it was not verified). Raises ManifestError or
    IntegrityError, with nothing written, for a dataset that fails verification.

    ``truth``: a ground-truth table (``truth.TRUTH_TABLE_NAME``, written by ``plip render`` beside an image
    folder) joined to the rows by ``image_sha256``, so a dataset imported from that folder is scored against
    the truth. A table that is malformed or matches no row raises, with nothing written.
    """
    if verify not in ("full", "quick", "none"):
        raise ValueError(f"verify must be 'full', 'quick' or 'none', not {verify!r}")
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    manifest, note = open_checked(directory, verify)
    if truth is not None:
        truth = Path(truth).resolve()
        load_truth_table(truth)  # a malformed table fails here, before the pass
    if out.is_dir():
        _check_readme(out, force)
    t0 = time.perf_counter()
    part = run_pass(directory, manifest, client, verify_sha256=verify == "full", on_progress=on_progress,
                    truth_table=None if truth is None else str(truth))
    seconds = time.perf_counter() - t0
    if truth is not None:
        _check_truth_join(truth, part)
    picked = fetch_samples(part, samples)
    workers = len(client.scheduler_info()["workers"]) if client is not None else 0
    doc = build_doc(directory, manifest, part, picked, verify=verify, note=note, seconds=seconds, workers=workers,
                    lineage_roots=lineage_roots, pretty_name=pretty_name)
    doc["ground_truth"]["truth_table"] = None if truth is None else str(truth)
    with writable(out):
        _check_readme(out, force)
        files = _write_report(out, doc, picked)
        data_files = readme.data_file_configs(manifest, directory, out)
        # the path as the user would type it here (the CLI made it absolute; a card shared with the data should
        # not carry this machine's directories when they can be left out)
        shown = os.path.relpath(directory) if directory.resolve().is_relative_to(Path.cwd().resolve()) else directory
        text = readme.render(doc, data_files, str(shown), license, REPORT_DIR)
        path = _write_readme(out, text)
    return CardResult(readme=path, report=out / REPORT_DIR, stats=doc, plots=files)

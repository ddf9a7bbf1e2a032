"""``plip validate DIR``: manifest format and id, shard paths, schema, row counts, every checksum, unique keys."""
from __future__ import annotations

import argparse
import sys

from ._common import add_dataset_argument, add_verify_argument, checked_dataset_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_argument(parser)
    # validating is the check itself: no "none"; quick also skips the unique-key check
    add_verify_argument(parser, "the shards (quick also skips the unique-key check)", choices=("full", "quick"))


def run(args: argparse.Namespace) -> int:
    from synth_pedes import validate_dataset
    from synth_pedes.dataset import layout_note

    args.dataset = checked_dataset_argument(args)
    report = validate_dataset(args.dataset, args.verify)
    m = report.manifest
    if report.ok:
        checks = "manifest, schema, row counts and sha256 of every file, unique keys" if report.checked_checksums \
            else "manifest, schema and row counts (checksums and keys skipped: --verify quick)"
        print(f"OK {args.dataset}: {m.name!r} v{m.version} ({m.kind}), {m.num_rows} rows ({m.num_usable_rows} usable: "
              f"status ok; {m.num_rows - m.num_usable_rows} rejected) in {len(m.shards)} file{'s' if len(m.shards) != 1 else ''}, id {m.id}\n"
              f"   checked: {checks}")
        if note := layout_note(args.dataset, m):
            print(f"   note: {note}")
        return 0
    print(f"INVALID {args.dataset}: {len(report.problems)} problem(s)", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1

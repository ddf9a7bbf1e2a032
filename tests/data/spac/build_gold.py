"""Convert phrases_gold.marked.txt ({slot|phrase} marks) into phrases_gold.jsonl (character offsets).

Run from anywhere: ``python tests/data/spac/build_gold.py``. Check the printed spans by eye.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
SLOTS = ("person", "head", "upper", "lower", "shoes", "belongings")
MARK = re.compile(r"\{(\w+)\|([^{}|]+)\}")


def convert(line: str) -> dict:
    style, marked = line.split("\t", 1)
    text, spans, pos = [], [], 0
    for m in MARK.finditer(marked):
        text.append(marked[pos:m.start()])
        slot, phrase = m.group(1), m.group(2)
        if slot not in SLOTS:
            raise ValueError(f"bad slot {slot!r} in {line!r}")
        start = sum(map(len, text))
        spans.append({"slot": slot, "start": start, "end": start + len(phrase)})
        text.append(phrase)
        pos = m.end()
    text.append(marked[pos:])
    out = "".join(text)
    if "{" in out or "}" in out or "|" in out:
        raise ValueError(f"unbalanced mark in {line!r}")
    return {"text": out, "spans": spans, "style": style}


def main() -> None:
    rows = [convert(l) for l in (HERE / "phrases_gold.marked.txt").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    with open(HERE / "phrases_gold.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    if "-v" in sys.argv:
        for r in rows:
            print(r["text"])
            print("   ", [(s["slot"], r["text"][s["start"]:s["end"]]) for s in r["spans"]])
    print(f"{len(rows)} captions, {sum(len(r['spans']) for r in rows)} spans")


if __name__ == "__main__":
    main()

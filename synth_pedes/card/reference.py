"""Published statistics of SYNTH-PEDES and the three text-based person retrieval benchmarks.

Numbers and their sources are those of docs/reimplementation.md#published-numbers (PLIP paper §4 and
Table 11 / README statistics table; CUHK-PEDES, ICFG-PEDES and RSTPReid sizes as reported by the
PLIP paper and Tan et al., CVPR 2024; the manual 1-5 caption rating of PLIP §A). ``None`` means not
published in those sources (SYNTH-PEDES' mean caption length and vocabulary were never reported).
"""
from __future__ import annotations

PUBLISHED = [
    {"dataset": "SYNTH-PEDES", "images": 4_791_711, "identities": 312_321, "captions": 12_138_157,
     "captions_per_image": 2.53, "images_per_identity": "5-20", "caption_words": None, "rating": 3.76,
     "source": "PLIP (NeurIPS 2024) paper text; Table 11 and the README print 4,791,771 images (a typo)"},
    {"dataset": "CUHK-PEDES", "images": 40_206, "identities": 13_003, "captions": 80_412,
     "captions_per_image": 2.0, "images_per_identity": None, "caption_words": None, "rating": 3.77,
     "source": "CUHK-PEDES as reported by PLIP and Tan et al. (CVPR 2024); test: 1,000 ids, 3,074 images, "
               "6,156 captions"},
    {"dataset": "ICFG-PEDES", "images": 54_522, "identities": 4_102, "captions": 54_522,
     "captions_per_image": 1.0, "images_per_identity": None, "caption_words": None, "rating": 3.84,
     "source": "ICFG-PEDES as reported by PLIP and Tan et al.; test: 1,000 ids, 19,848 images"},
    {"dataset": "RSTPReid", "images": 20_505, "identities": 4_101, "captions": 41_010,
     "captions_per_image": 2.0, "images_per_identity": None, "caption_words": None, "rating": 3.87,
     "source": "RSTPReid as reported by Tan et al.; test: 200 ids, 1,000 images, 2,000 captions"},
]
COLUMNS = ("dataset", "images", "identities", "captions", "captions_per_image", "images_per_identity",
           "caption_words", "rating")
HEADERS = ("dataset", "images", "identities", "captions", "captions / image", "images / identity",
           "mean caption words", "manual rating (1-5)")


def _mean_ratio(row: dict) -> None:
    if row["images_per_identity"] is None and row["identities"]:
        row["images_per_identity"] = round(row["images"] / row["identities"], 2)


def comparison(name: str, stats: dict) -> list[dict]:
    """This dataset's headline figures next to the published ones, one dict per dataset."""
    ipi = stats["identities"]["images_per_identity"]
    length = stats["caption_length"]
    overall = length.get("all") or next(iter(length.values()), {})
    ours = {"dataset": f"{name} (this card)", "images": stats["images"], "identities": stats["identities"]["count"],
            "captions": stats["captions"]["total"],
            "captions_per_image": stats["captions"]["per_image"].get("mean"),
            "images_per_identity": f"{ipi['min']}-{ipi['max']} (mean {ipi['mean']:.2f})" if ipi.get("count") else None,
            "caption_words": None if overall.get("mean") is None else round(overall["mean"], 1), "rating": None,
            "source": "computed by plip card"}
    rows = [ours]
    for published in PUBLISHED:
        row = dict(published)
        _mean_ratio(row)
        rows.append(row)
    return rows


def fmt(value) -> str:
    if value is None:
        return "n/r"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)

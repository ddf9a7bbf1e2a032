"""ProcPedes: a procedural pedestrian renderer with ground truth (docs/architecture.md#procpedes).

It stands in for LUPerson (unlabeled person images), for a CUHK-PEDES-like captioned corpus and
for a text-based person retrieval benchmark: people with identities, cameras, poses, backgrounds,
occluders and known attributes, plus human-style captions in three annotator styles with exact
slot-tagged attribute spans.
"""
from .contact_sheet import contact_sheet
from .corpus import (ProcPedesConfig, RenderItem, bench_render, iter_records, plan_items, render_record)
from .layouts import LAYOUT_FORMATS, write_layout

__all__ = ["ProcPedesConfig", "RenderItem", "plan_items", "render_record", "iter_records", "write_layout",
           "LAYOUT_FORMATS", "contact_sheet", "bench_render"]

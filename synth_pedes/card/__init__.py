"""Dataset cards: ``README.md`` (Hugging Face front matter + prose) and a statistics report with plots.

Why this lives in ``synth_pedes`` and not in ``pipelines``: the card describes the data layer's own
records and needs nothing but them. Caption faithfulness uses the attribute-phrase spans SPAC already
stored in every caption (slot + character offsets) and compares each phrase with the row's
``attributes`` through a small canonical-words rule built on ProcPedes' vocabulary (``text``), so
``spac`` (spaCy, the phrase extractor) is not needed and the import rule (``synth_pedes`` imports
nothing of the other packages) holds. The Dask pass takes a ``distributed.Client`` from the caller,
as ``write_dataset`` does; the command line (``plip card``) sets the cluster up.

Modules: ``partial`` (one shard -> mergeable statistics), ``summary`` (-> stats.json), ``text`` and
``truth`` (agreement and ground-truth rules, and the ground-truth table ``plip card --truth`` joins),
``faithfulness`` (the per-caption score and the degenerate-output warnings), ``sketch`` (bounded distinct counts), ``lineage``,
``reference`` (published statistics), ``plots``, ``html``, ``readme``, ``job`` (``make_card``).
"""
from .job import CARD_FORMAT, CardError, CardResult, make_card, open_checked, run_pass
from .partial import PartialStats, shard_partial
from .summary import summarize

__all__ = ["CARD_FORMAT", "CardError", "CardResult", "make_card", "open_checked", "run_pass", "PartialStats",
           "shard_partial", "summarize"]

"""Benchmark suites for ``plip bench``. Each suite module has ``run(quick: bool, workdir: Path) -> dict``
returning ``{"rows": [{"metric", "value", "unit", "goal", "note"}...], ...details}``; a suite that also returns
``"table"`` (Markdown) gets it written next to the results as ``<suite>.md``."""
SUITES = {
    "shards": "pipelines.benchmarks.shards",
    "render": "pipelines.benchmarks.render",
    "recognizer": "pipelines.benchmarks.recognizer",
    "caption": "pipelines.benchmarks.caption",
    "synth": "pipelines.benchmarks.synth",
    "card": "pipelines.benchmarks.card",
    "train": "pipelines.benchmarks.train",
    "retrieval": "pipelines.benchmarks.retrieval",
    "ablation": "pipelines.benchmarks.ablation",
    "transfer": "pipelines.benchmarks.transfer",
    "image-reid": "pipelines.benchmarks.reid_transfer",
    "attributes": "pipelines.benchmarks.attributes",
    "gpu": "pipelines.benchmarks.gpu",
    "spac-quality": "pipelines.benchmarks.spac_quality",
}

"""What every stage shares at run time, at the bottom of the package graph (it imports none of the others).

* :mod:`plip_runtime.device`: which device a process computes on and in which precision (one
  ``resolve_device``, one ``resolve_precision``, one ``autocast``);
* :mod:`plip_runtime.config`: the one way configs validate themselves and take overrides;
* :mod:`plip_runtime.runs`: the training-run machinery every trainer uses (run directory, run record,
  checkpoints with trainer state, exact resume that may extend a run, stop-after, seeds);
* :mod:`plip_runtime.metrics`: the training logs (``metrics.jsonl``, TensorBoard, a progress bar, loss plot);
* :mod:`plip_runtime.version`: the one version stamp written into manifests, runs and results;
* :mod:`plip_runtime.weights`: reading local weight files (never a hub).

The submodules import torch where they need it; importing this package does not.
See ``docs/architecture.md`` for where this sits and ``docs/formats.md`` for the run directory.
"""

"""SPAC attribute recognizers: one interface, a registry, and four recognizers.

* ``oracle``: the ground-truth ``attributes`` column of rows (upper bounds, tests);
* ``classifier``: an image backbone (EfficientNet-Lite0 with real ImageNet weights by default) with one
  head per slot over a phrase vocabulary mined from human captions;
* ``clip``: zero-shot over candidate phrases with prompt ensembles, on any local open_clip model;
* ``captioner``: the SPAC captioner's own attribute prefixes;
* ``union``: several recognizers combined slot by slot by calibrated confidence.

    >>> from spac import recognizers
    >>> recognizers.available()
    ['captioner', 'classifier', 'clip', 'oracle', 'union']
    >>> rec = recognizers.create("classifier", checkpoint="runs/rec")      # doctest: +SKIP
    >>> rec.predict(rows)[0].attributes.upper                               # doctest: +SKIP

Phrases are compared by meaning with :func:`canonical_phrase` ("pants" == "trousers");
:mod:`~spac.recognizers.metrics` computes per-slot accuracy and mA.
"""
from .base import (AttributePrediction, Recognizer, available, create, decode_image, decode_rows,  # noqa: F401
                   register, unknown_prediction)
from .canon import canonical_attributes, canonical_phrase, same_phrase  # noqa: F401
from .classifier import (NAMED_CONFIGS, AttributeClassifier, CheckpointError, ClassifierConfig,  # noqa: F401
                         ClassifierRecognizer, load_checkpoint, load_config, save_checkpoint)
from .clip import ClipRecognizer  # noqa: F401
from .labels import build_vocab, label_from_captions, labels_for_rows  # noqa: F401
from .metrics import evaluate, format_table, slot_metrics  # noqa: F401
from .oracle import OracleRecognizer  # noqa: F401
from .prefixes import CaptionerRecognizer  # noqa: F401
from .union import UnionRecognizer, fit_platt  # noqa: F401

__all__ = [
    "AttributePrediction", "Recognizer", "available", "create", "register", "decode_image", "decode_rows",
    "unknown_prediction", "canonical_phrase", "canonical_attributes", "same_phrase", "ClassifierConfig",
    "NAMED_CONFIGS", "load_config", "AttributeClassifier", "ClassifierRecognizer", "CheckpointError",
    "load_checkpoint", "save_checkpoint", "ClipRecognizer", "OracleRecognizer", "CaptionerRecognizer", "UnionRecognizer", "fit_platt",
    "label_from_captions", "labels_for_rows", "build_vocab", "evaluate", "format_table", "slot_metrics",
]

"""SPAC annotation of person images: the transform that SPAC's synthesis job runs inside each shard task.

One work item is one row group of the input image dataset (``RowGroupUnit``); the annotator reads
its rows and yields one caption record per row: the six attributes with scores (from the recognizers
when some are given, combined with the captioner's attribute prefixes by the calibrated union when a
calibration is given, else from the captioner's prefixes alone; ``extra["spac"]["attribute_sources"]``
names the member that won each slot), one generated caption per style (a captioner that conditions on
attributes captions from the row's final attributes, so its captions and the prompt caption follow one
attribute set), ``prompt_captions`` captions filled from the template library, the attribute-phrase
spans of every caption, and ``status``/``error``. Rows that were already errors pass through unchanged;
images that fail to decode become ``status=error`` rows, and the rest of the batch is captioned.

Models load once per process and stay for its next shards (``MODELS``, a :class:`ModelCache`: a Dask
worker keeps them across shards, bounded to one configuration), and the next batch is decoded in a
background thread while the models run on the current one.
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator

import pyarrow.parquet as pq
import torch

from plip_runtime.config import ConfigBase
from plip_runtime.device import PRECISIONS, resolve_device, resolve_precision, tune_for_speed
from synth_pedes.malloc import keep_heap
from synth_pedes.schema import SLOTS, make_record
from synth_pedes.transforms import EXPANDING

from .vlm.captioner import ENGINES

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowGroupUnit:
    """One input row group: small and picklable (the synthesis plan is a list of these)."""
    path: str  # input shard (absolute path)
    shard: int
    group: int
    rows: int


@dataclass(frozen=True)
class SynthConfig(ConfigBase):
    captioner: str  # a SPAC captioner checkpoint directory, or vlm:DIR (a local vision-language model, spac.vlm)
    recognizers: tuple = ()  # e.g. ("classifier:/runs/rec",): combined slot by slot by the union recognizer
    prompt_captions: int = 1
    batch_size: int = 32  # SPAC: execution only, the rows are the same for any batch size (tests/test_synth_job.py)
    decoding: str = "greedy"  # greedy | beam | nucleus
    # "cuda" picks cuda:<worker index % GPUs> inside a Dask worker. The device type (cpu, cuda) is part of the
    # output's identity (its kernels may round differently), the GPU's index is not
    device: str = "cpu"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (plip_runtime.device), resolved once on the client
    # execution only (not part of the output's identity, so a resume may use another worker count):
    threads: int | None = field(default=None, compare=False)  # torch intra-op threads per process
    seed: int = 0
    # a union's slot whose best phrase is less likely right than this becomes unknown. 0: never abstain (the
    # union's "unknown" is a phrase like the others, so a slot the members see as hidden is unknown anyway);
    # abstaining on a visible slot costs accuracy and makes the captions guess it (measured in issue 16)
    union_threshold: float = 0.0
    # a union calibration (JSON text, from plip spac calibrate): the captioner's prefixes join the recognizers
    calibration: str = ""
    # a vision-language captioner (vlm:DIR) only: its styles (one instruction and one caption each), the engine
    # that runs it, and the caption length it may generate
    vlm_styles: int = 2
    engine: str = "transformers"
    max_new_tokens: int = 64
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def vlm(self) -> bool:
        """Whether the captioner is a vision-language model (``vlm:DIR``) rather than a SPAC checkpoint."""
        return self.captioner.startswith("vlm:")

    def validate(self) -> None:
        self.require("captioner", isinstance(self.captioner, str) and bool(self.captioner),
                     "must be a captioner checkpoint directory")
        self.require("recognizers", isinstance(self.recognizers, tuple) and all(
            isinstance(spec, str) and spec for spec in self.recognizers),
            "must be recognizer specs like 'classifier:DIR' or 'oracle'")
        self.require_int("prompt_captions", 0)
        self.require_int("batch_size", 1)
        self.require_choice("decoding", ("greedy", "beam", "nucleus"))
        self.require("device", isinstance(self.device, str) and bool(self.device), "must be cpu, cuda or cuda:N")
        self.require_choice("precision", PRECISIONS)
        self.require_int("threads", 1, optional=True)
        self.require_int("seed", 0)
        self.require_number("union_threshold", 0.0, 1.0)
        self.require("calibration", isinstance(self.calibration, str), "must be a union calibration as JSON text")
        self.require_int("vlm_styles", 1)
        self.require_choice("engine", ENGINES)
        self.require_int("max_new_tokens", 1)
        if self.vlm:
            self.require("decoding", self.decoding in ("greedy", "nucleus"),
                         "must be greedy or nucleus for a vision-language captioner")
            self.require("calibration", not self.calibration, "calibrates the SPAC captioner's prefixes; a "
                         "vision-language captioner joins the recognizers' union uncalibrated: leave it out")
        else:
            self.require("engine", self.engine == "transformers", "applies to a vision-language captioner (vlm:DIR)")

    def resolved(self) -> "SynthConfig":
        """This config with ``precision="auto"`` made concrete for ``device`` on this machine, so that the
        manifest and the shard plan record what the rows were made with (a resume elsewhere that would
        resolve differently is then refused, not mixed into one dataset)."""
        if self.precision != "auto":
            return self
        if not self.device.startswith("cuda"):
            # fp32 on CPUs, even those with native bf16: on this project's AMX CPU, bf16 autocast left every
            # generated caption of whole batches empty, at random (32-160 of 1,197 demo rows per run, in 6 of 7
            # runs; none in 3 fp32 runs of the same job). --precision bf16 still asks for it
            return replace(self, precision="fp32")
        # cuda on a client without CUDA (workers elsewhere) resolves to fp32, the safe choice; pass bf16 to override
        return replace(self, precision=resolve_precision("auto", self.device))

    def to_dict(self) -> dict:
        """What determines the output (recorded in the manifest and the shard plan's fingerprint): not how it is
        computed (threads, batch size, which GPU), so that a resume may change those and the same rows made
        either way are the same dataset."""
        d = asdict(self)
        # a vision-language model's captions may depend on the batch in the last bits (a left-padded prompt's
        # attention sums in another order), enough to flip a near-tie greedy token: its batch size is recorded, so
        # a resume with another one is refused rather than mixed into the dataset
        for not_recorded in ("extra", "threads", *(() if self.vlm else ("batch_size",))):
            d.pop(not_recorded)
        d["device"] = self.device.partition(":")[0]
        if not d["calibration"]:  # plans made before the field existed keep their fingerprint
            d.pop("calibration")
        if not self.vlm:  # the same: a SPAC captioner's plans keep theirs
            for vlm_only in ("vlm_styles", "engine", "max_new_tokens"):
                d.pop(vlm_only)
        return d


def worker_index() -> int:
    """This Dask worker's number (0 outside a worker): a bare ``cuda`` means GPU worker_index % GPUs, so the
    workers of a job spread over the GPUs (see plip_runtime.device.resolve_device)."""
    try:
        from distributed import get_worker

        name = get_worker().name
        return int(name) if str(name).isdigit() else 0
    except (ImportError, ValueError):
        return 0


def build_recognizer(specs: tuple, threshold: float, device: str, calibration: str = "", captioner=None):
    """``("classifier:DIR", "oracle")`` -> one recognizer (a union when several are given). With a
    ``calibration`` (JSON text) the ``captioner``'s attribute prefixes join the members and the union is
    calibrated with it."""
    from .recognizers import create
    from .recognizers.prefixes import CaptionerRecognizer

    members = []
    for spec in specs:
        name, _, arg = spec.partition(":")
        kwargs = {"checkpoint": arg} if arg else {}
        if name == "classifier":
            kwargs["device"] = device
        members.append(create(name, **kwargs))
    if calibration and captioner is not None:
        members.append(CaptionerRecognizer(captioner=captioner))
    if not members:
        return None
    if len(members) == 1:
        return members[0]
    return create("union", members=members, threshold=threshold,
                  calibration=json.loads(calibration) if calibration else None)


def calibrate_union(captioner, specs: tuple, rows: list[dict], truths: list[dict], threshold: float = 0.0,
                    device: str = "cpu") -> tuple[dict, dict]:
    """Fit the union of ``specs`` and ``captioner``'s attribute prefixes on rows with ground truth (a validation
    split): ``(calibration for SynthConfig.calibration / plip synth --calibration, mean slot accuracy in % of
    every member and of the union on these rows)``."""
    from .recognizers import evaluate

    union = build_recognizer(specs, threshold, device, calibration="{}", captioner=captioner)
    predictions = [member.predict(rows) for member in union.members]  # each member reads the rows once
    calibration = union.fit(rows, truths, member_predictions=predictions)
    accuracy = {label: evaluate(preds, truths)["mean"]["accuracy"] for label, preds in zip(union.labels, predictions)}
    accuracy["union"] = evaluate([union.combine(list(p)) for p in zip(*predictions)], truths)["mean"]["accuracy"]
    return calibration, accuracy


def models_key(config: SynthConfig) -> tuple:
    """What the loaded models depend on: configs with the same key share them."""
    return (config.captioner, config.recognizers, config.device, config.union_threshold, config.calibration,
            config.vlm_styles, config.engine)


def load_models(config: SynthConfig) -> tuple:
    """Load (captioner, recognizer or None) for ``config``, uncached: callers go through :data:`MODELS`."""
    keep_heap()  # no-op for the workers of our LocalCluster, which start with MALLOC_ENV
    from .captioner import load_captioner

    from .phrases import get_extractor
    from .templates import load_library

    device = str(resolve_device(config.device, worker_index()))
    tune_for_speed(device)
    if config.vlm:
        from .vlm import VlmCaptioner, vlm_directory

        captioner = VlmCaptioner.load(vlm_directory(config.captioner), device=device, styles=config.vlm_styles,
                                      engine=config.engine,  # one generate call per batch of images
                                      batch_size=config.batch_size * config.vlm_styles)
    else:
        captioner = load_captioner(config.captioner, device=device)
    get_extractor(), load_library()  # spaCy and the templates load here, once, not in the first shard
    # a vision-language captioner's attributes (read off its captions) always join the recognizers' union
    calibration = "{}" if config.vlm and config.recognizers else config.calibration
    recognizer = build_recognizer(config.recognizers, config.union_threshold, device, calibration, captioner)
    _log.info("loaded SPAC models on %s (captioner %s, recognizers %s)", device, config.captioner,
              list(config.recognizers))
    return captioner, recognizer


class ModelCache:
    """The SPAC models this process has loaded, kept for its next shards.

    Scope: one per process, :data:`MODELS`. A Dask worker imports this module once and runs many shard
    tasks, so the models load once per worker, in its first shard, and the later shards reuse them (what
    the job's throughput needs); in-process (``--workers 0``) they live as long as the Python process.

    Bounded: it holds the models of one configuration (:func:`models_key`), the last one asked for. A
    worker asked for another configuration (a second job with another captioner, device or recognizers)
    frees the first models before loading the new ones, so it never holds two captioners. ``clear()``
    frees them now. A lock makes concurrent callers share one load.
    """

    def __init__(self, load: Callable[[SynthConfig], tuple] = load_models):
        self._load = load
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._models: tuple | None = None
        self.loads = 0  # how many times this cache loaded models (once per configuration change)

    def get(self, config: SynthConfig) -> tuple:
        """(captioner, recognizer or None) for ``config``, loaded on first use."""
        key = models_key(config)
        with self._lock:
            if self._key != key:
                self._free()
                self._models = self._load(config)
                self._key = key
                self.loads += 1
            return self._models

    def clear(self) -> None:
        """Drop the models (a shard still running keeps its own reference until it ends)."""
        with self._lock:
            self._free()

    def _free(self) -> None:
        had_models = self._models is not None
        self._key, self._models = None, None
        if had_models and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # hand the freed blocks back, so the next captioner fits


MODELS = ModelCache()  # this process's models, see ModelCache


class _FinalAttributes:
    """The attributes a batch's rows end up with, as ``Captioner.run``'s ``attributes_for``: from the captioner's
    own attributes and scores (``own``, ``scores``) and the recognizer's predictions of the same rows: the union's
    combination when the captioner is one of its members, the recognizer's alone otherwise, the captioner's
    where there is no recognizer or it could not read a row. ``predictions`` keeps them for the records."""

    def __init__(self, recognizer, rows: list[dict]):
        from .recognizers.prefixes import LABEL
        from .recognizers.union import UnionRecognizer

        self.recognizer, self.predictions = recognizer, []
        self.union = recognizer if isinstance(recognizer, UnionRecognizer) else None
        members = self.union.members if self.union else ([recognizer] if recognizer is not None else [])
        self.captioner_at = next((k for k, m in enumerate(members) if m.name == LABEL), None)
        # every member but the captioner reads the rows now; the captioner's prediction comes from run()
        self.member_predictions = [None if k == self.captioner_at else m.predict(rows) for k, m in enumerate(members)]

    def __call__(self, own: list[dict], scores: list[dict]) -> list[dict]:
        from .recognizers.prefixes import prediction_from_captioner

        self.predictions = []
        for j, (phrases, slot_scores) in enumerate(zip(own, scores)):
            captioner = prediction_from_captioner(phrases, slot_scores)
            members = [captioner if preds is None else preds[j] for preds in self.member_predictions]
            if self.union is not None:
                pred = self.union.combine(members)
            else:
                pred = members[0] if members else captioner
            self.predictions.append(captioner if pred.error is not None else pred)
        return [p.attributes.to_dict() for p in self.predictions]


# How shard plans name this transform: its path from when this module was spac/synth.py, kept so that a
# synthesis job planned before the rename still resumes (the plan's fingerprint must not change).
_PLAN_LABEL = "spac.synth.SpacAnnotator"


class SpacAnnotator:
    """The synthesis transform: a ``RowGroupUnit`` in, its rows' caption records out (an expanding transform,
    ``synth_pedes.transforms.ExpandingTransform``)."""
    transform_kind = EXPANDING

    def __init__(self, config: SynthConfig):
        self.config = config.resolved()

    def fingerprint(self) -> str:
        """The class and the whole output-determining config (``SynthConfig.to_dict``)."""
        return f"{_PLAN_LABEL}:SpacAnnotator({json.dumps(self.config.to_dict(), sort_keys=True)})"

    def __call__(self, unit: RowGroupUnit) -> Iterator[dict]:
        if self.config.threads:  # per calling thread: OpenMP's thread count does not carry across threads
            torch.set_num_threads(self.config.threads)
        rows = pq.ParquetFile(unit.path).read_row_group(unit.group).to_pylist()
        batches = [rows[i:i + self.config.batch_size] for i in range(0, len(rows), self.config.batch_size)]
        captioner, recognizer = MODELS.get(self.config)
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._decode, captioner, batches[0]) if batches else None
            for i, batch in enumerate(batches):
                tensors = pending.result()
                if i + 1 < len(batches):  # decode the next batch while the models run on this one
                    pending = pool.submit(self._decode, captioner, batches[i + 1])
                yield from self._annotate(captioner, recognizer, batch, tensors)

    @staticmethod
    def _decode(captioner, batch: list[dict]) -> list:
        """One image per row as the captioner reads it (``captioner.prepare``: a SPAC captioner's normalised
        tensor, a vision-language model's RGB image), or None / the reason it has none (a string)."""
        out = []
        for row in batch:
            if row["status"] != "ok" or not row.get("image") or not row["image"].get("bytes"):
                out.append(None)
                continue
            try:
                out.append(captioner.prepare(row["image"]["bytes"]))
            except ValueError as e:
                out.append(f"corrupt image: {e}")
        return out

    def _annotate(self, captioner, recognizer, batch: list[dict], images: list) -> list[dict]:
        from .phrases import extract_many

        good = [i for i, image in enumerate(images) if image is not None and not isinstance(image, str)]
        out = [None] * len(batch)
        if good:
            final = _FinalAttributes(recognizer, [batch[i] for i in good])
            own, captions, instructions = self._caption(captioner, [images[i] for i in good],
                                                        [batch[i]["key"] for i in good], final)
            generated = [list(c.items()) for c in captions]
            empty = sum(1 for per in generated if per and not any(text for _, text in per))
            if empty:  # a captioner that wrote nothing for a row: say so, with what it ran in
                _log.warning("%d of %d rows of this batch got only empty generated captions (precision %s, device "
                             "%s); fp32 does not do this where bf16 on a CPU did (see SynthConfig.resolved)",
                             empty, len(generated), self.config.precision, self.config.device)
            spans = iter(extract_many([text for per in generated for _, text in per]))
            for j, i in enumerate(good):
                out[i] = self._record(batch[i], own[j], final.predictions[j], generated[j], spans,
                                      instructions[j])
        for i, row in enumerate(batch):
            if out[i] is None:
                out[i] = self._passthrough(row, images[i])
        return out

    def _caption(self, captioner, images: list, keys: list[str], final: "_FinalAttributes") -> tuple[list, list, list]:
        """The captioner's own attributes, its captions ({style: text}) and the instructions it was given (a
        vision-language model's {style: instruction}, else None) per image; ``final`` gets the captioner's
        attributes and decides the rows' (a SPAC captioner that conditions on attributes captions from those)."""
        cfg = self.config
        if cfg.vlm:
            opts = captioner.options(method=cfg.decoding, seed=cfg.seed, precision=cfg.precision,
                                     max_new_tokens=cfg.max_new_tokens)
            captions, instructions = captioner.caption(images, keys, opts)
            own, scores = captioner.attributes(captions)
            final(own, scores)
            return own, captions, instructions
        opts = captioner.options(method=cfg.decoding, seed=cfg.seed, precision=cfg.precision)
        result = captioner.run(torch.stack(images), opts, attributes_for=final)
        return result.attributes, result.captions, [None] * len(images)

    def _record(self, row: dict, cap_attrs: dict, pred, generated: list, spans, instructions: dict | None) -> dict:
        from synth_pedes.card.faithfulness import captions_faithfulness

        from .templates import prompt_caption

        attributes, scores = pred.attributes, pred.scores
        captions = [{"text": text, "style": style, "kind": "generated",
                     "spans": [{"slot": s.slot, "start": s.start, "end": s.end} for s in next(spans)]}
                    for style, text in generated]
        rng = random.Random(f"{self.config.seed}:{row['key']}")
        for _ in range(self.config.prompt_captions):
            text, prompt_spans = prompt_caption(attributes, rng)
            captions.append({"text": text, "style": "prompt", "kind": "prompt", "spans": prompt_spans})
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        # per caption, aligned with `captions`: the share of its attribute phrases the final attributes agree with
        extra["spac"] = {"captioner_attributes": cap_attrs,
                         "faithfulness": captions_faithfulness(captions, attributes.to_dict())}
        if pred.sources:  # a union's prediction: the member whose phrase each slot took
            extra["spac"]["attribute_sources"] = pred.sources
        if instructions is not None:  # a vision-language model's: what it was asked, per caption style
            extra["spac"]["instructions"] = instructions
        return make_record(row["key"], identity=row["identity"], source=row["source"], split=row["split"],
                           camera=row["camera"], image_bytes=row["image"]["bytes"], image_path=row["image"]["path"],
                           image_sha256=row["image_sha256"], width=row["width"], height=row["height"],
                           attributes=attributes.to_dict(),
                           attribute_scores={s: float(scores[s]) for s in SLOTS},
                           attribute_labels=row.get("attribute_labels"), captions=captions, extra=extra)

    @staticmethod
    def _passthrough(row: dict, reason) -> dict:
        """An input row that gets no captions: already an error, or its image did not decode."""
        error = row.get("error") or (reason if isinstance(reason, str) else "no image")
        status = row["status"] if row["status"] != "ok" else "error"
        image = row.get("image") or {}
        return make_record(row["key"], identity=row["identity"], source=row["source"], split=row["split"],
                           camera=row["camera"], image_bytes=image.get("bytes"), image_path=image.get("path") or "",
                           image_sha256=row.get("image_sha256"), width=row.get("width"), height=row.get("height"),
                           attribute_labels=row.get("attribute_labels"), status=status, error=error,
                           extra=json.loads(row["extra"]) if row.get("extra") else None)

"""The one record schema: one row per person image (docs/formats.md#the-record).

The Arrow schema below is the single source of truth. The Hugging Face ``features`` are derived from
it and embedded in the schema metadata under the ``huggingface`` key, exactly as
``datasets.Dataset.to_parquet`` writes them, so ``datasets.load_dataset("parquet", ...)`` yields PIL
images and nested captions with no extra code. ``image`` is ``struct<bytes: binary, path: string>``:
a null-typed ``path`` would make ``datasets`` ignore the features.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 2  # 2 added attribute_labels; files of version 1 are still read (READ_FINGERPRINTS)
SLOTS = ("person", "head", "upper", "lower", "shoes", "belongings")  # the six SPAC attribute slots
UNKNOWN = "unknown"
STATUSES = ("ok", "error", "filtered")
CAPTION_KINDS = ("generated", "prompt", "human")
SPLITS = ("train", "val", "test", "query", "gallery")  # query/gallery: image-ReID benchmarks

SPAN_TYPE = pa.struct([("slot", pa.string()), ("start", pa.int32()), ("end", pa.int32())])
CAPTION_TYPE = pa.struct([
    ("text", pa.string()),
    ("style", pa.string()),  # annotator / generator style, e.g. "cuhk-pedes", "style-0"
    ("kind", pa.string()),  # generated | prompt | human
    ("spans", pa.list_(SPAN_TYPE)),  # attribute-phrase spans, character offsets into text
])
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
ATTRIBUTES_TYPE = pa.struct([(s, pa.string()) for s in SLOTS])
SCORES_TYPE = pa.struct([(s, pa.float32()) for s in SLOTS])

_FIELDS = [
    pa.field("key", pa.string(), nullable=False),  # unique, deterministic: source/relative/path
    pa.field("identity", pa.int64(), nullable=False),  # -1 when unknown
    pa.field("source", pa.string()),
    pa.field("split", pa.string()),
    pa.field("camera", pa.string()),
    pa.field("image", IMAGE_TYPE),  # null for rows whose image could not be read (status=error)
    pa.field("image_sha256", pa.string()),  # of the original file bytes, also for error rows when readable
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("attributes", ATTRIBUTES_TYPE),
    pa.field("attribute_scores", SCORES_TYPE),
    # binary attribute labels (0/1) of attribute-recognition datasets (PA-100K, PETA, RAP), aligned with the
    # manifest's attribute_names; null where a dataset has none (v2)
    pa.field("attribute_labels", pa.list_(pa.int8())),
    pa.field("captions", pa.list_(CAPTION_TYPE)),
    pa.field("status", pa.string(), nullable=False),  # ok | error | filtered
    pa.field("error", pa.string()),  # why, when status != ok
    pa.field("extra", pa.string()),  # JSON: source-specific metadata (original file_path, ground truth...)
]


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


_ARROW_TO_HF = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32", pa.int8(): "int8",
                pa.float32(): "float32", pa.binary(): "binary"}


def _hf_feature(dtype: pa.DataType) -> Any:
    """Hugging Face feature dict for an Arrow type (the subset this schema uses)."""
    if dtype == IMAGE_TYPE:
        return {"_type": "Image"}
    if pa.types.is_struct(dtype):
        return {dtype.field(i).name: _hf_feature(dtype.field(i).type) for i in range(dtype.num_fields)}
    if pa.types.is_list(dtype):
        return {"feature": _hf_feature(dtype.value_type), "_type": "List"}
    return _value(_ARROW_TO_HF[dtype])


HF_FEATURES = {f.name: _hf_feature(f.type) for f in _FIELDS}
RECORD_SCHEMA = pa.schema(_FIELDS, metadata={
    "huggingface": json.dumps({"info": {"features": HF_FEATURES}}),
    "synth_pedes.schema_version": str(SCHEMA_VERSION),
})
COLUMNS = tuple(RECORD_SCHEMA.names)


def _type_desc(dtype: pa.DataType) -> str:
    """A type's description with list child names dropped (Parquet reads them back as 'element')."""
    if pa.types.is_struct(dtype):
        return "struct<" + ", ".join(f"{dtype.field(i).name}: {_type_desc(dtype.field(i).type)}"
                                     for i in range(dtype.num_fields)) + ">"
    if pa.types.is_list(dtype):
        return f"list<{_type_desc(dtype.value_type)}>"
    return str(dtype)


def schema_fingerprint(schema: pa.Schema = RECORD_SCHEMA) -> str:
    """Stable hash of names, types and nullability (metadata excluded), recorded in every manifest."""
    desc = [(f.name, _type_desc(f.type), f.nullable) for f in schema]
    return "sha256:" + hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


SCHEMA_FINGERPRINT = schema_fingerprint()
# Version 1: the same columns without attribute_labels. Its files are read as they are (every reader names the
# columns it reads; upgrade_table adds the missing one as nulls), so datasets written before stay usable.
SCHEMA_V1 = RECORD_SCHEMA.remove(RECORD_SCHEMA.get_field_index("attribute_labels"))
READ_FINGERPRINTS = {SCHEMA_FINGERPRINT: SCHEMA_VERSION, schema_fingerprint(SCHEMA_V1): 1}


def make_record(key: str, *, identity: int = -1, source: str = "", split: str = "train", camera: str = "",
                image_bytes: bytes | None = None, image_path: str = "", image_sha256: str | None = None,
                width: int | None = None, height: int | None = None, attributes: dict | None = None,
                attribute_scores: dict | None = None, attribute_labels=None, captions: list | None = None,
                status: str = "ok", error: str = "", extra: dict | None = None) -> dict:
    """Build one record dict in schema order, with the invariants checked (bad values raise ValueError)."""
    if status not in STATUSES:
        raise ValueError(f"record {key!r}: status {status!r} is not one of {STATUSES}")
    if status == "ok" and image_bytes is None:
        raise ValueError(f"record {key!r}: status 'ok' needs image bytes")
    if attributes is not None and set(attributes) != set(SLOTS):
        raise ValueError(f"record {key!r}: attributes need exactly the slots {SLOTS}, got {sorted(attributes)}")
    if attribute_labels is not None:
        attribute_labels = [int(v) for v in attribute_labels]
        if any(v not in (0, 1) for v in attribute_labels):
            raise ValueError(f"record {key!r}: attribute_labels must be 0/1, got {sorted(set(attribute_labels))}")
    for cap in captions or []:
        if cap.get("kind") not in CAPTION_KINDS:
            raise ValueError(f"record {key!r}: caption kind {cap.get('kind')!r} is not one of {CAPTION_KINDS}")
    if image_sha256 is None and image_bytes is not None:
        image_sha256 = hashlib.sha256(image_bytes).hexdigest()
    return {
        "key": key, "identity": int(identity), "source": source, "split": split, "camera": camera,
        "image": None if image_bytes is None else {"bytes": image_bytes, "path": image_path},
        "image_sha256": image_sha256, "width": width, "height": height,
        "attributes": attributes, "attribute_scores": attribute_scores, "attribute_labels": attribute_labels,
        "captions": [{"text": c["text"], "style": c.get("style", ""), "kind": c["kind"],
                      "spans": list(c.get("spans", []))} for c in captions or []],
        "status": status, "error": error,
        "extra": None if extra is None else json.dumps(extra, sort_keys=True),
    }


def is_blank_text(text: str | None) -> bool:
    """A caption with nothing to read (missing, empty or whitespace): importers drop these and the trainer
    skips them, so both must mean the same thing by it."""
    return not (text or "").strip()


def records_to_table(records: list[dict]) -> pa.Table:
    """Records (dicts in the schema's layout) to a table with exactly the record schema."""
    return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)


def check_schema(schema: pa.Schema, where: str) -> None:
    """Raise SchemaMismatchError naming ``where`` and the differing columns when ``schema`` is not ours."""
    from .errors import SchemaMismatchError

    if schema_fingerprint(schema) in READ_FINGERPRINTS:
        return
    ours = {f.name: f for f in RECORD_SCHEMA}
    theirs = {f.name: f for f in schema}
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    changed = sorted(n for n in set(ours) & set(theirs)
                     if (_type_desc(ours[n].type), ours[n].nullable) != (_type_desc(theirs[n].type), theirs[n].nullable))
    parts = [f"missing columns {missing}" if missing else "", f"unexpected columns {unexpected}" if unexpected else "",
             "; ".join(f"column {n!r} is {_type_desc(theirs[n].type)} (nullable={theirs[n].nullable}) but the record "
                       f"schema says {_type_desc(ours[n].type)} (nullable={ours[n].nullable})"
                       for n in changed)]
    detail = "; ".join(p for p in parts if p) or "column order differs"
    raise SchemaMismatchError(
        f"{where}: schema does not match the SYNTH-PEDES record schema v{SCHEMA_VERSION} ({detail}). "
        "Rewrite the data with this version of the writer (synth_pedes.write_dataset).")


def upgrade_table(table: pa.Table, where: str) -> pa.Table:
    """``table`` in the current record schema: checked (:func:`check_schema`), and a version-1 table given the
    columns it lacks, as nulls."""
    check_schema(table.schema, where)
    if schema_fingerprint(table.schema) == SCHEMA_FINGERPRINT:
        return table
    for name in RECORD_SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(RECORD_SCHEMA.field(name), pa.nulls(table.num_rows, RECORD_SCHEMA.field(name).type))
    return table.select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)

import datasets
import pyarrow as pa
import pytest

from synth_pedes import HF_FEATURES, RECORD_SCHEMA, SLOTS, make_record
from synth_pedes.errors import SchemaMismatchError
from synth_pedes.schema import _type_desc, check_schema


def test_hf_features_match_the_arrow_schema():
    features = datasets.Features.from_dict(HF_FEATURES)
    # datasets derives the same storage types from our features (it makes every field nullable)
    theirs = {f.name: _type_desc(f.type) for f in features.arrow_schema}
    assert theirs == {f.name: _type_desc(f.type) for f in RECORD_SCHEMA}
    assert isinstance(features["image"], datasets.Image)
    assert RECORD_SCHEMA.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_make_record_checks_invariants():
    with pytest.raises(ValueError, match="status 'ok' needs image bytes"):
        make_record("k")
    with pytest.raises(ValueError, match="not one of"):
        make_record("k", status="weird", error="x")
    with pytest.raises(ValueError, match="exactly the slots"):
        make_record("k", image_bytes=b"x", attributes={"person": "man"})
    rec = make_record("k", image_bytes=b"abc", attributes={s: "unknown" for s in SLOTS}, extra={"b": 1, "a": 2})
    assert rec["image_sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert rec["extra"] == '{"a": 2, "b": 1}'
    assert list(rec) == RECORD_SCHEMA.names


def test_check_schema_names_the_difference():
    other = RECORD_SCHEMA.remove(RECORD_SCHEMA.get_field_index("extra")).set(
        RECORD_SCHEMA.get_field_index("identity"), pa.field("identity", pa.string(), nullable=False))
    with pytest.raises(SchemaMismatchError) as e:
        check_schema(other, "part-00003.parquet")
    msg = str(e.value)
    assert "part-00003.parquet" in msg and "missing columns ['extra']" in msg and "'identity' is string" in msg


def test_version_1_tables_are_read_and_upgraded_with_null_labels():
    from synth_pedes.schema import READ_FINGERPRINTS, SCHEMA_V1, schema_fingerprint, upgrade_table

    assert "attribute_labels" not in SCHEMA_V1.names and READ_FINGERPRINTS[schema_fingerprint(SCHEMA_V1)] == 1
    old = pa.Table.from_pylist([{k: v for k, v in make_record("k", image_bytes=b"x").items()
                                 if k != "attribute_labels"}], schema=SCHEMA_V1)
    check_schema(old.schema, "old.parquet")  # readable as it is
    new = upgrade_table(old, "old.parquet")
    assert new.schema.equals(RECORD_SCHEMA) and new.column("attribute_labels").to_pylist() == [None]
    assert new.column("key").to_pylist() == ["k"]
    with pytest.raises(SchemaMismatchError, match="bad.parquet.*missing columns"):
        upgrade_table(old.drop_columns(["extra"]), "bad.parquet")


def test_attribute_labels_are_0_or_1():
    rec = make_record("k", image_bytes=b"x", attribute_labels=[1, 0, True])
    assert rec["attribute_labels"] == [1, 0, 1]
    with pytest.raises(ValueError, match=r"record 'k': attribute_labels must be 0/1, got \[0, 2\]"):
        make_record("k", image_bytes=b"x", attribute_labels=[0, 2])

"""Small generated data shared by the tests (importable by subprocesses via PYTHONPATH)."""
from __future__ import annotations

import io
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synth_pedes import SLOTS, Manifest, make_record
from synth_pedes.transforms import PER_ITEM, class_fingerprint


def jpeg_bytes(seed: int, size: tuple[int, int] = (32, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=80)
    return buf.getvalue()


@dataclass(frozen=True)
class Records:
    """A picklable transform: item index -> record; ``delay`` seconds per row to make writes slow."""
    transform_kind = PER_ITEM
    delay: float = 0.0

    def fingerprint(self) -> str:
        return class_fingerprint(self)  # the delay counts: the tests use it to make two plans differ

    def __call__(self, i: int) -> dict:
        if self.delay:
            time.sleep(self.delay)
        return make_record(f"test/{i:05d}.jpg", identity=i // 4, source="test", split=("train", "val")[i % 2],
                           image_bytes=jpeg_bytes(i), image_path=f"{i:05d}.jpg", width=32, height=64,
                           attributes={s: f"{s} {i}" for s in SLOTS},
                           captions=[{"text": f"caption {i}", "style": "s", "kind": "human",
                                      "spans": [{"slot": "upper", "start": 0, "end": 7}]}],
                           status="ok" if i % 7 else "error", error="" if i % 7 else "synthetic: test error")


def make_writable(path: Path) -> None:
    """Finished datasets are read-only; tests that tamper with one must lift that first."""
    os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def write_person_folder(root: Path, layout: str = "identity-folders", n_ids: int = 3, per_id: int = 4) -> list[str]:
    """A LUPerson(-NL)-style folder of small JPEGs; returns the relative paths written."""
    rel = []
    for pid in range(n_ids):
        for k in range(per_id):
            name = f"{pid:04d}/{k}.jpg" if layout == "identity-folders" else f"{pid:04d}_{k}.jpg"
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(pid * 100 + k))
            rel.append(name)
    return rel


def write_old_layout_dataset(directory: Path, records: list[dict]) -> Manifest:
    """A dataset as plip wrote it before the data/ layout: part-NNNNN.parquet files at the top, every split and
    status mixed, a format 1 manifest (whose id must stay valid), 12 rows per file, in the record schema of then
    (v1: no attribute_labels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synth_pedes.manifest import MANIFEST_NAME, PARTS_FORMAT, ShardInfo
    from synth_pedes.schema import SCHEMA_V1, schema_fingerprint
    from synth_pedes.writer import file_sha256

    directory.mkdir()
    shards = []
    for i in range(0, len(records), 12):
        path = directory / f"part-{i // 12:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(records[i:i + 12], schema=SCHEMA_V1), path)
        shards.append(ShardInfo(path.name, min(12, len(records) - i), path.stat().st_size, file_sha256(path)))
    status = {s: sum(r["status"] == s for r in records) for s in ("error", "ok")}
    m = Manifest(name="old", kind="benchmark", shards=tuple(shards), status_counts=status, format=PARTS_FORMAT,
                 schema={"version": 1, "fingerprint": schema_fingerprint(SCHEMA_V1)})
    assert "split" not in m.body()["shards"][0] and "num_usable_rows" not in m.body()  # as format 1 hashed it
    (directory / MANIFEST_NAME).write_text(m.to_json())
    return m


def write_tiny_captioner(directory: Path) -> Path:
    """A random-init ``tiny`` SPAC captioner checkpoint (seed 0) whose small output vocabulary ends sequences
    early, so decoding in tests is fast; what synthesis needs without training one."""
    import torch

    from spac.captioner import CaptionTokenizer, SpacCaptioner, load_config, save_checkpoint

    cfg = load_config("tiny")
    tok = CaptionTokenizer.from_config(cfg)
    torch.manual_seed(0)
    model = SpacCaptioner(cfg, tok.vocab_size, tok.eos_id).eval()
    model.set_shortlist(range(2000, 2024))
    save_checkpoint(directory, model, tok)
    return directory


def image_dataset_with_a_corrupt_file(root: Path, identities: int, per_identity: int, seed: int, shard_size: int,
                                      broken: int) -> Path:
    """``root/images``: a ProcPedes image folder imported as LUPerson-NL is, whose ``broken``-th file (sorted) is
    truncated to 150 bytes: the synthesis jobs' input, with one image that cannot be read."""
    from pipelines.cli import main

    assert main(["render", "--out", str(root / "folder"), "--format", "image-folder", "--identities",
                 str(identities), "--images-per-identity", str(per_identity), "--captions-per-image", "0", "--seed",
                 str(seed)]) == 0
    target = sorted((root / "folder").rglob("*.jpg"))[broken]
    target.write_bytes(target.read_bytes()[:150])
    assert main(["import", "images", str(root / "folder"), "--out", str(root / "images"), "--shard-size",
                 str(shard_size), "--workers", "0"]) == 0
    return root / "images"


def kill_9_mid_job(cmd: list[str], out: Path, timeout: float = 120) -> int:
    """Start ``cmd`` (a dataset-writing command), SIGKILL it once its first shard is done, and return how many
    shards were done then; the job must not have finished."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and len(list((out / "_stats").glob("part-*.json"))) < 1:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the kill should land mid-job"
    return len(list((out / "_stats").glob("part-*.json")))

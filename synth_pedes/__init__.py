"""synth_pedes: the SYNTH-PEDES data layer (schema, manifests, Parquet shards, readers, sources).

Imports nothing of spac, plip_train or pipelines.
"""
import torchvision_cpu_shim as _torchvision_cpu_shim

_torchvision_cpu_shim.install()  # no-op unless torchvision's CUDA-built extension cannot load (see the module)

from .dataset import Dataset, ValidationReport, open_dataset, validate_dataset  # noqa: E402
from .errors import (DatasetExistsError, IntegrityError, ManifestError, SchemaMismatchError,  # noqa: E402
                     ShardPathError, ShardWriteError, SynthPedesError)
from .manifest import MANIFEST_FORMAT, Manifest, ShardInfo, read_manifest  # noqa: E402
from .schema import (HF_FEATURES, RECORD_SCHEMA, SCHEMA_FINGERPRINT, SLOTS, UNKNOWN,  # noqa: E402
                     make_record, records_to_table)
from .transforms import BatchedTransform, ExpandingTransform, PerItemTransform, class_fingerprint  # noqa: E402
from .writer import ShardStats, file_sha256, plan_shards, write_dataset  # noqa: E402

__all__ = [
    "Dataset", "ValidationReport", "open_dataset", "validate_dataset", "DatasetExistsError", "IntegrityError",
    "ManifestError", "SchemaMismatchError", "ShardPathError", "ShardWriteError", "SynthPedesError",
    "MANIFEST_FORMAT", "Manifest", "ShardInfo", "read_manifest", "HF_FEATURES", "RECORD_SCHEMA",
    "SCHEMA_FINGERPRINT", "SLOTS", "UNKNOWN", "make_record", "records_to_table", "ShardStats", "file_sha256", "plan_shards",
    "write_dataset", "PerItemTransform", "BatchedTransform", "ExpandingTransform", "class_fingerprint",
]

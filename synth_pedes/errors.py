"""A small exception hierarchy: every data-layer failure is a SynthPedesError with a message that
names the file, the problem and the fix."""


class SynthPedesError(Exception):
    """Base class of every error raised by synth_pedes."""


class ManifestError(SynthPedesError):
    """The manifest is missing, unreadable, malformed or of a format this version does not know."""


class ShardPathError(ManifestError):
    """A shard path in the manifest leaves the dataset directory."""


class IntegrityError(SynthPedesError):
    """A shard is missing, or its size, row count or checksum differs from the manifest."""


class SchemaMismatchError(SynthPedesError):
    """A shard's Arrow schema is not the record schema."""


class DatasetExistsError(SynthPedesError):
    """The output directory already holds a different (finished, immutable) dataset or write."""


class ShardWriteError(SynthPedesError):
    """A shard could not be written after its bounded retries."""


class DuplicateKeyError(SynthPedesError):
    """Two rows of one dataset have the same key (keys are unique: docs/formats.md#columns)."""


class WriteInProgressError(DatasetExistsError):
    """Another process is writing the same output directory."""


class OutputDirectoryError(SynthPedesError):
    """The output directory cannot be written: no space left, no permission, a read-only file system."""

"""Folders of person images (LUPerson layout) as an image dataset.

Two layouts, detected from the folder: flat (LUPerson: every file at the top level, identity -1) and
one folder per identity (LUPerson-NL: ``<identity>/<file>``, identity from the folder name). Every
regular, non-hidden file becomes exactly one row (except a top-level ``ground-truth.jsonl``, the side
table ``plip render`` writes; see ``synth_pedes.card.truth``): files that are empty, truncated, corrupt, not an
image or too large (in bytes or pixels, e.g. decompression bombs) become ``status=error`` rows with
the reason, so an import always finishes and nothing is silently dropped.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from ..schema import make_record
from ..writer import PER_ITEM, class_fingerprint

MAX_FILE_BYTES = 64 << 20  # one person crop is KBs; a 64 MB file is not a person image
MAX_PIXELS = 40_000_000  # decompression-bomb guard (PIL's own default warns at 89M)
MIN_SIDE = 8  # smaller than this is not a usable person crop


@dataclass(frozen=True)
class ImageItem:
    """One file to import: small and picklable, so shard plans ship cheaply to Dask workers."""
    relpath: str  # POSIX, relative to the source root
    identity: int
    size: int  # file size in bytes (plans shards by bytes)
    folder: str = ""  # identity folder name, when the layout has one


@dataclass(frozen=True)
class ImageFolderSource:
    """The import transform: one ``ImageItem`` -> one record (a per-item transform of ``write_dataset``)."""
    transform_kind = PER_ITEM
    root: str
    source: str  # name recorded in each row's ``source`` and key prefix
    split: str = "train"
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS

    def __call__(self, item: ImageItem) -> dict:
        return load_image_record(item, self)

    def fingerprint(self) -> str:
        return class_fingerprint(self)  # every field counts


def scan_image_folder(root: str | os.PathLike) -> tuple[str, list[ImageItem]]:
    """List the files under ``root`` in a deterministic order and detect the layout.

    Returns ``(layout, items)`` with layout ``"flat"`` or ``"identity-folders"``. Identity folders with
    integer names keep their number; other names are numbered in sorted order (the name is kept).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; pass a folder of person images")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file() and not _side_table(root, path):
                files.append(path)
    rel = sorted(p.relative_to(root).as_posix() for p in files)
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in files}
    nested = [r for r in rel if "/" in r]
    if not nested:
        return "flat", [ImageItem(r, -1, sizes[r]) for r in rel]
    folders = sorted({r.split("/", 1)[0] for r in nested})
    numeric = all(f.isdigit() for f in folders)
    ids = {f: int(f) if numeric else i for i, f in enumerate(folders)}
    items = [ImageItem(r, ids[r.split("/", 1)[0]], sizes[r], r.split("/", 1)[0]) if "/" in r
             else ImageItem(r, -1, sizes[r]) for r in rel]
    return "identity-folders", items


OUTSIDE_ROOT = "resolves outside the source root via a symlink"  # the reason (before ':') refused paths get


def stored_path(path: str) -> str:
    """A file name as keys, rows and messages store it (docs/formats.md#file-names): itself when its bytes are
    UTF-8, else each byte that is not UTF-8 as ``%XX`` (``os.walk`` hands such bytes over as lone surrogates,
    which Arrow and JSON cannot encode). The original bytes are ``os.fsencode(path)``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    text = os.fsencode(path).decode("utf-8", "surrogateescape")  # each bad byte b -> chr(0xDC00 + b)
    return "".join(f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else c for c in text)


def resolve_inside(root: str | os.PathLike, relpath: str, allow_outside: bool = False) -> Path:
    """The file ``relpath`` names under ``root``, resolved through any symlinks; ValueError with the reason
    (naming the path and the fix) when it is absolute, has ``..``, or resolves outside ``root``, unless
    ``allow_outside`` (``--allow-outside-root``). Checks names only: nothing outside the root is read."""
    parts = relpath.split("/")
    if not relpath or relpath.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a relative path inside the source root: {stored_path(relpath)!r}")
    root = Path(root).resolve()
    try:
        path = (root / relpath).resolve()  # a dangling link resolves to its (missing) target
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ValueError(f"unresolvable path: {stored_path(relpath)!r}: {stored_path(str(e))}") from None
    if not allow_outside and root not in path.parents:
        raise ValueError(f"{OUTSIDE_ROOT}: {stored_path(relpath)!r} leads to {stored_path(str(path))!r}; "
                         "pass --allow-outside-root to import it")
    return path


def _side_table(root: Path, path: Path) -> bool:
    """The ground-truth table `plip render` writes at the top of a folder: data about the images, not an image
    (importing it would make an error row that looks like a broken file)."""
    from ..card.truth import TRUTH_TABLE_NAME

    return path.name == TRUTH_TABLE_NAME and path.parent == root


def _inspect(data: bytes, source: ImageFolderSource) -> tuple[int, int]:
    return check_image_bytes(data, source.max_pixels)


def check_image_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Decode fully (catches truncation) with a pixel limit and return ``(width, height)``; raises
    ValueError with the reason (empty, not an image, too many pixels, corrupt, too small)."""
    import io

    if not data:
        raise ValueError("empty file: 0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ValueError(f"too many pixels: {width}x{height} exceeds the limit of {max_pixels} "
                                     "(decompression bomb?)")
                img.load()
    except UnidentifiedImageError:
        raise ValueError("not an image: PIL cannot identify the file format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"too many pixels: {e}") from None
    except (OSError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise ValueError(f"corrupt image: {e}") from None
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"image too small: {width}x{height}")
    return width, height


class LoadedImage(NamedTuple):
    """What ``read_image_file`` found: the bytes and size of a good image, or ``error`` saying why not."""
    data: bytes | None  # the original file bytes (None when unreadable, too large or bad)
    sha256: str | None  # of the file bytes, whenever they could be read
    width: int | None
    height: int | None
    error: str  # "" for a good image


def read_image_file(path: str | os.PathLike, max_file_bytes: int = MAX_FILE_BYTES,
                    max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read and check one image file (the checks of ``plip import images``, shared by every importer):
    unreadable, too large, empty, not an image, too many pixels, corrupt or too small files come back
    with ``error`` set (and no bytes) instead of raising."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise ValueError(f"file too large: {size} bytes exceeds the limit of {max_file_bytes}")
        data = path.read_bytes()
    except OSError as e:
        return LoadedImage(None, None, None, None, f"unreadable file: {e.strerror or e}")
    except ValueError as e:
        return LoadedImage(None, None, None, None, str(e))
    digest = hashlib.sha256(data).hexdigest()
    try:
        width, height = check_image_bytes(data, max_pixels)
    except ValueError as e:
        return LoadedImage(None, digest, None, None, str(e))
    return LoadedImage(data, digest, width, height, "")


def load_image_record(item: ImageItem, source: ImageFolderSource) -> dict:
    """One file as one record: ``status=ok`` with the original bytes, or ``status=error`` with why."""
    key = f"{source.source}/{item.relpath}"
    common = dict(identity=item.identity, source=source.source, split=source.split,
                  extra={"folder": item.folder} if item.folder and not item.folder.isdigit() else None)
    image = read_image_file(Path(source.root) / item.relpath, source.max_file_bytes, source.max_pixels)
    if image.error:
        return make_record(key, status="error", error=image.error, image_sha256=image.sha256, **common)
    return make_record(key, image_bytes=image.data, image_path=item.relpath, image_sha256=image.sha256,
                       width=image.width, height=image.height, **common)

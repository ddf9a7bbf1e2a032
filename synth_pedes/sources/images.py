"""Folders of person images (LUPerson layout) as an image dataset.

Two layouts, detected from the folder: flat (LUPerson: every file at the top level, identity -1) and
one folder per identity (LUPerson-NL: ``<identity>/<file>``, identity from the folder name; see
``identity_ids``). Every regular file becomes exactly one row: files that are empty, truncated, corrupt,
not an image or too large (in bytes or pixels, e.g. decompression bombs), dangling symlinks and symlinks
that lead outside the folder (unless allowed) become ``status=error`` rows with the reason, so an import
always finishes. What is not a row is counted by reason (``FolderScan.skipped``): hidden names, the
ground-truth side table ``plip render`` writes (``synth_pedes.card.truth``), files whose extension is not an
image format's (``IMAGE_EXTENSIONS``: a README.txt is not a bad image), things that are not regular files,
linked folders that contain themselves. Nothing is silently dropped (docs/formats.md#image-folders).
"""
from __future__ import annotations

import collections
import itertools
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

from PIL import Image, UnidentifiedImageError

from ..imaging import displayed_size, exif_orientation
from ..schema import make_record
from ..transforms import PER_ITEM, class_fingerprint

_log = logging.getLogger(__name__)
MAX_FILE_BYTES = 64 << 20  # one person crop is KBs; a 64 MB file is not a person image
MAX_PIXELS = 40_000_000  # decompression-bomb guard (PIL's own default warns at 89M)
MIN_SIDE = 8  # smaller than this is not a usable person crop
MAX_FOLDER_NUMBER = 10**15  # longer digit strings are names, not identity numbers
# why a path under the folder is not a row (the keys of FolderScan.skipped)
SKIPPED_HIDDEN = "hidden"  # a name starting with '.' (counted once per hidden folder)
SKIPPED_SIDE_TABLE = "ground-truth table"
SKIPPED_NOT_A_FILE = "not a regular file"  # a fifo, socket or device: reading one could block
SKIPPED_LOOP = "symlink loop"  # a linked folder inside itself
SKIPPED_NOT_IMAGE = "not an image file (extension)"  # README.txt, labels.csv, Thumbs.db, a file with no extension
# the file-name extensions of every format PIL can open, lower-cased: the one list of what counts as an image file
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class ImageItem:
    """One file to import: small and picklable, so shard plans ship cheaply to Dask workers."""
    relpath: str  # POSIX, relative to the source root, as the file system names it (see stored_path)
    identity: int
    size: int  # file size in bytes (plans shards by bytes)
    folder: str = ""  # the identity folder's stored name, when its id is not its number
    error: str = ""  # why the scan refused the path (then it is never read)


@dataclass(frozen=True)
class ImageFolderSource:
    """The import transform: one ``ImageItem`` -> one record (a per-item transform of ``write_dataset``)."""
    transform_kind = PER_ITEM
    root: str
    source: str  # name recorded in each row's ``source`` and key prefix
    split: str = "train"
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS
    allow_outside_root: bool = False  # --allow-outside-root: follow symlinks out of the root

    def __call__(self, item: ImageItem) -> dict:
        return load_image_record(item, self)

    def fingerprint(self) -> str:
        return class_fingerprint(self)  # every field counts


@dataclass
class FolderScan:
    """What ``scan_image_folder`` found."""
    layout: str  # "flat" or "identity-folders"
    items: list[ImageItem]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> paths that are not rows
    identity_map: dict[str, int] = field(default_factory=dict)  # folder -> id, where the id is not its number


def scan_image_folder(root: str | os.PathLike, allow_outside: bool = False) -> FolderScan:
    """List the files under ``root`` in a deterministic order, detect the layout and number the identities.

    Symlinks are followed while they stay inside ``root`` (or always, with ``allow_outside``); one that leads
    outside, dangles, or a folder that cannot be listed becomes an item with ``error`` set.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; pass a folder of person images")
    root = root.resolve()
    skipped: collections.Counter = collections.Counter()
    found = sorted(_walk(root, "", allow_outside, skipped, frozenset({root})))
    _check_unique_names([rel for rel, _, _ in found], root)
    folders = sorted({rel.split("/", 1)[0] for rel, _, _ in found if "/" in rel})
    ids, identity_map = identity_ids(folders)
    items = []
    for rel, size, error in found:
        folder = rel.split("/", 1)[0] if "/" in rel else None
        items.append(ImageItem(rel, -1, size, error=error) if folder is None else
                     ImageItem(rel, ids[folder], size, stored_path(folder) if folder in identity_map else "", error))
    return FolderScan("identity-folders" if folders else "flat", items, dict(sorted(skipped.items())),
                      {stored_path(f): i for f, i in identity_map.items()})


def _walk(root: Path, rel_dir: str, allow_outside: bool, skipped: collections.Counter,
          open_dirs: frozenset) -> Iterator[tuple[str, int, str]]:
    """``(relpath, size, error)`` for every file under ``root/rel_dir``; ``open_dirs``: the real paths of the
    folders being listed (a linked folder among them is a loop)."""
    from ..card.truth import TRUTH_TABLE_NAME

    try:
        with os.scandir(root / rel_dir) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as e:
        if not rel_dir:
            raise
        yield rel_dir, 0, f"unreadable folder: {stored_path(rel_dir)!r}: {e.strerror or e}"
        return
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        if entry.name.startswith("."):
            skipped[SKIPPED_HIDDEN] += 1
            continue
        if not rel_dir and entry.name == TRUTH_TABLE_NAME:
            skipped[SKIPPED_SIDE_TABLE] += 1
            continue
        if not entry.is_symlink():  # the common case: the listing already knows the type
            is_dir, is_file, path = entry.is_dir(), entry.is_file(), Path(entry.path)
        else:
            try:
                path = resolve_inside(root, rel, allow_outside)
            except ValueError as e:
                yield rel, 0, str(e)
                continue
            is_dir, is_file = path.is_dir(), path.is_file()
        if is_dir:
            real = path.resolve()
            if real in open_dirs:
                skipped[SKIPPED_LOOP] += 1
            else:
                yield from _walk(root, rel, allow_outside, skipped, open_dirs | {real})
        elif not is_image_name(entry.name):
            skipped[SKIPPED_NOT_IMAGE] += 1
        elif is_file:
            yield rel, path.stat().st_size, ""
        elif entry.is_symlink() and not path.exists():
            yield rel, 0, (f"dangling symlink: {stored_path(rel)!r} leads to {stored_path(str(path))!r}, which "
                           "does not exist; restore the target or remove the link")
        else:
            skipped[SKIPPED_NOT_A_FILE] += 1


def is_image_name(name: str) -> bool:
    """Whether a file name has the extension of an image format (``IMAGE_EXTENSIONS``, any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def holds_image_files(folder: str | os.PathLike, look_at: int = 200) -> bool:
    """Whether ``folder`` looks like a folder of images (flat, or one folder per identity): one of the first
    ``look_at`` names at its top level, or in one of its first ``look_at`` folders, is an image file. Bounded:
    it words an error message."""
    try:
        with os.scandir(folder) as top:
            for entry in itertools.islice(top, look_at):
                if is_image_name(entry.name) and entry.is_file():
                    return True
                if entry.is_dir() and not entry.name.startswith("."):
                    with os.scandir(entry.path) as inner:
                        if any(is_image_name(e.name) for e in itertools.islice(inner, look_at)):
                            return True
    except OSError:
        return False
    return False


def identity_ids(folders: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Identity ids for identity folders: ``(ids, mapped)``. A folder named by a number keeps it as its id
    (``0005`` is 5); the others -- names, and a second spelling of a number already taken (``7`` after
    ``007``) -- get ids after the largest number, in sorted order; ``mapped`` lists them (folder -> id) and
    each kind is warned about, since a mix usually means a stray folder."""
    ids: dict[str, int] = {}
    taken: set[int] = set()
    names, respelled = [], []  # mapped: not a number; a number already taken
    for name in sorted(folders):
        number = int(name) if name.isascii() and name.isdigit() and int(name) < MAX_FOLDER_NUMBER else None
        if number is None:
            names.append(name)
        elif number in taken:
            respelled.append(name)
        else:
            ids[name] = number
            taken.add(number)
    first = max(ids.values(), default=-1) + 1
    mapped_ids = {name: first + i for i, name in enumerate(sorted(names + respelled))}
    if names and ids:
        _log.warning("%d of %d identity folders are not numbers (e.g. %r): they get ids from %d on, listed "
                     "in the manifest (producer.config.identity_map)", len(names), len(folders),
                     stored_path(names[0]), first)
    if respelled:
        _log.warning("%d identity folders spell a number another folder already has (e.g. %r): they get ids "
                     "from %d on, listed in the manifest (producer.config.identity_map)",
                     len(respelled), stored_path(respelled[0]), first)
    return ids | mapped_ids, mapped_ids


def _check_unique_names(relpaths: list[str], root: Path) -> None:
    """Two files stored under the same name would be one key twice: only possible when an escaped name that
    is not UTF-8 (``a%FF.jpg``) meets a file literally named that way."""
    seen: dict[str, str] = {}
    for rel in relpaths:
        name = stored_path(rel)
        if name in seen:
            raise ValueError(f"{root}: {os.fsencode(seen[name])!r} and {os.fsencode(rel)!r} are both stored as "
                             f"{name!r} (file names that are not UTF-8 are stored escaped, "
                             "docs/formats.md#file-names); rename one of them")
        seen[name] = rel


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


class ImageInfo(NamedTuple):
    """What ``check_image_bytes`` found: the size as shown (after the EXIF orientation) and that orientation."""
    width: int
    height: int
    orientation: int  # EXIF orientation, 1 when upright (synth_pedes.imaging.exif_orientation)


def check_image_bytes(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Decode fully (catches truncation) with a pixel limit; raises ValueError with the reason (empty, not an
    image, too many pixels, corrupt, too small)."""
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
                (width, height), orientation = displayed_size(img), exif_orientation(img)
    except UnidentifiedImageError:
        raise ValueError("not an image: PIL cannot identify the file format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"too many pixels: {e}") from None
    except (OSError, SyntaxError, EOFError) as e:  # truncated or corrupt data
        raise ValueError(f"corrupt image: {e}") from None
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"image too small: {width}x{height}")
    return ImageInfo(width, height, orientation)


class LoadedImage(NamedTuple):
    """What ``read_image_file`` found: the bytes and size of a good image, or ``error`` saying why not."""
    data: bytes | None  # the original file bytes (None when unreadable, too large or bad)
    sha256: str | None  # of the file bytes, whenever they could be read
    width: int | None  # as shown: after the EXIF orientation
    height: int | None
    error: str  # "" for a good image
    orientation: int = 1  # EXIF orientation the bytes are stored with (readers apply it: synth_pedes.imaging)


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
        return LoadedImage(None, None, None, None, f"unreadable file: {stored_path(str(e.strerror or e))}")
    except ValueError as e:
        return LoadedImage(None, None, None, None, str(e))
    digest = hashlib.sha256(data).hexdigest()
    try:
        info = check_image_bytes(data, max_pixels)
    except ValueError as e:
        return LoadedImage(None, digest, None, None, str(e))
    return LoadedImage(data, digest, info.width, info.height, "", info.orientation)


def load_image_record(item: ImageItem, source: ImageFolderSource) -> dict:
    """One file as one record: ``status=ok`` with the original bytes, or ``status=error`` with why. A file
    refused by the scan or by ``resolve_inside`` is not read. Keys and ``image.path`` hold ``stored_path``;
    ``extra`` the folder name (when its id is not its number), the original name bytes (when escaped) and
    the EXIF orientation (when not upright)."""
    name = stored_path(item.relpath)
    key = f"{source.source}/{name}"
    extra = {"folder": item.folder} if item.folder else {}
    if name != item.relpath:
        extra["path_bytes"] = os.fsencode(item.relpath).hex()
    common = dict(identity=item.identity, source=source.source, split=source.split)
    error, image = item.error, None
    if not error:
        try:
            path = resolve_inside(source.root, item.relpath, source.allow_outside_root)
            image = read_image_file(path, source.max_file_bytes, source.max_pixels)
            error = image.error
        except ValueError as e:
            error = str(e)
    if error:
        return make_record(key, status="error", error=error, image_sha256=image and image.sha256,
                           extra=extra or None, **common)
    if image.orientation != 1:
        extra["exif_orientation"] = image.orientation
    return make_record(key, image_bytes=image.data, image_path=name, image_sha256=image.sha256,
                       width=image.width, height=image.height, extra=extra or None, **common)

"""Transforms: how ``write_dataset`` turns work items into records, in three declared kinds.

A sequence of work items becomes records through a *transform* of one of three declared kinds
(:class:`PerItemTransform`, :class:`BatchedTransform`, :class:`ExpandingTransform`; a plain function is
a per-item transform without declaring anything). Its :meth:`fingerprint` is part of the shard plan's
(synth_pedes.writer), so resuming a write with a transform whose output would differ is refused.
"""
from __future__ import annotations

import functools
import types
from typing import Any, Callable, ClassVar, Iterable, Iterator, Literal, Protocol, Union


PER_ITEM = "per-item"  # transform(item) -> one record
BATCHED = "batched"  # transform([up to batch_size items]) -> one record per item, in order
EXPANDING = "expanding"  # transform(item) -> an iterable of records (any number)
TRANSFORM_KINDS = (PER_ITEM, BATCHED, EXPANDING)


class PerItemTransform(Protocol):
    """One work item in, one record out (e.g. a file to import -> its row).

    A plain function, a method or a ``functools.partial`` of a function is this kind without declaring
    anything: its fingerprint is its qualified name (and a partial's arguments). A callable object declares
    ``transform_kind = PER_ITEM`` and a :meth:`fingerprint`."""

    transform_kind: ClassVar[Literal["per-item"]]

    def __call__(self, item: Any) -> dict:
        ...

    def fingerprint(self) -> str:
        """What identifies this transform's output: two transforms with the same fingerprint make the same
        records from the same items. It is part of the shard plan's fingerprint, so resuming a write with a
        transform whose output would differ is refused: include the class's name and every setting that
        changes the records; leave out what changes only how they are made (threads, devices, timing).
        :func:`class_fingerprint` is the usual choice."""
        ...


class BatchedTransform(Protocol):
    """Lists of up to ``batch_size`` work items in, exactly one record per item out, in order (model
    inference over a batch)."""

    transform_kind: ClassVar[Literal["batched"]]
    batch_size: int  # >= 1

    def __call__(self, items: list) -> Iterable[dict]:
        ...

    def fingerprint(self) -> str:
        """As :meth:`PerItemTransform.fingerprint`."""
        ...


class ExpandingTransform(Protocol):
    """One work item in, any number of records out (e.g. an input row group -> its rows, annotated); plan the
    shards with ``rows_of(item)`` so that they hold whole items of about ``shard_rows`` rows."""

    transform_kind: ClassVar[Literal["expanding"]]

    def __call__(self, item: Any) -> Iterable[dict]:
        ...

    def fingerprint(self) -> str:
        """As :meth:`PerItemTransform.fingerprint`."""
        ...


Transform = Union[PerItemTransform, BatchedTransform, ExpandingTransform, Callable[[Any], dict]]


def class_fingerprint(transform: Any) -> str:
    """``module.Class:repr``: the fingerprint of a transform whose ``repr`` shows its whole configuration (a
    dataclass, e.g. ``Records(delay=0.02)``)."""
    return f"{type(transform).__module__}.{type(transform).__qualname__}:{transform!r}"


def _is_plain_function(transform: Any) -> bool:
    if isinstance(transform, functools.partial):
        return _is_plain_function(transform.func)
    return isinstance(transform, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


def transform_kind(transform: Transform | None) -> str | None:
    """The kind ``transform`` declares (None for no transform), after checking the declaration: a callable
    object must declare one of :data:`TRANSFORM_KINDS` and a ``fingerprint()``, a batched one a ``batch_size``."""
    if transform is None:
        return None
    if _is_plain_function(transform):
        return PER_ITEM
    name = type(transform).__qualname__
    if not callable(transform):
        raise TypeError(f"transform {name} is not callable")
    kind = getattr(type(transform), "transform_kind", None)
    if kind is None:
        raise TypeError(f"transform {name} declares no transform_kind: a callable object must say which kind it is "
                        f"({', '.join(TRANSFORM_KINDS)}: see synth_pedes.transforms.PerItemTransform, BatchedTransform, "
                        "ExpandingTransform) and give a fingerprint(); a plain function needs neither")
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"transform {name} declares transform_kind={kind!r}, which is not one of "
                         f"{', '.join(TRANSFORM_KINDS)}")
    if not callable(getattr(transform, "fingerprint", None)):
        raise TypeError(f"transform {name} ({kind}) has no fingerprint() method: it must say what identifies its "
                        "output (see synth_pedes.transforms.PerItemTransform.fingerprint)")
    batch_size = getattr(transform, "batch_size", None)
    if kind == BATCHED and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"transform {name} is batched, so its batch_size must be an integer >= 1, got {batch_size!r}")
    return kind


def transform_fingerprint(transform: Transform | None) -> str:
    """What identifies ``transform``'s output, stable across processes (part of the plan fingerprint):
    functions by qualified name, partials by function and arguments, declared transforms by their
    ``fingerprint()``."""
    if transform is None:
        return ""
    if isinstance(transform, functools.partial):
        return (f"partial({transform_fingerprint(transform.func)}, {transform.args!r}, "
                f"{sorted(transform.keywords.items())!r})")
    if _is_plain_function(transform):
        return f"{transform.__module__}.{transform.__qualname__}"
    return transform.fingerprint()


def apply_transform(transform: Transform | None, items: list) -> Iterator:
    """Records from items, lazily, as the transform's declared kind says (see :func:`transform_kind`)."""
    kind = transform_kind(transform)
    if kind is None:
        yield from items
    elif kind == PER_ITEM:
        yield from (transform(item) for item in items)
    elif kind == EXPANDING:
        for item in items:
            yield from transform(item)
    else:  # BATCHED
        for start in range(0, len(items), transform.batch_size):
            chunk = items[start:start + transform.batch_size]
            records = list(transform(chunk))
            if len(records) != len(chunk):
                raise ValueError(f"batched transform {transform_fingerprint(transform)} returned {len(records)} "
                                 f"records for {len(chunk)} items; it must return exactly one per item")
            yield from records

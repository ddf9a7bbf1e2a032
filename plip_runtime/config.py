"""The one way configs are checked and changed.

Every typed config is a dataclass deriving from :class:`ConfigBase`. Its ``validate()`` states each rule
once with the ``require*`` helpers and runs on construction and on every ``replace``, so a bad value fails
where it is read, naming the field (``CaptionerConfig.lr: must be a number in (0, 1], got 0``), never an hour
into a run; commands do not re-check what a config validates. ``replace`` is ``dataclasses.replace``: a
``None`` is a value like any other. ``from_dict`` refuses unknown keys (keys starting with ``_`` are
comments) and builds nested sections; ``to_dict`` is its inverse, so a config round-trips through JSON.
``apply_override`` reads the ``--set key.path=VALUE`` items every command takes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence


class ConfigError(ValueError):
    """A config value that breaks a rule, or a config document that cannot be read; the message names the field,
    the rule and the value (and the file, when there is one)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class ConfigBase:
    """Base of the typed config dataclasses (see the module docstring)."""

    where: ClassVar[str] = ""  # how messages name this config: its class name unless a section name is given

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that breaks a rule (subclasses state their rules)."""

    # ---- rules ----------------------------------------------------------------------------------------
    def field_name(self, name: str) -> str:
        return f"{self.where or type(self).__name__}.{name}"

    def require(self, name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{self.field_name(name)}: {rule}, got {getattr(self, name)!r}")

    def require_int(self, name: str, lo: int | None = None, hi: int | None = None, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        bounds = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
        rule = "must be an integer" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")
        self.require(name, _is_int(value) and (lo is None or value >= lo) and (hi is None or value <= hi),
                     rule + (" or null" if optional else ""))

    def require_number(self, name: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                       optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        ok = _is_number(value) and math.isfinite(value) and (lo is None or value > lo or (value == lo and not lo_open)) \
            and (hi is None or value <= hi)
        low = "-inf" if lo is None else lo
        high = "inf" if hi is None else hi
        self.require(name, ok, f"must be a number in {'(' if lo_open else '['}{low}, {high}]"
                               + (" or null" if optional else ""))

    def require_choice(self, name: str, options: Sequence) -> None:
        self.require(name, getattr(self, name) in options, f"must be one of {', '.join(map(str, options))}")

    def require_bool(self, name: str) -> None:
        self.require(name, isinstance(getattr(self, name), bool), "must be true or false")

    def require_item(self, name: str, value: Any, ok: bool, rule: str) -> None:
        """:meth:`require` for a value that is not itself a field: an entry of a dict field (``name`` its dotted
        path, e.g. ``bert.hidden_size``) or several fields judged together (``value`` what the message shows)."""
        if not ok:
            raise ConfigError(f"{self.field_name(name)}: {rule}, got {value!r}")

    # ---- changing and (de)serialising ---------------------------------------------------------------------
    def replace(self, **changes):
        """A validated copy with ``changes`` applied (``dataclasses.replace``: ``None`` is a value)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON values: tuples become lists, nested sections dicts; fields starting with ``_`` are left out."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None, *, base: "ConfigBase | None" = None):
        """Build from a JSON object. Nested sections are built the same way, starting from the section's default
        (or ``base``'s section), so a document may give only some of a section's fields. ``source`` (a file)
        prefixes every error."""
        try:
            return cls._from_dict(data, base)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}" if source else str(e)) from None

    @classmethod
    def _from_dict(cls, data: Any, base: "ConfigBase | None"):
        label = cls.where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{label}: must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
        unknown = sorted(k for k in data if k not in known and not str(k).startswith("_"))
        if unknown:
            raise ConfigError(f"{label}: unknown field(s) {unknown}; the fields are {sorted(known)}")
        values = {}
        for name, value in data.items():
            if name not in known:
                continue
            section = _section(known[name], base)
            values[name] = type(section)._from_dict(value, section) if section is not None else value
        try:
            return dataclasses.replace(base, **values) if base is not None else cls(**values)
        except TypeError as e:  # a required field missing
            raise ConfigError(f"{label}: {e}") from None


def _section(field: dataclasses.Field, base: ConfigBase | None) -> ConfigBase | None:
    """The default of a nested-section field (a ConfigBase), or None for a plain field."""
    if base is not None:
        value = getattr(base, field.name)
        return value if isinstance(value, ConfigBase) else None
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        return value if isinstance(value, ConfigBase) else None
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigBase):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def read_json(path: str | os.PathLike) -> Any:
    """A JSON config document from a file; ConfigError naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def fold_into_section(data: Any, fields: Sequence[str], section: str) -> Any:
    """A config document written before ``section`` existed, with its top-level ``fields`` moved into it (the
    section's own values win); anything else is returned as it is."""
    if not isinstance(data, dict) or not any(k in data for k in fields):
        return data
    data = dict(data)
    moved = {k: data.pop(k) for k in fields if k in data}
    data[section] = {**moved, **(data.get(section) or {})}
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``: the value is read as JSON, else kept as a string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=1e-3 (a dotted path for a "
                          "field inside a section)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.split("."), value


def set_path(document: dict, path: Sequence[str], value: Any, *, create: bool, what: str) -> dict:
    """Set ``value`` at ``path`` (``["optim", "lr"]``) inside a config document; ``create``: make missing sections
    on the way, else a missing one is an error. ``what`` names the change in errors."""
    node = document
    for depth, part in enumerate(path[:-1]):
        if part not in node and create:
            node[part] = {}
        if not isinstance(node.get(part), dict):
            problem = "a value, not a section" if part in node else "not a section"
            raise ConfigError(f"{what}: {'.'.join(path[:depth + 1])} is {problem}")
        node = node[part]
    node[path[-1]] = value
    return document


def apply_override(document: dict, item: str) -> dict:
    """Set one ``--set KEY.PATH=VALUE`` item in a config document (a dict), creating sections on the way."""
    path, value = parse_override(item)
    return set_path(document, path, value, create=True, what=f"--set {item!r}")

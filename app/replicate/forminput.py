"""Submitted form values checked against a model's input fields (see `app.replicate.schema`).

``validate_input`` turns submitted form text into values of the schema's JSON types (``3.5``, not
``"3.5"``; ``[0.8, 1.0]``, not ``"0.8, 1.0"``), checks ranges, enums and item counts the way
Replicate would, and leaves empty optional inputs out so the model's default applies. File inputs
arrive as entries (an upload, a URL, a gallery image) read by ``parse_file_entry``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from app.replicate.schema import Field, number_text, value_text

UNCHECKED = frozenset({"off", "false", "0", "no", ""})
_FILE_PREFIXES = ("https://", "http://", "data:")
_NUMBER_SPLIT = re.compile(r"[,;\s]+")



def _check_range(value: float, low: float | None, high: float | None, low_open: bool = False,
                 high_open: bool = False) -> str | None:
    if low is not None and (value <= low if low_open else value < low):
        return f"Must be {'more than' if low_open else 'at least'} {number_text(low)}"
    if high is not None and (value >= high if high_open else value > high):
        return f"Must be {'less than' if high_open else 'at most'} {number_text(high)}"
    return None


def _coerce_number(kind: str, raw: str) -> tuple[Any, str | None]:
    if kind == "integer":
        try:
            return int(raw), None
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                return None, "Must be a whole number"
            if not math.isfinite(number) or not number.is_integer():
                return None, "Must be a whole number"
            return int(number), None
    try:
        value = float(raw)
    except ValueError:
        return None, "Must be a number"
    if not math.isfinite(value):
        return None, "Must be a number"
    return value, None


def _choose(choices: list[Any], raw: str) -> tuple[Any, str | None]:
    for choice in choices:
        if value_text(choice) == raw:
            return choice, None
    shown = ", ".join(value_text(choice) for choice in choices[:20])
    more = f", … ({len(choices)} values)" if len(choices) > 20 else ""
    return None, f"Choose one of: {shown}{more}"


def _boolean(raw: str) -> bool | None:
    text = raw.strip().lower()
    if text in ("true", "on", "1", "yes"):
        return True
    if text in ("false", "off", "0", "no"):
        return False
    return None


def _coerce(field: Field, raw: str) -> tuple[Any, str | None]:
    """(value, None) or (None, error) for one non-empty form value of a single-valued field."""
    if field.kind in ("integer", "number"):
        value, error = _coerce_number(field.kind, raw)
        if error:
            return None, error
        error = _check_range(value, field.minimum, field.maximum, field.exclusive_minimum, field.exclusive_maximum)
        return (None, error) if error else (value, None)
    if field.kind == "choice":
        return _choose(field.choices, raw)
    if field.kind == "boolean":
        value = _boolean(raw)
        return (value, None) if value is not None else (None, "Choose yes or no")
    if field.kind == "json":
        try:
            value = json.loads(raw)
        except ValueError as exc:
            return None, f"Must be JSON ({exc.msg} at character {exc.pos + 1})"
        return value, None
    if field.max_length is not None and len(raw) > field.max_length:
        return None, f"At most {field.max_length} characters"
    return raw, None


def _list_items(field: Field, raw: str) -> list[str]:
    """The items typed into a list field: JSON ("[0.8, 1.0]"), or numbers separated by commas or
    spaces, or text one per line."""
    text = raw.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [value_text(item) for item in parsed]
    if field.item_kind in ("integer", "number", "boolean"):
        return [part for part in _NUMBER_SPLIT.split(text) if part]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _count_error(field: Field, count: int, noun: str) -> str | None:
    if field.min_items is not None and count < field.min_items:
        return f"Give at least {field.min_items} {noun}{'s' if field.min_items != 1 else ''}"
    if field.max_items is not None and count > field.max_items:
        return f"Give at most {field.max_items} {noun}{'s' if field.max_items != 1 else ''}"
    return None


def _coerce_list(field: Field, raw_items: list[str]) -> tuple[list[Any] | None, str | None]:
    values = []
    for position, raw in enumerate(raw_items, start=1):
        if field.item_kind in ("integer", "number"):
            value, error = _coerce_number(field.item_kind, raw)
            if error is None:
                error = _check_range(value, field.item_minimum, field.item_maximum)
        elif field.item_kind == "choice":
            value, error = _choose(field.item_choices, raw)
        elif field.item_kind == "boolean":
            value = _boolean(raw)
            error = None if value is not None else "Must be true or false"
        else:
            value, error = raw, None
        if error:
            return None, f"Item {position} ({raw[:40]}): {error[0].lower()}{error[1:]}"
        values.append(value)
    error = _count_error(field, len(values), "value")
    return (None, error) if error else (values, None)


def _getlist(form: Mapping[str, Any], name: str) -> list[str]:
    if hasattr(form, "getlist"):
        return [str(value) for value in form.getlist(name)]
    value = form.get(name)
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def file_entry_error(entry: str) -> str | None:
    """Why a typed file value is not a link Replicate can fetch (None when it is one)."""
    if entry.startswith(_FILE_PREFIXES):
        return None
    return "Must be a link to a file (https://...), an uploaded file or a gallery image"


def validate_input(fields: list[Field], form: Mapping[str, Any], *,
                   files: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, errors) for a submitted form: values have the schema's JSON types, errors map an
    input name to a sentence for its field.

    Empty optional inputs are left out so the model's default applies. ``files`` holds the ready
    input value(s) of file inputs — one value for "file", a list for "files" — as the caller resolved
    them from uploads, gallery picks and pasted links; without it, links typed into the form are used.
    ``form`` may be a MultiDict (list fields then take every value sent under their name).
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    files = files or {}
    for field in fields:
        name = field.name
        if field.kind == "unsupported":
            if field.required:
                errors[name] = f"{field.problem} The model requires it, so it cannot be run from Tessera."
            continue
        if field.kind == "boolean" and not (field.nullable and field.default is None):
            # A checkbox is sent only when ticked.
            raw = form.get(name)
            values[name] = raw is not None and str(raw).strip().lower() not in UNCHECKED
            continue
        if field.kind == "files":
            entries = files.get(name)
            if entries is None:
                entries = [part for raw in _getlist(form, name) for part in raw.split() if part]
                bad = next((e for e in entries if file_entry_error(e)), None)
                if bad is not None:
                    errors[name] = file_entry_error(bad)
                    continue
            entries = list(entries) if isinstance(entries, (list, tuple)) else [entries]
            if not entries:
                if field.required or (field.min_items or 0) > 0:
                    errors[name] = "Add at least one file" if not field.min_items else _count_error(field, 0, "file")
                continue
            error = _count_error(field, len(entries), "file")
            if error:
                errors[name] = error
            else:
                values[name] = entries
            continue
        if field.kind == "file" and files.get(name):
            supplied = files[name]
            values[name] = supplied[0] if isinstance(supplied, (list, tuple)) else supplied
            continue
        if field.kind == "list":
            raw_values = [raw for raw in _getlist(form, name) if raw.strip()]
            raw_items = [item for raw in raw_values for item in _list_items(field, raw)]
            if not raw_items:
                if field.required:
                    errors[name] = "This field is required"
                continue
            value, error = _coerce_list(field, raw_items)
            if error:
                errors[name] = error
            else:
                values[name] = value
            continue
        raw = str(form.get(name) or "")
        if field.kind != "password":  # a secret is sent exactly as typed
            raw = raw.strip()
        if not raw:
            if field.required:
                errors[name] = "This field is required"
            continue
        if field.kind == "file":
            error = file_entry_error(raw)
            if error:
                errors[name] = error
            else:
                values[name] = raw
            continue
        value, error = _coerce(field, raw)
        if error is None:
            values[name] = value
        else:
            errors[name] = error
    return values, errors


# ---- what a file control sends -----------------------------------------------------------------

_ENTRY = re.compile(r"(generation|canvas):(\d{1,18})|upload:([0-9a-f]{32}\.(?:png|jpg|webp))|file:([A-Za-z0-9]{1,40})")


@dataclass(frozen=True)
class FileEntry:
    """One item of a file control (static/js/file-inputs.js), in the order the user arranged them.

    ``source`` is "link" (``value`` is an https URL or a data: URI, sent as it is), "generation"
    (a gallery image or canvas variation, by id), "canvas" (a canvas's content, by id), "upload"
    (a file uploaded with an earlier submit of this form, by its stored name) or "part" (a file
    sent with this request, by its key: the part is named "<input>.file.<key>").
    """
    source: str
    value: str


def parse_file_entry(text: str) -> FileEntry | None:
    """The entry a file control sent, or None when the text is none of the forms above."""
    text = text.strip()
    if text.startswith(_FILE_PREFIXES):
        return FileEntry("link", text)
    match = _ENTRY.fullmatch(text)
    if match is None:
        return None
    if match.group(1):
        return FileEntry(match.group(1), match.group(2))
    if match.group(3):
        return FileEntry("upload", match.group(3))
    return FileEntry("part", match.group(4))


def file_entries(form: Mapping[str, Any], name: str) -> tuple[list[FileEntry], str | None]:
    """The entries sent for the file input ``name`` (links typed without JavaScript may be several,
    separated by spaces), and an error for the first that is not one."""
    entries = []
    for raw in _getlist(form, name):
        parts = [raw.strip()] if raw.strip().startswith("data:") else raw.split()
        for part in parts:
            entry = parse_file_entry(part)
            if entry is None:
                return entries, file_entry_error(part)
            entries.append(entry)
    return entries, None

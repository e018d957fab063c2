"""What the Generate form's file controls sent, made into what a job keeps and what the form shows.

A file control (templates/_schema_fields.html, static/js/file-inputs.js) sends, under the input's
name and in the user's order, entries read by `app.replicate.forminput.parse_file_entry`: links,
``generation:ID`` (a gallery image or canvas variation), ``canvas:ID`` (a canvas's picture),
``upload:NAME`` (an image uploaded with an earlier try of this form) and ``file:KEY`` (a file sent
with this request as the part ``<input>.file.KEY``); without JavaScript the file box's own files
come under the input's name too. Everything is checked here, in the request: another user's image
is "not found", an upload must be a readable PNG/JPEG/WebP within the size limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

from flask import current_app, url_for

from app.canvas import canvas_for_input
from app.extensions import db
from app.gallery import Generation
from app.replicate.client import shorten_url
from app.replicate.forminput import FileEntry, file_entries
from app.replicate.schema import Field
from app.uploads import UploadRejected, read_image_upload, store_upload


@dataclass
class Shown:
    """One item as the file control shows it again: the value it sends, a label, a preview URL."""
    value: str
    label: str
    preview: str | None = None


@dataclass
class FileChoice:
    """The file inputs of one submitted form."""
    refs: dict[str, dict] = dataclass_field(default_factory=dict)  # for the job: {name: {"many", "items"}}
    values: dict[str, list[str]] = dataclass_field(default_factory=dict)  # placeholders for validate_input
    shown: dict[str, list[Shown]] = dataclass_field(default_factory=dict)  # for the form, if shown again
    errors: dict[str, str] = dataclass_field(default_factory=dict)


def collect_files(fields: list[Field], form, files, user_id: int) -> FileChoice:
    """Resolve every file input's entries (see the module docstring); uploads are stored at once so
    that a form shown again with an error elsewhere keeps them."""
    choice = FileChoice()
    for field in fields:
        if not field.is_file:
            continue
        entries, error = file_entries(form, field.name)
        # Without JavaScript the file box posts its files under the input's own name.
        entries += [FileEntry("plain-upload", str(index)) for index, storage in
                    enumerate(files.getlist(field.name)) if storage and storage.filename]
        items, shown = [], []
        for entry in entries:
            try:
                item, show = _resolve(entry, field.name, files, user_id)
            except (LookupError, ValueError, UploadRejected) as exc:
                error = error or str(exc)
                continue
            items.append(item)
            shown.append(show)
        choice.shown[field.name] = shown
        if error:
            choice.errors[field.name] = error
        elif field.kind == "file" and len(items) > 1:
            choice.errors[field.name] = "This input takes one image: remove the others."
        elif items:
            choice.refs[field.name] = {"many": field.kind == "files", "items": items}
            choice.values[field.name] = [show.value for show in shown]
    return choice


def shown_entries(fields: list[Field], values: dict, user_id: int) -> dict[str, list[Shown]]:
    """What file inputs show when the form is opened with entries already chosen (use as input, a
    model switch, fixing a refused job); entries that no longer resolve are dropped."""
    shown: dict[str, list[Shown]] = {}
    for field in fields:
        raw = values.get(field.name)
        if not field.is_file or not raw:
            continue
        entries, _error = file_entries({field.name: raw if isinstance(raw, list) else [raw]}, field.name)
        for entry in entries:
            if entry.source == "part":
                continue  # a file of another request: the browser has to send it again
            try:
                shown.setdefault(field.name, []).append(_resolve(entry, field.name, None, user_id)[1])
            except (LookupError, ValueError, UploadRejected):
                continue
    return shown


def entries_of_job(files: dict) -> dict[str, list[str]]:
    """The entries a job was sent with, for its form shown again ({name: ["generation:3", link, …]})."""
    entries = {}
    for name, spec in files.items():
        if isinstance(spec, dict):
            entries[name] = [item.get("entry") or item["url"] for item in spec.get("items") or []
                             if item.get("entry") or item.get("url")]
    return entries


def _resolve(entry: FileEntry, name: str, files, user_id: int) -> tuple[dict, Shown]:
    """(what the job keeps, what the form shows) for one entry; raises with a sentence when it is bad."""
    if entry.source == "link":
        return {"url": entry.value}, Shown(entry.value, shorten_url(entry.value, 60))
    if entry.source == "generation":
        generation = db.session.get(Generation, int(entry.value))
        if generation is None or generation.user_id != user_id:
            raise LookupError("That gallery image was not found (it may have been deleted).")
        label = generation.prompt[:40] or f"Image {generation.id}"
        return ({"path": generation.path, "entry": f"generation:{generation.id}"},
                Shown(f"generation:{generation.id}", label, url_for("generate.image", generation_id=generation.id)))
    if entry.source == "canvas":
        canvas = canvas_for_input(user_id, int(entry.value))
        return ({"canvas": canvas.id, "entry": f"canvas:{canvas.id}"},
                Shown(f"canvas:{canvas.id}", f"Canvas “{canvas.name}”",
                      url_for("canvas.thumbnail", canvas_id=canvas.id, v=canvas.thumbnail_revision)))
    if entry.source == "upload":
        relpath = f"uploads/{entry.value}"
        if not (Path(current_app.config["DATA_DIR"]) / relpath).is_file():
            raise LookupError("An image uploaded earlier is gone: upload it again.")
        return {"path": relpath, "entry": f"upload:{entry.value}"}, Shown(f"upload:{entry.value}", "Uploaded image")
    storage = None
    if files is not None:
        storage = (files.get(f"{name}.file.{entry.value}") if entry.source == "part"
                   else files.getlist(name)[int(entry.value)])
    if storage is None or not storage.filename:
        raise LookupError("A chosen file did not arrive with the form: add it again.")
    data, image_format = read_image_upload(storage, current_app.config["MAX_IMAGE_UPLOAD_BYTES"])
    relpath = store_upload(Path(current_app.config["DATA_DIR"]), data, image_format)
    stored = Path(relpath).name
    return {"path": relpath, "entry": f"upload:{stored}"}, Shown(f"upload:{stored}", storage.filename[:80])

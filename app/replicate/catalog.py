"""The model catalog: which models a user can pick, the input schema of each (cached, refreshed from
Replicate), and the configured client.

Every area asks here: Generate for its form, the canvas for inpainting models, datasets for
captioners. A model's kind ("text-to-image", "inpaint", "caption") decides where it is offered;
a new kind of model, or a captioning model's option, is added here and in `presets`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from app.extensions import db
from app.models import utcnow
from app.replicate.client import ModelInfo, ReplicateClient, ReplicateError, parse_model_ref
from app.replicate.models import ModelEntry
from app.replicate.presets import PRESETS, preset_for

SCHEMA_MAX_AGE = timedelta(days=1)


def client_from_config(config=None) -> ReplicateClient:
    """A `ReplicateClient` set up from the app config (the current app's unless `config` is given):
    REPLICATE_API_TOKEN, REPLICATE_API_BASE, the trusted download hosts, whether plain-HTTP
    downloads are allowed (tests only) and the largest output file kept (MAX_OUTPUT_BYTES). Use it as a context manager so its connections close."""
    config = config or current_app.config
    return ReplicateClient(
        config["REPLICATE_API_TOKEN"],
        config["REPLICATE_API_BASE"],
        download_hosts=set(config["REPLICATE_DOWNLOAD_HOSTS"]) or None,
        allow_http_downloads=config["REPLICATE_ALLOW_HTTP_DOWNLOADS"],
        max_download_bytes=config.get("MAX_OUTPUT_BYTES", 64 * 1024 * 1024),
    )


@dataclass
class ModelChoice:
    """A model as a picker lists it: ``ref`` (owner/name[:version]), ``label``, ``kind``
    ("text-to-image", "inpaint" or "caption"), and whether it is a shipped preset."""

    ref: str
    label: str
    kind: str
    preset: bool


def available_models(user_id: int, kind: str | None = None) -> list[ModelChoice]:
    """The presets, then the models this user added (by label); only those of `kind` when given."""
    choices = [ModelChoice(p.ref, p.label, p.kind, True) for p in PRESETS]
    entries = db.session.scalars(db.select(ModelEntry).where(ModelEntry.user_id == user_id).order_by(ModelEntry.label))
    choices += [ModelChoice(e.ref, e.label, e.kind, False) for e in entries]
    return [c for c in choices if kind is None or c.kind == kind]


def is_available(user_id: int, ref: str) -> bool:
    """Whether `ref` is in this user's picker (a preset or a model they added)."""
    return any(c.ref == ref for c in available_models(user_id))


def model_schema(user_id: int, ref: str) -> tuple[dict, str | None]:
    """The model's openapi schema and, when it could not be refreshed, a note saying why.

    A schema younger than SCHEMA_MAX_AGE (a day) is used as cached; an older one is fetched again
    when a token is set, falling back to the cached copy, then to the preset's snapshot. Raises
    LookupError (with a sentence for the user) when no schema is known at all.
    """
    entry = _entry(user_id, ref)
    fresh = entry is not None and entry.openapi_schema and entry.schema_fetched_at and (
        utcnow() - entry.schema_fetched_at < SCHEMA_MAX_AGE)
    if fresh:
        return entry.openapi_schema, None
    note = None
    if current_app.config["REPLICATE_API_TOKEN"]:
        try:
            return _refresh(user_id, ref, entry), None
        except ReplicateError as exc:
            note = f"Could not refresh the model's options from Replicate ({exc.message}); showing the last known ones."
    if entry is not None and entry.openapi_schema:
        return entry.openapi_schema, note
    preset = preset_for(ref)
    if preset is not None:
        return preset.openapi_schema, note
    raise LookupError(note or f"No options are known for {ref} yet: set REPLICATE_API_TOKEN so they can be fetched.")


def add_model(user_id: int, ref: str, kind: str) -> ModelEntry:
    """Add owner/name or owner/name:version to the user's picker as `kind`; fetches its schema now.

    Raises ValueError for a malformed ref and ReplicateError when Replicate cannot give the schema
    (the caller rolls back); commits on success.
    """
    ref = ref.strip()
    parse_model_ref(ref)  # ValueError with a clear message
    entry = _entry(user_id, ref)
    if entry is None or entry.user_id is None:
        entry = ModelEntry(user_id=user_id, ref=ref, label=ref, kind=kind)
        db.session.add(entry)
    entry.kind = kind
    _refresh(user_id, ref, entry)
    return entry


def mask_polarity(user_id: int, ref: str) -> str:
    """"white-repaints" or "black-repaints": what the model's mask input expects (a user's entry,
    then the preset, else white-repaints, which most inpainting models use)."""
    entry = _entry(user_id, ref)
    if entry is not None and entry.mask_polarity:
        return entry.mask_polarity
    preset = preset_for(ref)
    return (preset.mask_polarity if preset else None) or "white-repaints"


def model_label(info: ModelInfo) -> str:
    """How the picker names a model added by reference: owner/name as Replicate answers it, and a pinned
    version by its first 8 characters as replicate.com shows versions ("stability-ai/sdxl · 7762fd07"),
    not the 64-character id the user pasted."""
    name = f"{info.owner}/{info.name}"
    pinned = ":" in info.ref and info.version_id
    return (f"{name} · {info.version_id[:8]}" if pinned else name)[:200]  # ModelEntry.label's length


def _entry(user_id: int, ref: str) -> ModelEntry | None:
    return db.session.scalar(
        db.select(ModelEntry).where(ModelEntry.ref == ref, (ModelEntry.user_id == user_id) | ModelEntry.user_id.is_(None))
        .order_by(ModelEntry.user_id.is_(None))  # the user's own entry wins over the shared cache
    )


def _refresh(user_id: int, ref: str, entry: ModelEntry | None) -> dict:
    with client_from_config() as client:
        info = client.get_model(ref)
    if entry is None:
        preset = preset_for(ref)
        entry = ModelEntry(user_id=None, ref=ref, label=preset.label if preset else ref,
                           kind=preset.kind if preset else "text-to-image")
        db.session.add(entry)
    entry.openapi_schema, entry.schema_fetched_at = info.openapi_schema, utcnow()
    if entry.label == ref:  # never named (presets and the user's own names stay)
        entry.label = model_label(info)
    db.session.commit()
    return info.openapi_schema

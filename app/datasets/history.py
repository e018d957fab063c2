"""Caption edits with history: one caption from the editor, many at once from a bulk action, each
recorded as one undoable batch.

Dataset-wide edits read and write rows with Core statements in batches and write only the
captions whose text changes (together, see `bulkwrite`); each user caption's original bytes are
backed up before Tessera first overwrites it.
"""
from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, insert, select, update

from app.datasets import tags
from app.datasets.bulkwrite import CaptionWrite, write_captions
from app.datasets.captions import (CaptionConflict, CaptionTooLarge, caption_problems, caption_version, decode_as,
                                   decode_caption, read_caption_bytes, read_caption_versioned)
from app.datasets.captionwrite import (backup_original, check_writable, current_version, encode_caption, folder_lock,
                                       write_caption)
from app.datasets.index import (EDITS, IMAGES, backup_root, caption_relpath_for, caption_tags, chunks,
                                sync_tags)
from app.datasets.models import CaptionBatch, CaptionEdit, Dataset, DatasetImage
from app.datasets.paths import PathRefused, resolve_within
from app.extensions import db
from app.models import User, utcnow

# Saves of one image's caption within this time join one history step, so undo restores the caption
# from before the editing session instead of one keystroke back.
EDIT_SESSION = timedelta(minutes=10)


# --- one caption, from the editor -------------------------------------------------------------


def refresh_caption(dataset: Dataset, image: DatasetImage, root: Path):
    """Read the image's caption from disk (the editor shows what is there now) and update the row.

    Returns the `CaptionText`, or None when there is no caption file or it cannot be used (too
    large: the row's warning then says why, and its version makes any save a conflict).
    """
    relpath = caption_relpath_for(dataset, image.relpath, image.caption_relpath)
    try:
        path = resolve_within([root], relpath)
    except PathRefused:
        # A caption file that links out of the dataset folder is never read (nor written).
        image.caption_warning = (f"{relpath} leads outside the dataset folder (a link or '..'); "
                                 "it is not read, and saving it is refused")
        db.session.commit()
        return None
    warning = None
    try:
        caption, version = read_caption_versioned(path, (dataset.settings or {}).get("caption_encoding"))
    except FileNotFoundError:
        caption, version, relpath = None, None, None
    except CaptionTooLarge as exc:
        caption, version, warning = None, current_version(path)[0], exc.message
    text = caption.text if caption else None
    if (text, version) != (image.caption, image.caption_version):
        new_tags = caption_tags(text)
        sync_tags(dataset.id, {image.id: new_tags})
        image.caption, image.caption_version, image.caption_relpath = text, version, relpath
        image.tag_count = len(new_tags)
    if caption is not None or warning is not None:
        image.caption_warning = caption.warning if caption is not None else warning
    if caption is not None:
        image.caption_problems = ",".join(caption.problems)
    db.session.commit()
    return caption


def save_caption(dataset: Dataset, image: DatasetImage, text: str, version: str | None, *, root: Path,
                 data_dir: Path, user_id: int) -> None:
    """Write one caption if the file still holds `version` (the `caption_version` the editor saw;
    None: there was no file), and record it. Raises CaptionConflict, CaptionWriteError or PathRefused.

    The version check, the replace and the row update happen under the folder's caption lock, so
    of several saves holding one version exactly one wins, in whichever process or host, and the
    row and its tag rows always describe what that winner wrote.
    """
    relpath = caption_relpath_for(dataset, image.relpath, image.caption_relpath)
    path = resolve_within([root], relpath)
    text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    encode_caption(text)  # refuses an oversized caption before anything is touched
    check_writable(path, _stat_or_none(path))
    with folder_lock(path.parent):
        on_disk, current = current_version(path)
        if on_disk != version:
            text_now = decode_caption(current).text if current is not None else None
            raise CaptionConflict(path, text_now, on_disk)
        if on_disk is not None:
            backup_original(path, backup_root(data_dir, dataset.id), relpath)
        written = write_caption(path, text, locked=True)
        _record_single_edit(dataset.id, image.id, image.caption, text, user_id)
        new_tags = caption_tags(text)
        sync_tags(dataset.id, {image.id: new_tags})
        image.caption, image.caption_version, image.caption_relpath = text, written.version, relpath
        image.caption_warning, image.tag_count = None, len(new_tags)
        image.caption_problems = ",".join(caption_problems(text))
        db.session.commit()


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def confirm_encoding(dataset: Dataset, image: DatasetImage, encoding: str, *, root: Path, data_dir: Path,
                     user_id: int) -> None:
    """Rewrite a caption whose encoding was uncertain as UTF-8, read with the `encoding` the user chose.

    One undoable edit like any other (the original bytes are backed up first). Raises
    UnicodeDecodeError if the bytes do not decode with `encoding`, LookupError for an encoding
    Tessera does not offer, and what `save_caption` raises.
    """
    relpath = caption_relpath_for(dataset, image.relpath, image.caption_relpath)
    path = resolve_within([root], relpath)
    data = read_caption_bytes(path)
    version = caption_version(data)
    text = decode_as(data, encoding).text
    save_caption(dataset, image, text, version, root=root, data_dir=data_dir, user_id=user_id)


def _record_single_edit(dataset_id: int, image_id: int, before: str | None, after: str, user_id: int) -> None:
    latest = db.session.scalar(select(CaptionBatch).where(CaptionBatch.dataset_id == dataset_id,
                                                          CaptionBatch.user_id == user_id)
                               .order_by(CaptionBatch.created_at.desc(), CaptionBatch.id).limit(1))
    if (latest is not None and latest.kind == "edit" and latest.undone_at is None
            and utcnow() - latest.updated_at < EDIT_SESSION):
        edit = db.session.scalar(select(CaptionEdit).where(CaptionEdit.batch_id == latest.id))
        if edit is not None and edit.image_id == image_id:
            edit.after, latest.updated_at = after, utcnow()
            return
    name = db.session.scalar(select(IMAGES.c.relpath).where(IMAGES.c.id == image_id))
    batch = CaptionBatch(id=uuid.uuid4().hex, dataset_id=dataset_id, user_id=user_id, kind="edit",
                         description=f"Edit caption of {name}", image_count=1)
    db.session.add(batch)
    db.session.add(CaptionEdit(batch_id=batch.id, image_id=image_id, before=before, after=after))


# --- many captions at once --------------------------------------------------------------------


@dataclass
class EditOutcome:
    batch: CaptionBatch | None = None  # None when nothing changed
    changed: int = 0
    conflicts: list[str] = field(default_factory=list)  # image relpaths changed on disk since the scan
    errors: list[str] = field(default_factory=list)  # messages (read-only files, refused paths)
    # Captions left byte-identical because their encoding is a guess (caption relpaths).
    uncertain: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = [f"{self.changed} caption{'s' if self.changed != 1 else ''} changed"]
        if self.uncertain:
            parts.append(f"{len(self.uncertain)} left unchanged because their encoding is uncertain (open each in "
                         f"the editor to confirm how it reads): {', '.join(self.uncertain[:10])}"
                         + (" …" if len(self.uncertain) > 10 else ""))
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} skipped because they changed on disk since the last scan "
                         f"(rescan, then try again): {', '.join(self.conflicts[:5])}")
        if self.errors:
            parts.append(f"{len(self.errors)} could not be written: {'; '.join(self.errors[:3])}")
        return "; ".join(parts)


# Dataset-wide normalising actions: name -> (what the user reads, the edit).
NORMALISERS = {
    "underscores_to_spaces": ("Underscores to spaces (long_hair → long hair)", tags.underscores_to_spaces),
    "spaces_to_underscores": ("Spaces to underscores (long hair → long_hair)", tags.spaces_to_underscores),
    "escape_parens": ("Escape parentheses (star (symbol) → star \\(symbol\\))", tags.escape_parens),
    "unescape_parens": ("Unescape parentheses (star \\(symbol\\) → star (symbol))", tags.unescape_parens),
    "dedupe": ("Remove duplicate tags", tags.dedupe),
    "trim": ("Trim spaces and empty tags", tags.trim),
}

_ROW_COLUMNS = (IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.caption, IMAGES.c.caption_relpath, IMAGES.c.caption_version,
                IMAGES.c.caption_problems)


def caption_rows(dataset_id: int, image_ids: Sequence[int] | None):
    query = select(*_ROW_COLUMNS).where(IMAGES.c.dataset_id == dataset_id)
    if image_ids is None:
        return db.session.execute(query.order_by(IMAGES.c.id)).all()
    rows = []
    for chunk in chunks(sorted(set(image_ids))):
        rows += db.session.execute(query.where(IMAGES.c.id.in_(chunk)).order_by(IMAGES.c.id)).all()
    return rows


def edit_captions(dataset: Dataset, image_ids: Sequence[int] | None, edit: Callable[[str], str], *,
                  root: Path, data_dir: Path, user_id: int, description: str, kind: str = "bulk") -> EditOutcome:
    """Apply `edit(caption) -> caption` to the images (None: the whole dataset) as ONE history batch.

    `edit` gets "" for an image without a caption file; returning the same text skips the image,
    so only captions that really change are written (together, see bulkwrite).
    """
    plan = []
    for row in caption_rows(dataset.id, image_ids):
        current = row.caption if row.caption is not None else ""
        new = edit(current)
        if new != current:
            plan.append((row, new))
    return apply_plan(dataset, plan, root=root, data_dir=data_dir, user_id=user_id, description=description, kind=kind)


def apply_plan(dataset: Dataset, plan: list[tuple[object, str | None]], *, root: Path, data_dir: Path, user_id: int,
           description: str, kind: str, undo_of: str | None = None) -> EditOutcome:
    """Write each (row, new caption or None to delete the file) and record them as one batch.

    A caption whose encoding is uncertain is never written here: what it holds is a guess, so it is
    left byte-identical and named in `EditOutcome.uncertain` (the editor confirms a reading first).
    """
    outcome = EditOutcome()
    writes, kept = [], []
    resolve = _CaptionResolver(root)
    for row, new in plan:
        relpath = caption_relpath_for(dataset, row.relpath, row.caption_relpath)
        if "encoding_uncertain" in (row.caption_problems or ""):
            outcome.uncertain.append(relpath)
            continue
        try:
            path = resolve(relpath)
        except PathRefused as exc:
            outcome.errors.append(exc.message)
            continue
        # Each user caption's original bytes are kept before Tessera first overwrites it.
        writes.append(CaptionWrite(path, new, row.caption_version if row.caption is not None else None,
                                   backup_root(data_dir, dataset.id), relpath))
        kept.append((row, relpath, new))
    if not writes:
        return outcome
    result = write_captions(writes)
    outcome.conflicts = [kept[i][0].relpath for i in sorted(result.conflicts)]
    outcome.errors += [result.errors[i] for i in sorted(result.errors)]
    done = [(*kept[i], written.version if written else None) for i, written in sorted(result.written.items())]
    if not done:
        return outcome

    batch = CaptionBatch(id=uuid.uuid4().hex, dataset_id=dataset.id, user_id=user_id, kind=kind,
                         description=description[:500], image_count=len(done), undo_of=undo_of)
    db.session.add(batch)
    db.session.flush()
    db.session.execute(insert(EDITS), [{"batch_id": batch.id, "image_id": row.id, "before": row.caption, "after": new}
                                       for row, _, new, _ in done])
    new_tags = {row.id: caption_tags(new) for row, _, new, _ in done}
    db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), [
        {"b_id": row.id, "caption": new, "caption_version": version,
         "caption_relpath": relpath if new is not None else None, "caption_warning": None,
         "tag_count": len(new_tags[row.id]), "caption_problems": ",".join(caption_problems(new or ""))}
        for row, relpath, new, version in done
    ])
    sync_tags(dataset.id, new_tags)
    db.session.commit()
    outcome.batch, outcome.changed = batch, len(done)
    return outcome


class _CaptionResolver:
    """`resolve_within` for many captions: each folder is resolved once, then a file that is not a
    symlink is its real folder plus its name (a symlinked file still goes the full way)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[str, str] = {}

    def __call__(self, relpath: str) -> str:
        folder, _, name = relpath.rpartition("/")
        if name in ("", ".", ".."):
            raise PathRefused(f"Not a file name: {relpath}")
        real_folder = self.folders.get(folder)
        if real_folder is None:
            real_folder = self.folders[folder] = str(resolve_within([self.root], folder or "."))
        candidate = os.path.join(real_folder, name)
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except FileNotFoundError:
            is_link = False
        return str(resolve_within([self.root], relpath)) if is_link else candidate


def undo_batch(dataset: Dataset, batch: CaptionBatch, *, root: Path, data_dir: Path, user_id: int) -> EditOutcome:
    """Put back every caption of `batch` that still reads as the batch left it, as one new batch.

    Captions edited again since are left alone and reported as conflicts, so an undo never
    throws away later work. Undoing an undo redoes.
    """
    edits = db.session.execute(select(EDITS.c.image_id, EDITS.c.before, EDITS.c.after)
                               .where(EDITS.c.batch_id == batch.id)).all()
    wanted = {image_id: (before, after) for image_id, before, after in edits}
    plan, conflicts = [], []
    for row in caption_rows(dataset.id, list(wanted)):
        before, after = wanted[row.id]
        if row.caption != after:
            conflicts.append(row.relpath)
        elif before != row.caption:
            plan.append((row, before))
    outcome = apply_plan(dataset, plan, root=root, data_dir=data_dir, user_id=user_id,
                     description=f"Undo: {batch.description}", kind="undo", undo_of=batch.id)
    outcome.conflicts = conflicts + outcome.conflicts
    if not outcome.conflicts and not outcome.errors:
        batch.undone_at = utcnow()
        db.session.commit()
    return outcome


def recent_batches(dataset_id: int, limit: int = 50) -> list[CaptionBatch]:
    return db.session.scalars(select(CaptionBatch).where(CaptionBatch.dataset_id == dataset_id)
                              .order_by(CaptionBatch.created_at.desc(), CaptionBatch.id).limit(limit)).all()


def changes_by_others(dataset: Dataset, limit: int = 100) -> list[tuple[CaptionBatch, str]]:
    """(batch, username) of recent changes other accounts made in the same folder (a shared root),
    newest first: the per-user record of who changed what."""
    rows = db.session.execute(
        select(CaptionBatch, User.username).join(Dataset, Dataset.id == CaptionBatch.dataset_id)
        .join(User, User.id == CaptionBatch.user_id)
        .where(Dataset.root == dataset.root, Dataset.id != dataset.id, CaptionBatch.user_id != dataset.user_id)
        .order_by(CaptionBatch.created_at.desc()).limit(limit)).all()
    return [(batch, username) for batch, username in rows]

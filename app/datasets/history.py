"""Caption edits with history: one caption from the editor, many at once from a bulk action, each
recorded as one undoable batch.

Dataset-wide edits read and write rows with Core statements in batches and write only the
captions whose text changes (together, see `bulkwrite`); each user caption's original bytes are
backed up before Tessera first overwrites it.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, insert, select, update

from app.datasets import tags
from app.datasets.bulkwrite import BatchOutcome, CaptionWrite, write_captions
from app.datasets.captions import (CaptionConflict, CaptionTooLarge, caption_problems, caption_version, decode_as,
                                   decode_caption, read_caption_bytes, read_caption_versioned)
from app.datasets.captionwrite import (backup_original, check_writable, current_version, encode_caption, folder_lock,
                                       write_caption)
from app.datasets.index import (EDITS, IMAGES, backup_root, caption_relpath_for, caption_tags, chunks,
                                sync_tags)
from app.datasets.models import CaptionBatch, CaptionEdit, Dataset, DatasetImage
from app.datasets.outcome import EditOutcome
from app.datasets.paths import FolderResolver, PathRefused, resolve_within
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
    warning, info = None, None
    try:
        info = os.stat(path)  # before the read: a write in between makes the next check read it again
        caption, version = read_caption_versioned(path, (dataset.settings or {}).get("caption_encoding"))
    except FileNotFoundError:
        caption, version, relpath = None, None, None
    except CaptionTooLarge as exc:
        caption, version, warning = None, current_version(path)[0], exc.message
    text = caption.text if caption else None
    if (text, version) != (image.caption, image.caption_version):
        # Changed outside Tessera (an editor, a tagging script): the index follows the file.
        new_tags = caption_tags(text)
        sync_tags(dataset.id, {image.id: new_tags})
        image.caption, image.caption_version, image.caption_relpath = text, version, relpath
        image.tag_count = len(new_tags)
        dataset.tags_changed_at = utcnow()
    image.caption_size = info.st_size if caption is not None else None
    image.caption_mtime_ns = info.st_mtime_ns if caption is not None else None
    if caption is not None or warning is not None:
        image.caption_warning = caption.warning if caption is not None else warning
    if caption is not None:
        image.caption_problems = ",".join(caption.problems)
    db.session.commit()
    return caption


class ImageGone(Exception):
    """The image of a caption being saved is not on disk any more (moved to the trash meanwhile)."""


def save_caption(dataset: Dataset, image: DatasetImage, text: str, version: str | None, *, root: Path,
                 data_dir: Path, user_id: int) -> None:
    """Write one caption if the file still holds `version` (the `caption_version` the editor saw;
    None: there was no file), and record it. Raises CaptionConflict, CaptionWriteError, PathRefused, or
    ImageGone when the image file is not there any more (moved to the trash from another tab).

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
        # Moving an image to the trash holds this lock too (trashing.trash_indexed_image): an editor
        # left open in another tab never writes a caption beside an image that is gone.
        if not resolve_within([root], image.relpath).exists():
            raise ImageGone(image.relpath)
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
        image.caption_size, image.caption_mtime_ns = written.size, written.mtime_ns
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


# Captions read, edited and written at a time by a dataset-wide edit: memory stays flat at any
# dataset size, and each chunk is still written as one batch (one sync; see bulkwrite).
BULK_CHUNK = 2000
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
    """The rows an edit reads (id, relpath, caption, caption_relpath, caption_version,
    caption_problems) of `image_ids` (None: every image), by id. All at once: for a few images;
    dataset-wide edits read `caption_row_chunks`."""
    return [row for rows in caption_row_chunks(dataset_id, image_ids) for row in rows]


def caption_row_chunks(dataset_id: int, image_ids: Sequence[int] | None, size: int | None = None) -> Iterator[list]:
    """`caption_rows` in lists of at most `size` (default `BULK_CHUNK`) rows, by id; each list is
    read when the one before has been handled, so rows written meanwhile are read as they are now."""
    size = size or BULK_CHUNK
    query = select(*_ROW_COLUMNS).where(IMAGES.c.dataset_id == dataset_id)
    if image_ids is None:
        last = 0
        while rows := db.session.execute(query.where(IMAGES.c.id > last).order_by(IMAGES.c.id).limit(size)).all():
            yield rows
            last = rows[-1].id
        return
    ids = sorted(set(image_ids))
    for start in range(0, len(ids), size):
        rows = []
        for chunk in chunks(ids[start:start + size]):
            rows += db.session.execute(query.where(IMAGES.c.id.in_(chunk)).order_by(IMAGES.c.id)).all()
        yield rows


def edit_captions(dataset: Dataset, image_ids: Sequence[int] | None, edit: Callable[[str], str], *,
                  root: Path, data_dir: Path, user_id: int, description: str, kind: str = "bulk",
                  check: Callable[[str], str] | None = None, rewrite: bool = False,
                  on_progress: Callable[[int], None] | None = None) -> EditOutcome:
    """Apply `edit(caption) -> caption` to the images (None: the whole dataset) as ONE history batch.

    `edit` gets "" for an image without a caption file; returning the same text skips the image,
    so only captions that really change are written. The captions are read, edited and written
    `BULK_CHUNK` at a time (each chunk together, see bulkwrite), so memory does not grow with
    the dataset. An edit that can fail on some caption (a user's pattern) passes `check`: it runs
    over every caption first, and its exception (ValueError) propagates before any file is
    written; should `edit` still fail later, the exception carries what was written as
    ``exc.outcome`` (one batch, undoable). `rewrite` writes every existing caption even when its
    text stays (re-encoding it as UTF-8 without BOM). `on_progress(captions read so far)` is
    called after each chunk (it may raise to stop: the chunks written stay one batch).

    The files of a chunk are written on a second thread while this one records the chunk before
    in the database (history rows, caption rows, tag rows, commit): the writes mostly wait on the
    disk (the GIL is released), the database work is mostly CPU, so the edit costs about the
    larger of the two instead of their sum (about a third of a 100,000-caption rename was the
    database, see bench/bench_datasets.py). Each chunk is still recorded only after its files are
    in place, and whatever stops the edit, every chunk whose files were written is recorded first.
    """
    if check is not None:
        for rows in caption_row_chunks(dataset.id, image_ids):
            for row in rows:
                check(row.caption if row.caption is not None else "")
    outcome, seen = EditOutcome(), 0
    writing: tuple[_Planned, Future] | None = None  # the chunk whose files are being written

    def record_written() -> None:
        nonlocal writing
        if writing is not None:
            (planned, future), writing = writing, None
            outcome.add(record_plan(dataset, planned, future.result(), user_id=user_id, description=description,
                                    kind=kind, batch=outcome.batch))

    with ThreadPoolExecutor(1, thread_name_prefix="caption-writes") as files:
        try:
            for rows in caption_row_chunks(dataset.id, image_ids):
                plan = []
                for row in rows:
                    current = row.caption if row.caption is not None else ""
                    try:
                        new = edit(current)
                    except ValueError as exc:
                        exc.outcome = outcome
                        raise
                    if new != current or (rewrite and row.caption is not None):
                        plan.append((row, new))
                planned = plan_writes(dataset, plan, root=root, data_dir=data_dir)
                future = files.submit(write_captions, planned.writes)
                record_written()
                writing = planned, future
                seen += len(rows)
                if on_progress is not None:
                    on_progress(seen)
        finally:
            record_written()
    return outcome


@dataclass
class _Planned:
    """A plan's caption writes (`writes[i]` is for `kept[i]` = (row, relpath, new caption)) and
    what was refused before writing (uncertain encodings, paths leading out)."""

    outcome: EditOutcome
    writes: list[CaptionWrite] = field(default_factory=list)
    kept: list[tuple] = field(default_factory=list)


def apply_plan(dataset: Dataset, plan: list[tuple[object, str | None]], *, root: Path, data_dir: Path, user_id: int,
               description: str, kind: str, undo_of: str | None = None,
               batch: CaptionBatch | None = None) -> EditOutcome:
    """Write each (row, new caption or None to delete the file) and record them as one batch
    (or add them to `batch`, the step the earlier chunks of the same edit made); commits.

    A caption whose encoding is uncertain is never written here: what it holds is a guess, so it is
    left byte-identical and named in `EditOutcome.uncertain` (the editor confirms a reading first).
    """
    planned = plan_writes(dataset, plan, root=root, data_dir=data_dir)
    return record_plan(dataset, planned, write_captions(planned.writes), user_id=user_id, description=description,
                       kind=kind, undo_of=undo_of, batch=batch)


def plan_writes(dataset: Dataset, plan: list[tuple[object, str | None]], *, root: Path, data_dir: Path) -> _Planned:
    """The caption writes of `plan` (see `apply_plan`); reads no rows and writes nothing."""
    planned = _Planned(EditOutcome())
    resolve, backups = FolderResolver(root), backup_root(data_dir, dataset.id)
    for row, new in plan:
        relpath = caption_relpath_for(dataset, row.relpath, row.caption_relpath)
        if "encoding_uncertain" in (row.caption_problems or ""):
            planned.outcome.uncertain.append(relpath)
            continue
        try:
            path = resolve(relpath)
        except PathRefused as exc:
            planned.outcome.errors.append(exc.message)
            continue
        # Each user caption's original bytes are kept before Tessera first overwrites it.
        planned.writes.append(CaptionWrite(path, new, row.caption_version if row.caption is not None else None,
                                           backups, relpath))
        planned.kept.append((row, relpath, new))
    return planned


def record_plan(dataset: Dataset, planned: _Planned, result: BatchOutcome, *, user_id: int, description: str,
                kind: str, undo_of: str | None = None, batch: CaptionBatch | None = None) -> EditOutcome:
    """Record what `write_captions(planned.writes)` did (`result`) as one batch (or in `batch`):
    history rows, caption rows and tag rows; commits. Returns the chunk's outcome."""
    outcome, kept = planned.outcome, planned.kept
    outcome.batch = batch
    outcome.conflicts = [kept[i][0].relpath for i in sorted(result.conflicts)]
    outcome.errors += [result.errors[i] for i in sorted(result.errors)]
    done = [(*kept[i], written) for i, written in sorted(result.written.items())]
    if not done:
        return outcome

    if batch is None:
        batch = CaptionBatch(id=uuid.uuid4().hex, dataset_id=dataset.id, user_id=user_id, kind=kind,
                             description=description[:500], image_count=0, undo_of=undo_of)
        db.session.add(batch)
        db.session.flush()
    # Moving updated_at tells every process's tag count cache (grid._tag_state) that tags changed.
    batch.image_count, batch.updated_at = batch.image_count + len(done), utcnow()
    db.session.execute(insert(EDITS), [{"batch_id": batch.id, "image_id": row.id, "before": row.caption, "after": new}
                                       for row, _, new, _ in done])
    new_tags = {row.id: caption_tags(new) for row, _, new, _ in done}
    db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), [
        {"b_id": row.id, "caption": new, "caption_version": written.version if written else None,
         "caption_relpath": relpath if new is not None else None, "caption_warning": None,
         "tag_count": len(new_tags[row.id]), "caption_problems": ",".join(caption_problems(new or "")),
         "caption_size": written.size if written else None, "caption_mtime_ns": written.mtime_ns if written else None}
        for row, relpath, new, written in done
    ])
    sync_tags(dataset.id, new_tags)
    db.session.commit()
    outcome.batch, outcome.changed = batch, len(done)
    return outcome


def undo_batch(dataset: Dataset, batch: CaptionBatch, *, root: Path, data_dir: Path, user_id: int,
               on_progress: Callable[[int], None] | None = None) -> EditOutcome:
    """Put back every caption of `batch` that still reads as the batch left it, as one new batch.

    Captions edited again since are left alone and reported as conflicts, so an undo never
    throws away later work. Undoing an undo redoes. Reads and writes `BULK_CHUNK` captions at a
    time, like `edit_captions`; `on_progress(edits handled so far)` after each chunk.
    """
    outcome, last, seen = EditOutcome(), 0, 0
    description = f"Undo: {batch.description}"
    while edits := db.session.execute(select(EDITS.c.id, EDITS.c.image_id, EDITS.c.before, EDITS.c.after)
                                      .where(EDITS.c.batch_id == batch.id, EDITS.c.id > last)
                                      .order_by(EDITS.c.id).limit(BULK_CHUNK)).all():
        last = edits[-1].id
        wanted = {image_id: (before, after) for _, image_id, before, after in edits}
        plan, conflicts = [], []
        for row in caption_rows(dataset.id, list(wanted)):
            before, after = wanted[row.id]
            if row.caption != after:
                conflicts.append(row.relpath)
            elif before != row.caption:
                plan.append((row, before))
        outcome.add(EditOutcome(conflicts=conflicts))
        outcome.add(apply_plan(dataset, plan, root=root, data_dir=data_dir, user_id=user_id, description=description,
                               kind="undo", undo_of=batch.id, batch=outcome.batch))
        seen += len(edits)
        if on_progress is not None:
            on_progress(seen)
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

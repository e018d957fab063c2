"""The dataset index: folders scanned into the database, queried for the grid, and edited with history.

Plain functions over the database session; no Flask request objects. Every file path is turned
into a real path with `resolve_within` against the dataset's own folder, so a row that somehow
names `../x` is refused rather than followed. Dataset-wide edits read and write rows with Core
statements in batches and write only the captions whose text changes, each as one undoable batch.
"""
from __future__ import annotations

import os
import stat
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePosixPath

from sqlalchemy import and_, bindparam, delete, false, func, insert, not_, or_, select, true, update

from app.datasets.bulkwrite import CaptionWrite, write_captions
from app.datasets.captions import CAPTION_EXTS, CaptionConflict, backup_original, read_caption, write_caption
from app.datasets.imagehash import near_duplicate_groups
from app.datasets.models import CaptionBatch, CaptionEdit, Dataset, DatasetImage, DatasetProgress, DatasetTag
from app.datasets.paths import PathRefused, resolve_within
from app.datasets.scan import ScanResult
from app.datasets.tagexpr import And, Expr, MatchAll, Not, Or, Tag, TagExprError, Wildcard, normalise_tag, parse
from app.datasets import tags
from app.datasets.tags import split_tags
from app.extensions import db
from app.models import utcnow

IMAGES = DatasetImage.__table__
TAGS = DatasetTag.__table__
EDITS = CaptionEdit.__table__
CHUNK = 500  # ids per IN (...) list; SQLite allows 32,766 parameters, PostgreSQL 65,535
# Saves of one image's caption within this time join one history step, so undo restores the caption
# from before the editing session instead of one keystroke back.
EDIT_SESSION = timedelta(minutes=10)


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- folders ----------------------------------------------------------------------------------


def managed_folder(data_dir: Path, dataset_id: int) -> Path:
    """Where an uploaded zip is unpacked: outside the shared roots, so no other user can open it."""
    return Path(data_dir) / "uploaded-datasets" / str(dataset_id)


def dataset_root(dataset: Dataset, roots: Sequence[Path]) -> Path:
    """The dataset's folder, checked again against the configured roots (they may have changed)."""
    if dataset.managed:
        return Path(dataset.root)
    return resolve_within(list(roots), dataset.root)


def resolve_image(root: Path, relpath: str) -> Path:
    return resolve_within([root], relpath)


def caption_relpath_for(dataset: Dataset, image_relpath: str, caption_relpath: str | None) -> str:
    """The image's caption file: the one it has, else a new one with the dataset's extension."""
    if caption_relpath:
        return caption_relpath
    return PurePosixPath(image_relpath).with_suffix(dataset.caption_ext).as_posix()


def backup_root(data_dir: Path, dataset_id: int) -> Path:
    return Path(data_dir) / "caption-backups" / str(dataset_id)


# --- tags of a caption ------------------------------------------------------------------------


def caption_tags(caption: str | None) -> list[str]:
    """The distinct tags of a caption (every line), in order of first appearance."""
    if not caption:
        return []
    return list(dict.fromkeys(split_tags(caption)))


def _tag_rows(dataset_id: int, image_id: int, tags: Iterable[str]) -> list[dict]:
    return [{"image_id": image_id, "tag": tag, "dataset_id": dataset_id, "key": normalise_tag(tag)} for tag in tags]


def _sync_tags(dataset_id: int, changes: Sequence[tuple[int, list[str], list[str]]]) -> None:
    """Bring the tag rows of images in line with new captions, touching only tags that changed.

    `changes` holds (image_id, old tags, new tags) as `caption_tags` gives them; a rename across
    10,000 captions then costs one delete and one insert per image instead of rewriting every row.
    """
    removed, added = [], []
    for image_id, old_tags, new_tags in changes:
        old_set, new_set = set(old_tags), set(new_tags)
        removed += [{"b_image": image_id, "b_tag": tag} for tag in old_set - new_set]
        added += _tag_rows(dataset_id, image_id, (tag for tag in new_tags if tag not in old_set))
    if removed:
        db.session.execute(
            delete(TAGS).where(TAGS.c.image_id == bindparam("b_image"), TAGS.c.tag == bindparam("b_tag")), removed
        )
    if added:
        db.session.execute(insert(TAGS), added)


# --- scanning ---------------------------------------------------------------------------------


def known_state(dataset_id: int) -> dict[str, tuple[int, int, int | None]]:
    rows = db.session.execute(
        select(IMAGES.c.relpath, IMAGES.c.size, IMAGES.c.mtime_ns, IMAGES.c.caption_mtime_ns)
        .where(IMAGES.c.dataset_id == dataset_id)
    )
    return {relpath: (size, mtime, caption_mtime) for relpath, size, mtime, caption_mtime in rows}


def _image_values(record) -> dict:
    return {
        "size": record.size, "mtime_ns": record.mtime_ns, "width": record.width, "height": record.height,
        "format": record.format, "content_hash": record.content_hash, "phash": record.phash,
        "error": record.error, "caption_relpath": record.caption_relpath, "caption": record.caption_text,
        "caption_mtime_ns": record.caption_mtime_ns, "caption_warning": record.caption_warning,
        "tag_count": len(caption_tags(record.caption_text)),
    }


def apply_scan(dataset: Dataset, result: ScanResult) -> dict[str, int]:
    """Store a scan's findings; returns counts for the job's message."""
    ids = dict(db.session.execute(select(IMAGES.c.relpath, IMAGES.c.id).where(IMAGES.c.dataset_id == dataset.id)).all())
    old_captions = {}
    touched = [r.relpath for r in result.changed] + [c.image_relpath for c in result.captions_changed]
    for chunk in _chunks([ids[relpath] for relpath in touched if relpath in ids]):
        old_captions.update(db.session.execute(select(IMAGES.c.id, IMAGES.c.caption).where(IMAGES.c.id.in_(chunk))).all())

    for chunk in _chunks([ids[relpath] for relpath in result.removed if relpath in ids]):
        db.session.execute(delete(TAGS).where(TAGS.c.image_id.in_(chunk)))
        db.session.execute(delete(IMAGES).where(IMAGES.c.id.in_(chunk)))

    if result.added:
        db.session.execute(insert(IMAGES), [
            {"dataset_id": dataset.id, "relpath": r.relpath, "reviewed": False, "thumb_ready": False, **_image_values(r)}
            for r in result.added
        ])
        added_paths = {r.relpath for r in result.added}
        new_ids = {relpath: image_id for relpath, image_id in db.session.execute(
            select(IMAGES.c.relpath, IMAGES.c.id).where(IMAGES.c.dataset_id == dataset.id)) if relpath in added_paths}
        tag_rows = [row for r in result.added for row in _tag_rows(dataset.id, new_ids[r.relpath], caption_tags(r.caption_text))]
        for chunk in _chunks(tag_rows, 5000):
            db.session.execute(insert(TAGS), chunk)

    tag_changes = []
    if result.changed:
        rows = []
        for r in result.changed:
            image_id = ids[r.relpath]
            rows.append({"b_id": image_id, "thumb_ready": False, **_image_values(r)})
            tag_changes.append((image_id, caption_tags(old_captions.get(image_id)), caption_tags(r.caption_text)))
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), rows)
    if result.captions_changed:
        rows = []
        for c in result.captions_changed:
            image_id = ids[c.image_relpath]
            rows.append({"b_id": image_id, "caption_relpath": c.caption_relpath, "caption": c.caption_text,
                         "caption_mtime_ns": c.caption_mtime_ns, "caption_warning": c.caption_warning,
                         "tag_count": len(caption_tags(c.caption_text))})
            tag_changes.append((image_id, caption_tags(old_captions.get(image_id)), caption_tags(c.caption_text)))
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), rows)
    _sync_tags(dataset.id, tag_changes)

    if dataset.scanned_at is None:
        dataset.caption_ext = _prevailing_caption_ext(result) or dataset.caption_ext
    dataset.image_count = db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset.id))
    dataset.scanned_at = utcnow()
    db.session.commit()
    return {"added": len(result.added), "changed": len(result.changed), "removed": len(result.removed),
            "captions": len(result.captions_changed), "skipped": len(result.skipped)}


def _prevailing_caption_ext(result: ScanResult) -> str | None:
    """The caption extension most of the dataset already uses: new captions are written with it."""
    exts = Counter(PurePosixPath(r.caption_relpath).suffix.lower() for r in result.added if r.caption_relpath)
    exts.update(PurePosixPath(c.caption_relpath).suffix.lower() for c in result.captions_changed if c.caption_relpath)
    ext = exts.most_common(1)[0][0] if exts else None
    return ext if ext in CAPTION_EXTS else None


# --- the grid ---------------------------------------------------------------------------------

SORTS = {
    "name": ("Name", (IMAGES.c.relpath,)),
    "newest": ("Newest file first", (IMAGES.c.mtime_ns.desc(),)),
    "fewest-tags": ("Fewest tags first", (IMAGES.c.tag_count, IMAGES.c.relpath)),
    "most-tags": ("Most tags first", (IMAGES.c.tag_count.desc(), IMAGES.c.relpath)),
    "unreviewed": ("Not reviewed first", (IMAGES.c.reviewed, IMAGES.c.relpath)),
}


@dataclass(frozen=True)
class GridFilter:
    q: str = ""  # tag expression, see tagexpr
    untagged: bool = False
    search: str = ""  # text anywhere in the caption
    sort: str = "name"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> GridFilter:
        sort = args.get("sort", "name")
        return cls(q=args.get("q", "").strip(), untagged=args.get("untagged") in ("1", "on", "true"),
                   search=args.get("search", "").strip(), sort=sort if sort in SORTS else "name")

    def to_args(self) -> dict[str, str]:
        args = {"q": self.q, "untagged": "1" if self.untagged else "", "search": self.search,
                "sort": self.sort if self.sort != "name" else ""}
        return {k: v for k, v in args.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.q or self.untagged or self.search)

    @property
    def problem(self) -> str | None:
        """Why the tag expression cannot be used, or None."""
        try:
            parse(self.q)
        except TagExprError as exc:
            return str(exc)
        return None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _expr_condition(dataset_id: int, expr: Expr):
    """The SQL condition on dataset_image rows that `expr` describes, one tag subquery per term."""
    if isinstance(expr, MatchAll):
        return true()
    if isinstance(expr, Tag):
        return IMAGES.c.id.in_(select(TAGS.c.image_id).where(TAGS.c.dataset_id == dataset_id, TAGS.c.key == expr.name))
    if isinstance(expr, Wildcard):
        pattern = "%".join(_like_escape(part) for part in expr.pattern.split("*"))
        return IMAGES.c.id.in_(select(TAGS.c.image_id).where(TAGS.c.dataset_id == dataset_id,
                                                             TAGS.c.key.like(pattern, escape="\\")))
    if isinstance(expr, Not):
        return not_(_expr_condition(dataset_id, expr.operand))
    if isinstance(expr, And):
        return and_(*(_expr_condition(dataset_id, op) for op in expr.operands))
    if isinstance(expr, Or):
        return or_(*(_expr_condition(dataset_id, op) for op in expr.operands))
    raise TypeError(f"Unknown expression {expr!r}")


def filtered_select(dataset_id: int, grid_filter: GridFilter, *columns):
    """SELECT `columns` of the dataset's images matching the filter, in its sort order.

    Raises `tagexpr.TagExprError` for a malformed tag expression.
    """
    query = select(*(columns or (IMAGES.c.id,))).where(IMAGES.c.dataset_id == dataset_id)
    if grid_filter.q:
        query = query.where(_expr_condition(dataset_id, parse(grid_filter.q)))
    if grid_filter.untagged:
        query = query.where(IMAGES.c.tag_count == 0)
    if grid_filter.search:
        query = query.where(func.lower(IMAGES.c.caption).like(f"%{_like_escape(grid_filter.search.lower())}%", escape="\\"))
    return query.order_by(*SORTS[grid_filter.sort][1], IMAGES.c.id)


def grid_page(dataset_id: int, grid_filter: GridFilter, offset: int, limit: int) -> tuple[list[DatasetImage], bool]:
    """One page of images and whether more follow."""
    ids = db.session.scalars(filtered_select(dataset_id, grid_filter).offset(offset).limit(limit + 1)).all()
    rows = {image.id: image for image in db.session.scalars(select(DatasetImage).where(DatasetImage.id.in_(ids[:limit])))}
    return [rows[i] for i in ids[:limit]], len(ids) > limit


def count_filtered(dataset_id: int, grid_filter: GridFilter) -> int:
    return db.session.scalar(select(func.count()).select_from(filtered_select(dataset_id, grid_filter).order_by(None).subquery()))


def neighbours(dataset_id: int, grid_filter: GridFilter, image_id: int) -> tuple[int | None, int | None, int, int]:
    """(previous id, next id, 1-based position, total) of an image within the filtered order."""
    ids = db.session.scalars(filtered_select(dataset_id, grid_filter)).all()
    try:
        at = ids.index(image_id)
    except ValueError:
        return None, (ids[0] if ids else None), 0, len(ids)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None), at + 1, len(ids)


def tag_counts(dataset_id: int) -> list[tuple[str, int]]:
    """Every tag with the number of images carrying it, most used first."""
    count = func.count().label("n")
    rows = db.session.execute(select(TAGS.c.tag, count).where(TAGS.c.dataset_id == dataset_id)
                              .group_by(TAGS.c.tag).order_by(count.desc(), TAGS.c.tag))
    return [(tag, n) for tag, n in rows]


def tag_counts_matching(dataset_id: int, text: str, limit: int = 200) -> dict[str, int]:
    """Dataset tags whose normalised form contains `text`, with counts (autocomplete candidates)."""
    key = normalise_tag(text)
    if not key:
        return {}
    count = func.count().label("n")
    rows = db.session.execute(
        select(TAGS.c.tag, count).where(TAGS.c.dataset_id == dataset_id, TAGS.c.key.like(f"%{_like_escape(key)}%", escape="\\"))
        .group_by(TAGS.c.tag).order_by(count.desc()).limit(limit))
    return {tag: n for tag, n in rows}


def reviewed_count(dataset_id: int) -> int:
    return db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.reviewed))


# --- where the user was -----------------------------------------------------------------------


def progress_for(user_id: int, dataset_id: int) -> DatasetProgress | None:
    return db.session.scalar(select(DatasetProgress).where(DatasetProgress.user_id == user_id,
                                                           DatasetProgress.dataset_id == dataset_id))


def remember(user_id: int, dataset_id: int, *, image_id: int | None = None, grid_filter: GridFilter | None = None) -> None:
    progress = progress_for(user_id, dataset_id)
    if progress is None:
        progress = DatasetProgress(user_id=user_id, dataset_id=dataset_id, filters={})
        db.session.add(progress)
    if image_id is not None:
        progress.last_image_id = image_id
    if grid_filter is not None:
        progress.filters = grid_filter.to_args()
    progress.updated_at = utcnow()
    db.session.commit()


# --- one caption, from the editor -------------------------------------------------------------


def refresh_caption(dataset: Dataset, image: DatasetImage, root: Path):
    """Read the image's caption from disk (the editor shows what is there now) and update the row.

    Returns the `CaptionText` or None when there is no caption file.
    """
    relpath = caption_relpath_for(dataset, image.relpath, image.caption_relpath)
    path = resolve_within([root], relpath)
    try:
        mtime_ns = os.stat(path).st_mtime_ns
        caption = read_caption(path)
    except FileNotFoundError:
        caption, mtime_ns, relpath = None, None, None
    text = caption.text if caption else None
    if (text, mtime_ns) != (image.caption, image.caption_mtime_ns):
        new_tags = caption_tags(text)
        _sync_tags(dataset.id, [(image.id, caption_tags(image.caption), new_tags)])
        image.caption, image.caption_mtime_ns, image.caption_relpath = text, mtime_ns, relpath
        image.tag_count = len(new_tags)
    if caption is not None:
        image.caption_warning = caption.warning
    db.session.commit()
    return caption


def save_caption(dataset: Dataset, image: DatasetImage, text: str, version: int | None, *, root: Path,
                 data_dir: Path, user_id: int) -> None:
    """Write one caption through `write_caption`, checking `version` (the mtime the editor saw;
    None: there was no file). Raises CaptionConflict, CaptionWriteError or PathRefused."""
    relpath = caption_relpath_for(dataset, image.relpath, image.caption_relpath)
    path = resolve_within([root], relpath)
    if version is None and path.exists():
        raise CaptionConflict(path, read_caption(path).text, os.stat(path).st_mtime_ns)
    backup_original(path, backup_root(data_dir, dataset.id), relpath)
    new_stat = write_caption(path, text, expected_mtime_ns=version)
    text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    _record_single_edit(dataset.id, image.id, image.caption, text, user_id)
    new_tags = caption_tags(text)
    _sync_tags(dataset.id, [(image.id, caption_tags(image.caption), new_tags)])
    image.caption, image.caption_mtime_ns, image.caption_relpath = text, new_stat.st_mtime_ns, relpath
    image.caption_warning, image.tag_count = None, len(new_tags)
    db.session.commit()


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

    @property
    def summary(self) -> str:
        parts = [f"{self.changed} caption{'s' if self.changed != 1 else ''} changed"]
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

_ROW_COLUMNS = (IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.caption, IMAGES.c.caption_relpath, IMAGES.c.caption_mtime_ns)


def images_with_tag(dataset_id: int, tag: str) -> list[int]:
    """Ids of images whose caption has exactly `tag`."""
    return db.session.scalars(select(TAGS.c.image_id).where(TAGS.c.dataset_id == dataset_id, TAGS.c.tag == tag.strip())).all()


def _rows(dataset_id: int, image_ids: Sequence[int] | None):
    query = select(*_ROW_COLUMNS).where(IMAGES.c.dataset_id == dataset_id)
    if image_ids is None:
        return db.session.execute(query.order_by(IMAGES.c.id)).all()
    rows = []
    for chunk in _chunks(sorted(set(image_ids))):
        rows += db.session.execute(query.where(IMAGES.c.id.in_(chunk)).order_by(IMAGES.c.id)).all()
    return rows


def edit_captions(dataset: Dataset, image_ids: Sequence[int] | None, edit: Callable[[str], str], *,
                  root: Path, data_dir: Path, user_id: int, description: str, kind: str = "bulk") -> EditOutcome:
    """Apply `edit(caption) -> caption` to the images (None: the whole dataset) as ONE history batch.

    `edit` gets "" for an image without a caption file; returning the same text skips the image,
    so only captions that really change are written (together, see bulkwrite).
    """
    plan = []
    for row in _rows(dataset.id, image_ids):
        current = row.caption if row.caption is not None else ""
        new = edit(current)
        if new != current:
            plan.append((row, new))
    return _apply(dataset, plan, root=root, data_dir=data_dir, user_id=user_id, description=description, kind=kind)


def _apply(dataset: Dataset, plan: list[tuple[object, str | None]], *, root: Path, data_dir: Path, user_id: int,
           description: str, kind: str, undo_of: str | None = None) -> EditOutcome:
    """Write each (row, new caption or None to delete the file) and record them as one batch."""
    outcome = EditOutcome()
    writes, kept = [], []
    resolve = _CaptionResolver(root)
    for row, new in plan:
        relpath = caption_relpath_for(dataset, row.relpath, row.caption_relpath)
        try:
            path = resolve(relpath)
        except PathRefused as exc:
            outcome.errors.append(exc.message)
            continue
        # Each user caption's original bytes are kept before Tessera first overwrites it.
        writes.append(CaptionWrite(path, new, row.caption_mtime_ns if row.caption is not None else None,
                                   backup_root(data_dir, dataset.id), relpath))
        kept.append((row, relpath, new))
    if not writes:
        return outcome
    result = write_captions(writes)
    outcome.conflicts = [kept[i][0].relpath for i in sorted(result.conflicts)]
    outcome.errors += [result.errors[i] for i in sorted(result.errors)]
    done = [(*kept[i], mtime) for i, mtime in sorted(result.written.items())]
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
        {"b_id": row.id, "caption": new, "caption_mtime_ns": mtime,
         "caption_relpath": relpath if new is not None else None, "caption_warning": None,
         "tag_count": len(new_tags[row.id])}
        for row, relpath, new, mtime in done
    ])
    _sync_tags(dataset.id, [(row.id, caption_tags(row.caption), new_tags[row.id]) for row, _, _, _ in done])
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
    for row in _rows(dataset.id, list(wanted)):
        before, after = wanted[row.id]
        if row.caption != after:
            conflicts.append(row.relpath)
        elif before != row.caption:
            plan.append((row, before))
    outcome = _apply(dataset, plan, root=root, data_dir=data_dir, user_id=user_id,
                     description=f"Undo: {batch.description}", kind="undo", undo_of=batch.id)
    outcome.conflicts = conflicts + outcome.conflicts
    if not outcome.conflicts and not outcome.errors:
        batch.undone_at = utcnow()
        db.session.commit()
    return outcome


def history(dataset_id: int, limit: int = 50) -> list[CaptionBatch]:
    return db.session.scalars(select(CaptionBatch).where(CaptionBatch.dataset_id == dataset_id)
                              .order_by(CaptionBatch.created_at.desc(), CaptionBatch.id).limit(limit)).all()


# --- health -----------------------------------------------------------------------------------


@dataclass
class HealthReport:
    errors: list = field(default_factory=list)  # corrupt or too large to decode
    too_small: list = field(default_factory=list)
    extreme_aspect: list = field(default_factory=list)
    missing_caption: list = field(default_factory=list)
    empty_caption: list = field(default_factory=list)
    caption_warnings: list = field(default_factory=list)
    exact_duplicates: list[list] = field(default_factory=list)
    near_duplicates: list[list] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return sum(len(getattr(self, name)) for name in (
            "errors", "too_small", "extreme_aspect", "missing_caption", "empty_caption", "caption_warnings",
            "exact_duplicates", "near_duplicates"))


def health(dataset_id: int, *, min_side: int = 512, max_aspect: float = 3.0, near_distance: int = 6) -> HealthReport:
    """Everything a trainer would choke on or a user would want to prune, each a list of rows."""
    rows = db.session.execute(
        select(IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.width, IMAGES.c.height, IMAGES.c.error, IMAGES.c.caption,
               IMAGES.c.caption_warning, IMAGES.c.content_hash, IMAGES.c.phash)
        .where(IMAGES.c.dataset_id == dataset_id).order_by(IMAGES.c.relpath)).all()
    report = HealthReport()
    by_hash: dict[str, list] = {}
    for row in rows:
        if row.error:
            report.errors.append(row)
        elif row.width and row.height:
            if min(row.width, row.height) < min_side:
                report.too_small.append(row)
            if max(row.width, row.height) / min(row.width, row.height) > max_aspect:
                report.extreme_aspect.append(row)
        if row.caption is None:
            report.missing_caption.append(row)
        elif not row.caption.strip():
            report.empty_caption.append(row)
        if row.caption_warning:
            report.caption_warnings.append(row)
        if row.content_hash:
            by_hash.setdefault(row.content_hash, []).append(row)
    report.exact_duplicates = [group for group in by_hash.values() if len(group) > 1]
    by_id = {row.id: row for row in rows}
    hashed = [(row.id, row.phash) for row in rows if row.phash is not None]
    for group in near_duplicate_groups(hashed, near_distance):
        # Byte-identical copies are already listed as exact duplicates.
        if len({by_id[i].content_hash for i in group}) > 1:
            report.near_duplicates.append([by_id[i] for i in group])
    return report


# --- thumbnails, exports, auto-captions -------------------------------------------------------


def images_needing_thumbnails(dataset_id: int) -> list:
    return db.session.execute(
        select(IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.content_hash)
        .where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.thumb_ready == false(), IMAGES.c.error.is_(None),
               IMAGES.c.content_hash.is_not(None))
        .order_by(IMAGES.c.relpath)).all()


def mark_thumbnails_ready(image_ids: Sequence[int]) -> None:
    for chunk in _chunks(list(image_ids)):
        db.session.execute(update(IMAGES).where(IMAGES.c.id.in_(chunk)).values(thumb_ready=True))
    db.session.commit()


def mark_images_broken(errors: Mapping[int, str]) -> None:
    if errors:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")),
                           [{"b_id": image_id, "error": message} for image_id, message in errors.items()])
        db.session.commit()


def export_items(dataset_id: int, root: Path):
    """(image path, name stem, caption) for `export`, and (relpath, reason) of images left out."""
    query = (select(IMAGES.c.relpath, IMAGES.c.caption, IMAGES.c.error)
             .where(IMAGES.c.dataset_id == dataset_id).order_by(IMAGES.c.relpath))
    items, left_out = [], []
    for row in db.session.execute(query):
        if row.error:
            left_out.append((row.relpath, row.error))
            continue
        try:
            path = resolve_within([root], row.relpath)
        except PathRefused as exc:
            left_out.append((row.relpath, exc.message))
            continue
        items.append((path, str(PurePosixPath(row.relpath).with_suffix("")), row.caption))
    return items, left_out


def existing_ids(dataset_id: int, image_ids: Sequence[int]) -> list[int]:
    """The ids among `image_ids` that are images of this dataset, sorted (request input is not trusted)."""
    found: list[int] = []
    for chunk in _chunks(sorted(set(image_ids))):
        found += db.session.scalars(select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.id.in_(chunk))).all()
    return sorted(found)


def uncaptioned_ids(dataset_id: int) -> list[int]:
    return db.session.scalars(select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.tag_count == 0,
                                                        IMAGES.c.error.is_(None)).order_by(IMAGES.c.relpath)).all()


def pending_suggestions(dataset_id: int) -> list[DatasetImage]:
    return db.session.scalars(select(DatasetImage).where(DatasetImage.dataset_id == dataset_id,
                                                         DatasetImage.suggestion.is_not(None))
                              .order_by(DatasetImage.relpath)).all()


def accept_suggestions(dataset: Dataset, image_ids: Sequence[int] | None, *, root: Path, data_dir: Path,
                       user_id: int) -> EditOutcome:
    """Make the suggested captions real (one undoable batch) and clear the accepted suggestions."""
    query = select(IMAGES.c.id, IMAGES.c.suggestion).where(IMAGES.c.dataset_id == dataset.id, IMAGES.c.suggestion.is_not(None))
    suggestions = dict(db.session.execute(query).all())
    if image_ids is not None:
        suggestions = {i: text for i, text in suggestions.items() if i in set(image_ids)}
    if not suggestions:
        return EditOutcome()
    plan = [(row, suggestions[row.id]) for row in _rows(dataset.id, list(suggestions))]
    outcome = _apply(dataset, [(row, new) for row, new in plan if new != (row.caption or "")], root=root,
                     data_dir=data_dir, user_id=user_id, kind="suggestion",
                     description=f"Accept {len(plan)} auto-caption{'s' if len(plan) != 1 else ''}")
    now = db.session.execute(select(IMAGES.c.id, IMAGES.c.caption).where(IMAGES.c.id.in_(list(suggestions)))).all()
    clear_suggestions([image_id for image_id, caption in now if caption == suggestions[image_id]])
    return outcome


def clear_suggestions(image_ids: Sequence[int]) -> None:
    for chunk in _chunks(list(image_ids)):
        db.session.execute(update(IMAGES).where(IMAGES.c.id.in_(chunk)).values(suggestion=None))
    db.session.commit()

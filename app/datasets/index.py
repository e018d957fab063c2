"""The dataset index: folders scanned into rows, each caption's tags kept in step, and the rows the
jobs read (thumbnails to make, images to export).

Plain functions over the database session; no Flask request objects. Every file path is turned
into a real path with `resolve_within` against the dataset's own folder, so a row that somehow
names `../x` is refused rather than followed. The other roles live beside it: `grid` (queries the
grid shows), `history` (caption edits with undo), `health`, `suggestions` (auto-captions).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import bindparam, delete, false, func, insert, select, update

from app.datasets.captions import CAPTION_EXTS
from app.datasets.models import CaptionEdit, Dataset, DatasetImage, DatasetTag
from app.datasets.paths import PathRefused, resolve_within
from app.datasets.scan import ScanResult
from app.datasets.tagexpr import normalise_tag
from app.datasets.tags import split_tags
from app.extensions import db
from app.models import utcnow

IMAGES = DatasetImage.__table__
TAGS = DatasetTag.__table__
EDITS = CaptionEdit.__table__
CHUNK = 500  # ids per IN (...) list; SQLite allows 32,766 parameters, PostgreSQL 65,535


def chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    """`items` in slices of at most `size`, for IN (...) lists within every database's parameter limit."""
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


def sync_tags(dataset_id: int, new_tags: Mapping[int, Sequence[str]]) -> None:
    """Make the tag rows of each image exactly `new_tags[image_id]` (as `caption_tags` gives them).

    The diff is taken against the rows in the database, not against what the caller believes the
    old caption was, so rows left stale by an interrupted or racing writer are repaired here
    instead of breaking the next insert. A rename across 10,000 captions still costs one delete
    and one insert per image.
    """
    ids = sorted(new_tags)
    current: dict[int, set[str]] = {image_id: set() for image_id in ids}
    for chunk in chunks(ids):
        for image_id, tag in db.session.execute(select(TAGS.c.image_id, TAGS.c.tag).where(TAGS.c.image_id.in_(chunk))):
            current[image_id].add(tag)
    removed, added = [], []
    for image_id in ids:
        wanted = list(dict.fromkeys(new_tags[image_id]))
        have = current[image_id]
        removed += [{"b_image": image_id, "b_tag": tag} for tag in have - set(wanted)]
        added += _tag_rows(dataset_id, image_id, (tag for tag in wanted if tag not in have))
    if removed:
        db.session.execute(
            delete(TAGS).where(TAGS.c.image_id == bindparam("b_image"), TAGS.c.tag == bindparam("b_tag")), removed
        )
    for chunk in chunks(added, 5000):
        db.session.execute(insert(TAGS), chunk)


# --- scanning ---------------------------------------------------------------------------------


def known_state(dataset_id: int) -> dict[str, tuple]:
    """relpath -> (size, mtime_ns, caption_version, caption_relpath, caption size, caption mtime_ns)
    of every indexed image, for `scan_folder`."""
    rows = db.session.execute(
        select(IMAGES.c.relpath, IMAGES.c.size, IMAGES.c.mtime_ns, IMAGES.c.caption_version, IMAGES.c.caption_relpath,
               IMAGES.c.caption_size, IMAGES.c.caption_mtime_ns)
        .where(IMAGES.c.dataset_id == dataset_id)
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def _stat_values(stat: tuple[int, int] | None) -> dict:
    return {"caption_size": stat[0] if stat else None, "caption_mtime_ns": stat[1] if stat else None}


def _image_values(record) -> dict:
    return {
        "size": record.size, "mtime_ns": record.mtime_ns, "width": record.width, "height": record.height,
        "format": record.format, "content_hash": record.content_hash, "phash": record.phash,
        "error": record.error, "caption_relpath": record.caption_relpath, "caption": record.caption_text,
        "caption_version": record.caption_version, "caption_warning": record.caption_warning,
        "tag_count": len(caption_tags(record.caption_text)), "orientation": record.orientation,
        "alpha": record.alpha, "caption_problems": ",".join(record.caption_problems),
        "pairing_note": record.pairing_note, **_stat_values(record.caption_stat),
    }


def apply_scan(dataset: Dataset, result: ScanResult, *, full: bool = False) -> dict[str, int]:
    """Store a scan's findings; returns counts for the job's message (``repaired``: images whose
    tag rows had drifted from their captions, found by a `full` scan only).

    The tag rows of the images whose image or caption changed are brought in line with their
    captions (`repair_tags` over those images; new images get theirs as they are inserted), so a
    check that found a few edited captions costs a few images' rows. `full` (the Rescan button,
    whose scan re-reads every caption) then checks every image's tag rows, so it repairs any
    difference between the files, the captions in the index and the tag rows.
    """
    ids, versions = {}, {}
    for relpath, image_id, version in db.session.execute(
            select(IMAGES.c.relpath, IMAGES.c.id, IMAGES.c.caption_version).where(IMAGES.c.dataset_id == dataset.id)):
        ids[relpath], versions[image_id] = image_id, version
    for chunk in chunks([ids[relpath] for relpath in result.removed if relpath in ids]):
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
        for chunk in chunks(tag_rows, 5000):
            db.session.execute(insert(TAGS), chunk)

    if result.changed:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), [
            {"b_id": ids[r.relpath], "thumb_ready": False, **_image_values(r)} for r in result.changed])
    if result.captions_changed:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), [
            {"b_id": ids[c.image_relpath], "caption_relpath": c.caption_relpath, "caption": c.caption_text,
             "caption_version": c.caption_version, "caption_warning": c.caption_warning,
             "tag_count": len(caption_tags(c.caption_text)),
             "caption_problems": ",".join(c.caption_problems), "pairing_note": c.pairing_note,
             **_stat_values(c.caption_stat)}
            for c in result.captions_changed])
    if result.caption_stats:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), [
            {"b_id": ids[relpath], **_stat_values(stat)} for relpath, stat in result.caption_stats.items()])
    # The tags of images whose caption changed follow it (that is no repair; a full scan reports
    # every caption, changed or not) ...
    repair_tags(dataset.id, [ids[r.relpath] for r in result.changed] + [
        ids[c.image_relpath] for c in result.captions_changed if c.caption_version != versions[ids[c.image_relpath]]])
    # ... and only the Rescan checks every image's tag rows: drift there is what gets repaired.
    repaired = repair_tags(dataset.id) if full else 0
    if result.added or result.changed or result.removed or result.captions_changed or repaired:
        dataset.tags_changed_at = utcnow()  # the tag count caches' key (a scan that found nothing keeps them)

    if dataset.scanned_at is None:
        dataset.caption_ext = _prevailing_caption_ext(result) or dataset.caption_ext
    if result.caption_encoding != (dataset.settings or {}).get("caption_encoding"):
        # A new dict: the JSON column notices assignment, not changes inside it.
        dataset.settings = {**(dataset.settings or {}), "caption_encoding": result.caption_encoding}
    dataset.image_count = db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset.id))
    dataset.scanned_at = utcnow()
    db.session.commit()
    return {"added": len(result.added), "changed": len(result.changed), "removed": len(result.removed),
            "captions": len(result.captions_changed), "skipped": len(result.skipped), "repaired": repaired}


# Images whose tag rows a full repair reads at a time: 5,000 captions of ~16 tags is ~80,000 tag
# rows in memory, where reading the dataset's 1.6 million at 100,000 images at once took ~13 s
# and a few hundred MB in the worker.
REPAIR_CHUNK = 5000


def repair_tags(dataset_id: int, image_ids: Iterable[int] | None = None, *, chunk: int = REPAIR_CHUNK) -> int:
    """Bring the tag rows and tag count of each image in `image_ids` (None: every image of the
    dataset, the full Rescan's repair) in line with its caption; returns how many were fixed.

    A scan passes the images whose captions it changed, so a check that found three edited
    captions reads three images' tag rows, not the dataset's. The full repair walks the dataset
    `chunk` images at a time by id (their tag rows through the tag table's primary key), so its
    memory stays flat at any size; either way only rows that differ are written.
    """
    fixed = 0
    if image_ids is not None:
        ids = sorted(set(image_ids))
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            images = [row for piece in chunks(part) for row in db.session.execute(
                select(IMAGES.c.id, IMAGES.c.caption, IMAGES.c.tag_count)
                .where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.id.in_(piece)))]
            have: dict[int, set[str]] = {}
            for piece in chunks(part):
                for image_id, tag in db.session.execute(select(TAGS.c.image_id, TAGS.c.tag)
                                                        .where(TAGS.c.image_id.in_(piece))):
                    have.setdefault(image_id, set()).add(tag)
            fixed += _repair(dataset_id, images, have)
        return fixed
    last = 0
    while images := db.session.execute(
            select(IMAGES.c.id, IMAGES.c.caption, IMAGES.c.tag_count)
            .where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.id > last).order_by(IMAGES.c.id).limit(chunk)).all():
        have = {}
        for image_id, tag in db.session.execute(select(TAGS.c.image_id, TAGS.c.tag).where(
                TAGS.c.image_id > last, TAGS.c.image_id <= images[-1].id)):
            have.setdefault(image_id, set()).add(tag)
        last = images[-1].id
        fixed += _repair(dataset_id, images, have)
    return fixed


def _repair(dataset_id: int, images: Sequence, have: Mapping[int, set[str]]) -> int:
    """Fix the tag rows and counts of `images` ((id, caption, tag_count) rows) given the tag rows
    they `have`; returns how many images needed it."""
    wrong: dict[int, list[str]] = {}
    counts = []
    for image_id, caption, tag_count in images:
        tags = caption_tags(caption)
        if set(tags) != have.get(image_id, set()):
            wrong[image_id] = tags
        if tag_count != len(tags):
            counts.append({"b_id": image_id, "tag_count": len(tags)})
    if wrong:
        sync_tags(dataset_id, wrong)
    if counts:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")), counts)
    return len(wrong.keys() | {row["b_id"] for row in counts})


def _prevailing_caption_ext(result: ScanResult) -> str | None:
    """The caption extension most of the dataset already uses: new captions are written with it."""
    exts = Counter(PurePosixPath(r.caption_relpath).suffix.lower() for r in result.added if r.caption_relpath)
    exts.update(PurePosixPath(c.caption_relpath).suffix.lower() for c in result.captions_changed if c.caption_relpath)
    ext = exts.most_common(1)[0][0] if exts else None
    return ext if ext in CAPTION_EXTS else None


# --- rows the jobs read --------------------------------------------------------------------


def images_needing_thumbnails(dataset_id: int) -> list:
    return db.session.execute(
        select(IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.content_hash)
        .where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.thumb_ready == false(), IMAGES.c.error.is_(None),
               IMAGES.c.content_hash.is_not(None))
        .order_by(IMAGES.c.relpath)).all()


def mark_thumbnails_ready(image_ids: Sequence[int]) -> None:
    for chunk in chunks(list(image_ids)):
        db.session.execute(update(IMAGES).where(IMAGES.c.id.in_(chunk)).values(thumb_ready=True))
    db.session.commit()


def mark_images_broken(errors: Mapping[int, str]) -> None:
    if errors:
        db.session.execute(update(IMAGES).where(IMAGES.c.id == bindparam("b_id")),
                           [{"b_id": image_id, "error": message} for image_id, message in errors.items()])
        db.session.commit()


def export_items(dataset_id: int, root: Path, image_ids: Sequence[int] | None = None):
    """(image path, name stem, caption) for `export`, and (relpath, reason) of images left out.

    `image_ids` limits the export to those images (the selected or filtered ones); images marked
    "exclude from training" and unreadable ones are always left out, with the reason.
    """
    query = (select(IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.caption, IMAGES.c.error, IMAGES.c.excluded)
             .where(IMAGES.c.dataset_id == dataset_id).order_by(IMAGES.c.relpath))
    wanted = set(image_ids) if image_ids is not None else None
    items, left_out = [], []
    for row in db.session.execute(query):
        if wanted is not None and row.id not in wanted:
            continue
        if row.excluded:
            left_out.append((row.relpath, "excluded from training"))
            continue
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
    for chunk in chunks(sorted(set(image_ids))):
        found += db.session.scalars(select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.id.in_(chunk))).all()
    return sorted(found)


def forget_images(dataset: Dataset, image_ids: Sequence[int]) -> None:
    """Drop images (moved to the trash) from the index, with their tags."""
    for chunk in chunks(sorted(set(image_ids))):
        db.session.execute(delete(TAGS).where(TAGS.c.image_id.in_(chunk)))
        db.session.execute(delete(IMAGES).where(IMAGES.c.dataset_id == dataset.id, IMAGES.c.id.in_(chunk)))
    dataset.image_count = db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset.id))
    db.session.commit()


def set_excluded(dataset_id: int, image_ids: Sequence[int], excluded: bool) -> None:
    """Mark images as left out of (or back in) training exports."""
    for chunk in chunks(sorted(set(image_ids))):
        db.session.execute(update(IMAGES).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.id.in_(chunk))
                           .values(excluded=excluded))
    db.session.commit()

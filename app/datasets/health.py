"""Dataset health: everything a trainer would choke on or a user would want to prune."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.datasets import buckets
from app.datasets.captions import CAPTION_PROBLEMS
from app.datasets.imagehash import near_duplicate_groups
from app.datasets.index import IMAGES, TAGS
from app.datasets.tags import tag_variants
from app.extensions import db

_COLUMNS = (IMAGES.c.id, IMAGES.c.relpath, IMAGES.c.width, IMAGES.c.height, IMAGES.c.error, IMAGES.c.caption,
            IMAGES.c.caption_warning, IMAGES.c.content_hash, IMAGES.c.phash, IMAGES.c.caption_problems,
            IMAGES.c.pairing_note, IMAGES.c.alpha, IMAGES.c.orientation, IMAGES.c.excluded, IMAGES.c.thumb_ready,
            IMAGES.c.dataset_id, IMAGES.c.caption_relpath)


@dataclass
class HealthReport:
    errors: list = field(default_factory=list)  # corrupt or too large to decode
    too_small: list = field(default_factory=list)
    extreme_aspect: list = field(default_factory=list)
    missing_caption: list = field(default_factory=list)
    empty_caption: list = field(default_factory=list)
    caption_unreadable: list = field(default_factory=list)  # the caption file could not be read
    # captions.CAPTION_PROBLEMS key -> rows ("bom", "first_line_empty", "multi_line", ...)
    caption_problems: dict[str, list] = field(default_factory=dict)
    pairing: list = field(default_factory=list)  # shared, doubled or case-only caption pairings
    transparent: list = field(default_factory=list)  # images with pixels that are not fully opaque
    rotated: list = field(default_factory=list)  # EXIF orientation other than 1
    exact_duplicates: list[list] = field(default_factory=list)
    near_duplicates: list[list] = field(default_factory=list)
    tag_variants: list[list[tuple[str, int]]] = field(default_factory=list)  # one tag spelled several ways
    excluded: int = 0
    buckets: list[tuple[str, int]] = field(default_factory=list)  # (bucket, images), see buckets.histogram

    @property
    def problem_count(self) -> int:
        lists = ("errors", "too_small", "extreme_aspect", "missing_caption", "empty_caption", "caption_unreadable",
                 "pairing", "transparent", "exact_duplicates", "near_duplicates", "tag_variants")
        return sum(len(getattr(self, name)) for name in lists) + sum(
            len(rows) for key, rows in self.caption_problems.items() if key != "not_utf8")


def health_report(dataset_id: int, *, min_side: int = 512, max_aspect: float = 3.0, near_distance: int = 6,
                  trainer: str = buckets.DEFAULT_TRAINER) -> HealthReport:
    """Everything a trainer would choke on or a user would want to prune, each a list of rows.

    Images marked "exclude from training" still appear in the duplicate groups (marked), so a
    group shows what was kept; they are left out of the other lists and of the bucket histogram.
    """
    rows = db.session.execute(select(*_COLUMNS).where(IMAGES.c.dataset_id == dataset_id)
                              .order_by(IMAGES.c.relpath)).all()
    report = HealthReport()
    report.caption_problems = {key: [] for key in CAPTION_PROBLEMS}
    by_hash: dict[str, list] = {}
    sizes = []
    for row in rows:
        if row.content_hash:
            by_hash.setdefault(row.content_hash, []).append(row)
        if row.excluded:
            report.excluded += 1
            continue
        if row.error:
            report.errors.append(row)
        elif row.width and row.height:
            sizes.append((row.width, row.height))
            if min(row.width, row.height) < min_side:
                report.too_small.append(row)
            if max(row.width, row.height) / min(row.width, row.height) > max_aspect:
                report.extreme_aspect.append(row)
        if row.caption is None:
            report.missing_caption.append(row)
        elif not row.caption.strip():
            report.empty_caption.append(row)
        if row.caption_warning and row.caption_warning.startswith("Cannot read caption"):
            report.caption_unreadable.append(row)
        for key in filter(None, (row.caption_problems or "").split(",")):
            report.caption_problems.setdefault(key, []).append(row)
        if row.pairing_note:
            report.pairing.append(row)
        if row.alpha:
            report.transparent.append(row)
        if row.orientation and row.orientation != 1:
            report.rotated.append(row)
    report.exact_duplicates = [group for group in by_hash.values() if len(group) > 1]
    by_id = {row.id: row for row in rows}
    hashed = [(row.id, row.phash) for row in rows if row.phash is not None]
    for group in near_duplicate_groups(hashed, near_distance):
        # Byte-identical copies are already listed as exact duplicates.
        if len({by_id[i].content_hash for i in group}) > 1:
            report.near_duplicates.append([by_id[i] for i in group])
    counts = db.session.execute(select(TAGS.c.tag, func.count()).where(TAGS.c.dataset_id == dataset_id)
                                .group_by(TAGS.c.tag)).all()
    report.tag_variants = tag_variants(dict(counts))
    report.buckets = buckets.histogram(sizes, trainer)
    return report


def known_problems(dataset_id: int, image_ids: Sequence[int] | None = None) -> list[str]:
    """What Health knows about these images (None: all) that matters to a training export, as sentences."""
    report = health_report(dataset_id)
    wanted = set(image_ids) if image_ids is not None else None

    def count(rows) -> int:
        return sum(1 for row in rows if wanted is None or row.id in wanted)

    def images(number: int) -> str:
        return f"{number:,} image{'s' if number != 1 else ''}"

    duplicate_groups = sum(1 for group in report.exact_duplicates + report.near_duplicates
                           if sum(1 for row in group if not row.excluded and (wanted is None or row.id in wanted)) > 1)
    checks = [
        (count(report.missing_caption), "without a caption (trainers auto-caption them or train them untagged)"),
        (count(report.empty_caption), "with an empty caption (exported without a caption file)"),
        (count(report.caption_problems.get("encoding_uncertain", [])),
         "with a caption in an uncertain encoding (exported as shown; confirm the reading in the editor)"),
        (count(report.caption_problems.get("multi_line", [])), "with several caption lines (kohya reads only the first)"),
        (count(report.caption_problems.get("first_line_empty", [])), "with a blank first caption line (dropped in the export)"),
        (count(report.too_small), "smaller than 512 px on a side"),
        (count(report.pairing), "whose caption pairing needs a look (shared, doubled or matched by case)"),
    ]
    sentences = [f"{images(number)} {what}" for number, what in checks if number]
    if duplicate_groups:
        sentences.append(f"{duplicate_groups:,} group{'s' if duplicate_groups != 1 else ''} of duplicates exported "
                         "more than once (exclude the copies in Health)")
    return sentences

"""Dataset health: everything a trainer would choke on or a user would want to prune."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from app.datasets.imagehash import near_duplicate_groups
from app.datasets.index import IMAGES
from app.extensions import db

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


def health_report(dataset_id: int, *, min_side: int = 512, max_aspect: float = 3.0, near_distance: int = 6) -> HealthReport:
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

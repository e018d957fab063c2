"""The grid: which images a filter shows, in which order, and where the user left off.

`GridFilter.from_args` is the parsed, checked form of the grid's query string (and of a bulk
action's scope); the queries are plain functions over the database session.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import and_, func, not_, or_, select, true

from app.datasets.index import IMAGES, TAGS
from app.datasets.models import CaptionBatch, Dataset, DatasetImage, DatasetProgress
from app.datasets.tagexpr import And, Expr, MatchAll, Not, Or, Tag, TagExprError, Wildcard, normalise_tag, parse
from app.extensions import db
from app.models import utcnow

SORTS = {
    "name": ("Name", (IMAGES.c.relpath,)),
    "newest": ("Newest file first", (IMAGES.c.mtime_ns.desc(),)),
    "fewest-tags": ("Fewest tags first", (IMAGES.c.tag_count, IMAGES.c.relpath)),
    "most-tags": ("Most tags first", (IMAGES.c.tag_count.desc(), IMAGES.c.relpath)),
    "unreviewed": ("Not reviewed first", (IMAGES.c.reviewed, IMAGES.c.relpath)),
}


MAX_SEARCH_CHARS = 500
TAG_PAGE = 200  # tags per page of the tag panel


@dataclass(frozen=True)
class GridFilter:
    """What the grid shows: a tag expression, untagged only, caption text, and the sort order.

    `from_args` reads it from a query string or form (unknown sorts fall back to "name"); `to_args`
    gives back only what differs from the defaults; `problem` says why ``q`` cannot be parsed.
    """

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
        """Why the filter cannot be used (a message for the user), or None.

        Filters come from query strings anyone can link to, so they are checked (size, depth:
        see tagexpr) before any query runs; `filtered_select` raises `TagExprError` for the same.
        """
        if len(self.search) > MAX_SEARCH_CHARS:
            return f"Caption text to find is {len(self.search):,} characters long; the limit is {MAX_SEARCH_CHARS:,}"
        try:
            parse(self.q)
        except TagExprError as exc:
            return f"Filter not used: {exc}"
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
    if len(grid_filter.search) > MAX_SEARCH_CHARS:
        raise TagExprError(grid_filter.problem, 0)
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


# Per-process cache of each dataset's tag counts: counting 1.6 million tag rows (100,000 images)
# takes seconds, and the dataset page, the editor and the combobox ask on every page, image and
# keystroke. The key changes whenever the tags can: a scan or the editor finding captions changed
# on disk (Dataset.tags_changed_at), any caption edit (each is a batch, and a batch's updated_at
# moves with every editor save and every chunk of a bulk edit) or an image leaving the index.
_TAG_COUNTS: dict[int, tuple[tuple, dict[str, int], list[tuple[str, str, int]]]] = {}


def _tag_state(dataset_id: int) -> tuple:
    dataset = db.session.execute(select(Dataset.tags_changed_at, Dataset.image_count)
                                 .where(Dataset.id == dataset_id)).first()
    last_edit = db.session.scalar(select(func.max(CaptionBatch.updated_at)).where(CaptionBatch.dataset_id == dataset_id))
    return (tuple(dataset) if dataset else None, last_edit)


def _counts(dataset_id: int) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """(count of each tag as written, [(key, tag, count)] grouped by normalised key, most used
    first) from the cache or the database."""
    state = _tag_state(dataset_id)
    cached = _TAG_COUNTS.get(dataset_id)
    if cached is not None and cached[0] == state:
        return cached[1], cached[2]
    # Grouped by tag alone, the (dataset_id, tag) index answers without reading the table; the
    # key of each of the few distinct tags is computed here.
    count = func.count().label("n")
    by_tag = dict(db.session.execute(select(TAGS.c.tag, count).where(TAGS.c.dataset_id == dataset_id)
                                     .group_by(TAGS.c.tag)).all())
    by_key: dict[str, list] = {}
    for tag, n in by_tag.items():
        entry = by_key.setdefault(normalise_tag(tag), [tag, 0, 0])
        if n > entry[2] or (n == entry[2] and tag < entry[0]):
            entry[0], entry[2] = tag, n
        entry[1] += n
    grouped = sorted(((key, tag, total) for key, (tag, total, _) in by_key.items()), key=lambda ktc: (-ktc[2], ktc[0]))
    if len(_TAG_COUNTS) > 32:
        _TAG_COUNTS.clear()
    _TAG_COUNTS[dataset_id] = (state, by_tag, grouped)
    return by_tag, grouped


def tag_counts(dataset_id: int) -> list[tuple[str, int]]:
    """Every tag with the number of images carrying it, most used first.

    Spellings that normalise alike (`long hair` / `long_hair`, `photo (medium)` / `photo_(medium)`)
    are one tag here, as in the filter: shown in their most used spelling, their counts added
    (Health offers to merge them on disk).
    """
    return [(tag, n) for _, tag, n in _counts(dataset_id)[1]]


def tag_page(dataset_id: int, *, offset: int = 0, limit: int = TAG_PAGE, find: str = "") -> tuple[list[tuple[str, int]], int]:
    """One page of `tag_counts` (most used first), and how many tags there are in all — of those
    containing `find` when given, compared as `normalise_tag` compares. Spellings that normalise
    alike are one tag, shown in their most used spelling, as in `tag_counts`. Answered from the
    per-process count cache, so a page costs a slice however many tags the dataset has.
    """
    grouped = _counts(dataset_id)[1]
    needle = normalise_tag(find)[:MAX_SEARCH_CHARS]
    if needle:
        grouped = [entry for entry in grouped if needle in entry[0]]
    offset = max(offset, 0)
    return [(tag, n) for _, tag, n in grouped[offset:offset + limit]], len(grouped)


def tag_counts_matching(dataset_id: int, text: str, limit: int = 200) -> dict[str, int]:
    """Dataset tags whose normalised form contains `text`, with counts (autocomplete candidates)."""
    key = normalise_tag(text)
    if not key:
        return {}
    by_tag = _counts(dataset_id)[0]
    found = [(tag, n) for tag, n in by_tag.items() if key in normalise_tag(tag)]
    return dict(sorted(found, key=lambda tc: -tc[1])[:limit])


def reviewed_count(dataset_id: int) -> int:
    """How many of the dataset's images the user marked reviewed."""
    return db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.reviewed))


def images_with_tag(dataset_id: int, tag: str) -> list[int]:
    """Ids of images whose caption has exactly `tag`."""
    return db.session.scalars(select(TAGS.c.image_id).where(TAGS.c.dataset_id == dataset_id, TAGS.c.tag == tag.strip())).all()


# --- where the user was -----------------------------------------------------------------------


def progress_for(user_id: int, dataset_id: int) -> DatasetProgress | None:
    """Where this user left the dataset (last image, grid filter), or None on a first visit."""
    return db.session.scalar(select(DatasetProgress).where(DatasetProgress.user_id == user_id,
                                                           DatasetProgress.dataset_id == dataset_id))


def remember(user_id: int, dataset_id: int, *, image_id: int | None = None, grid_filter: GridFilter | None = None) -> None:
    """Keep the image last opened and/or the grid's filter for this user's next visit (commits)."""
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

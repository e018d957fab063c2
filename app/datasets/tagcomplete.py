"""Tag autocomplete from the dataset's own tags and from booru tag lists.

Lists: a1111-sd-webui-tagcomplete CSVs (no header: `name,type,postCount,"alias1,alias2"`) and
WD14 `selected_tags.csv` (header `tag_id,name,category,count`). Keys are compared case-folded
with `_` as a space and paren escapes removed, so `long_ha`, `Long Ha` and `long ha` all find
`long hair`, and a dataset spelled `star \\(symbol\\)` finds `star_(symbol)`.

Ranking: the dataset's own tags come first (they are the user's vocabulary), then list tags;
within each, tags starting with the query, then tags with a word starting with it, then tags
containing it; ties by count. Prefix lookups bisect a sorted key list; "contains" lookups scan
one string of all keys laid out most-popular-first and stop once enough are found, so a query
costs milliseconds on a 100,000-line list.
"""
import bisect
import csv
import heapq
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.datasets.tagexpr import normalise_tag
from app.datasets.tags import tag_underscores_to_spaces

DATASET_SOURCE = "dataset"
WD14_RATING_CATEGORY = 9


@dataclass(frozen=True)
class Suggestion:
    tag: str  # what to insert: always the canonical tag, never an alias
    count: int  # images in the dataset for dataset tags, booru post count for list tags
    source: str  # "dataset" or the list's name
    matched_alias: str | None = None  # the alias the query matched, for "alias → tag" display
    category: int | None = None  # booru category (0 general, 1 artist, 3 copyright, 4 character, 5 meta)


@dataclass(frozen=True)
class _Entry:
    name: str  # as listed, e.g. "long_hair"
    key: str  # normalised, e.g. "long hair"
    count: int
    category: int | None
    source: str


def _display(name: str, spaces: bool) -> str:
    # The same rule as the "underscores to spaces" action: kaomoji such as (o)_(o) keep "_".
    return tag_underscores_to_spaces(name) if spaces else name


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


class TagIndex:
    """Tags from one or more lists; the first list to name a tag wins.

    Load the lists first, then share the index between requests: `suggest` is thread-safe,
    `add_csv` is not meant to run while others query.
    """

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._by_key: dict[str, int] = {}
        self._aliases: dict[str, int] = {}  # normalised alias -> entry index
        self._alias_names: dict[str, str] = {}
        self._stale = True
        self._build_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def add_csv(self, path: Path, *, source: str | None = None) -> int:
        """Load a tagcomplete or WD14 CSV (recognised by its header); returns tags added."""
        source = source or Path(path).stem
        added = 0
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = csv.reader(fh)
            first = next(rows, None)
            if first is None:
                return 0
            if [c.strip().lower() for c in first[:2]] == ["tag_id", "name"]:
                columns = {c.strip().lower(): i for i, c in enumerate(first)}

                def cell(row: list[str], column: str) -> str:
                    i = columns.get(column)
                    return row[i] if i is not None and i < len(row) else ""

                for row in rows:
                    category = _int(cell(row, "category")) if cell(row, "category").strip() else None
                    if category != WD14_RATING_CATEGORY:  # "general", "explicit"… are not caption tags
                        added += self._add(cell(row, "name"), _int(cell(row, "count")), category, source, "")
            else:
                for row in (first, *rows):
                    if row:
                        category = _int(row[1]) if len(row) > 1 and row[1].strip() else None
                        count = _int(row[2]) if len(row) > 2 else 0
                        added += self._add(row[0], count, category, source, row[3] if len(row) > 3 else "")
        self._stale = True
        return added

    def _add(self, name: str, count: int, category: int | None, source: str, aliases: str) -> int:
        name = name.strip()
        key = normalise_tag(name)
        if not key or key in self._by_key:
            return 0
        index = len(self._entries)
        self._entries.append(_Entry(name, key, count, category, source))
        self._by_key[key] = index
        for alias in aliases.split(","):
            alias_key = normalise_tag(alias)
            if alias_key and alias_key not in self._aliases:
                self._aliases[alias_key] = index
                self._alias_names[alias_key] = alias.strip()
        return 1

    def _build(self) -> None:
        """Sorted keys for prefix search and a popularity-ordered text for substring search."""
        order = sorted(range(len(self._entries)), key=lambda i: self._entries[i].key)
        self._sorted_keys = [self._entries[i].key for i in order]
        self._sorted_index = order
        # Aliases that are also real tags are dropped: the tag itself wins.
        aliases = sorted((k, i) for k, i in self._aliases.items() if k not in self._by_key)
        self._alias_keys = [k for k, _ in aliases]
        self._alias_index = [i for _, i in aliases]
        popular = sorted(range(len(self._entries)), key=lambda i: -self._entries[i].count)
        self._popular = popular
        self._offsets = []
        parts, offset = [], 1
        for i in popular:
            self._offsets.append(offset)
            parts.append(self._entries[i].key)
            offset += len(self._entries[i].key) + 1
        self._blob = "\n" + "\n".join(parts) + "\n"
        self._stale = False

    def _prefix_range(self, keys: list[str], query: str) -> range:
        return range(bisect.bisect_left(keys, query), bisect.bisect_left(keys, query + "\U0010ffff"))

    def _scan_popular(self, needle: str, wanted: int, exclude: set[int]) -> list[int]:
        """Up to `wanted` entries whose key contains `needle`, most popular first."""
        found: list[int] = []
        pos = self._blob.find(needle)
        while pos != -1 and len(found) < wanted:
            slot = bisect.bisect_right(self._offsets, pos) - 1
            index = self._popular[slot]
            if index not in exclude:
                found.append(index)
                exclude.add(index)
            next_key = self._offsets[slot + 1] if slot + 1 < len(self._offsets) else len(self._blob)
            pos = self._blob.find(needle, max(pos + 1, next_key))
        return found

    def suggest(
        self,
        prefix: str,
        dataset_counts: Mapping[str, int],
        limit: int = 10,
        *,
        spaces: bool = True,
    ) -> list[Suggestion]:
        """Suggestions for what the user has typed so far.

        `dataset_counts` maps the dataset's tags (as written in its captions) to image counts.
        List tags come back with underscores as spaces (kohya's rule) unless `spaces=False`.
        """
        query = normalise_tag(prefix)
        if not query or limit <= 0:
            return []
        if self._stale:
            with self._build_lock:
                if self._stale:
                    self._build()

        ranked: list[tuple[int, int, str]] = []  # (rank, -count, tag)
        for tag, count in dataset_counts.items():
            key = normalise_tag(tag)
            if key.startswith(query):
                ranked.append((0, -count, tag))
            elif (" " + query) in key:
                ranked.append((1, -count, tag))
            elif query in key:
                ranked.append((2, -count, tag))
        suggestions = [Suggestion(tag, -neg, DATASET_SOURCE) for _, neg, tag in heapq.nsmallest(limit, ranked)]
        if len(suggestions) >= limit:
            return suggestions
        # A tag already suggested from the dataset is not repeated from a list.
        seen = {self._by_key[k] for k in (normalise_tag(s.tag) for s in suggestions) if k in self._by_key}
        wanted = limit - len(suggestions)

        prefix_hits = [self._sorted_index[i] for i in self._prefix_range(self._sorted_keys, query)]
        direct = set(prefix_hits)
        alias_hits: dict[int, str] = {}  # entry index -> the alias that matched
        for i in self._prefix_range(self._alias_keys, query):
            alias_hits.setdefault(self._alias_index[i], self._alias_names[self._alias_keys[i]])
        candidates = [i for i in prefix_hits if i not in seen]
        candidates += [i for i in alias_hits if i not in seen and i not in direct]
        picked = heapq.nlargest(wanted, candidates, key=lambda i: self._entries[i].count)
        seen.update(picked)
        for needle in (" " + query, query):  # word starts, then anywhere
            if len(picked) < wanted:
                picked += self._scan_popular(needle, wanted - len(picked), seen)

        for index in picked:
            entry = self._entries[index]
            alias = alias_hits.get(index) if index not in direct else None
            suggestions.append(Suggestion(_display(entry.name, spaces), entry.count, entry.source, alias, entry.category))
        return suggestions

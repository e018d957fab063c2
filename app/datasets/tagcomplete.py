"""Tag autocomplete from the dataset's own tags and from booru tag lists.

Lists: a1111-sd-webui-tagcomplete CSVs (no header: `name,type,postCount,"alias1,alias2"`) and
WD14 `selected_tags.csv` (header `tag_id,name,category,count`). Keys are compared case-folded
with `_` as a space and paren escapes removed, so `long_ha`, `Long Ha` and `long ha` all find
`long hair`, and a dataset spelled `star \\(symbol\\)` finds `star_(symbol)`.

Ranking: the dataset's own tags come first (they are the user's vocabulary), then list tags;
within each, tags starting with the query, then tags with a word starting with it, then tags
containing it; ties by count.

Storage: a list of a million tags (Danbooru's full list) is ~800 MB as Python objects and takes
seconds to parse, so `TagIndex` keeps lists in SQLite: in memory for small ones, or in a file that
`taglists.TagListCache` builds once per version of the configured lists and every process opens
read-only. Prefix lookups use the key index (ids are popularity ranks); "contains" lookups search
one string of all keys laid out most-popular-first and stop once enough are found.
"""
import array
import bisect
import csv
import heapq
import io
import itertools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.datasets.tagexpr import normalise_tag
from app.datasets.tags import tag_underscores_to_spaces

DATASET_SOURCE = "dataset"
WD14_RATING_CATEGORY = 9
_TOP = "\U0010ffff"  # sorts after every key: [q, q + _TOP) is "starts with q"
_INSERT_BATCH = 20_000


@dataclass(frozen=True)
class Suggestion:
    tag: str  # what to insert: always the canonical tag, never an alias
    count: int  # images in the dataset for dataset tags, booru post count for list tags
    source: str  # "dataset" or the list's name
    matched_alias: str | None = None  # the alias the query matched, for "alias → tag" display
    category: int | None = None  # booru category (0 general, 1 artist, 3 copyright, 4 character, 5 meta)


def _display(name: str, spaces: bool) -> str:
    # The same rule as the "underscores to spaces" action: kaomoji such as (o)_(o) keep "_".
    return tag_underscores_to_spaces(name) if spaces else name


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


# `tag` rows are numbered by popularity (id 1 is the most used tag), so walking the table in id
# order is walking it most-popular-first: "contains" lookups stop after the first few hits.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag (id INTEGER PRIMARY KEY, key TEXT NOT NULL, name TEXT NOT NULL,
                                count INTEGER NOT NULL, category INTEGER, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alias (key TEXT NOT NULL, tag_id INTEGER NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS search_text (id INTEGER PRIMARY KEY CHECK (id = 1), keys TEXT NOT NULL, offsets BLOB NOT NULL);
"""
# Loading goes through a staging table: first list wins per key, then one sorted copy into `tag`.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staged (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE ON CONFLICT IGNORE,
                                        name TEXT, count INTEGER, category INTEGER, source TEXT);
CREATE TEMP TABLE IF NOT EXISTS staged_alias (key TEXT, tag_key TEXT, name TEXT);
"""
_FINISH = """
DELETE FROM tag;
DELETE FROM alias;
DROP INDEX IF EXISTS tag_key;
DROP INDEX IF EXISTS alias_key;
INSERT INTO tag (key, name, count, category, source)
    SELECT key, name, count, category, source FROM staged ORDER BY count DESC, seq;
CREATE UNIQUE INDEX tag_key ON tag (key, id);
-- An alias that is also a tag's own key is dropped: the tag itself wins.
INSERT INTO alias (key, tag_id, name)
    SELECT a.key, t.id, min(a.name) FROM staged_alias AS a JOIN tag AS t ON t.key = a.tag_key
    WHERE NOT EXISTS (SELECT 1 FROM tag AS u WHERE u.key = a.key) GROUP BY a.key, t.id;
CREATE INDEX alias_key ON alias (key, tag_id);
"""


def _rows(path: Path, source: str) -> Iterator[tuple[str, int, int | None, str]]:
    """(name, count, category, aliases) of each tag row of a tagcomplete or WD14 CSV."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = csv.reader(fh)
        first = next(rows, None)
        if first is None:
            return
        if [c.strip().lower() for c in first[:2]] == ["tag_id", "name"]:
            columns = {c.strip().lower(): i for i, c in enumerate(first)}

            def cell(row: list[str], column: str) -> str:
                i = columns.get(column)
                return row[i] if i is not None and i < len(row) else ""

            for row in rows:
                category = _int(cell(row, "category")) if cell(row, "category").strip() else None
                if category != WD14_RATING_CATEGORY:  # "general", "explicit"… are not caption tags
                    yield cell(row, "name"), _int(cell(row, "count")), category, ""
        else:
            for row in itertools.chain([first], rows):  # streamed: never the whole file at once
                if row:
                    category = _int(row[1]) if len(row) > 1 and row[1].strip() else None
                    count = _int(row[2]) if len(row) > 2 else 0
                    yield row[0], count, category, row[3] if len(row) > 3 else ""


class TagIndex:
    """Tags from one or more lists, in SQLite; the first list to name a tag wins.

    `TagIndex()` keeps them in memory (small lists, tests); `TagIndex(path)` in a file, which
    `TagListCache` builds once and then opens read-only. `suggest` is thread-safe; `add_csv`
    is not meant to run while others query.
    """

    def __init__(self, path: Path | None = None, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._memory: sqlite3.Connection | None = None
        self._memory_lock = threading.Lock()
        self._blob: str | None = None  # every key, most popular first, "\n"-separated (see _contains)
        self._offsets = array.array("I")
        self._blob_lock = threading.Lock()
        if path is None:
            self._memory = self._connect()
            self._memory.executescript(_SCHEMA)
        elif not read_only:
            self._connection().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            connection = sqlite3.connect(":memory:", check_same_thread=False)
        elif self.read_only:
            connection = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        else:
            connection = sqlite3.connect(self.path)
            connection.execute("PRAGMA journal_mode=OFF")  # a failed build is thrown away whole
            connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-8000")  # 8 MB per connection, whatever the list's size
        return connection

    def _connection(self) -> sqlite3.Connection:
        if self._memory is not None:
            return self._memory
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        if self._memory is not None:
            with self._memory_lock:
                return self._memory.execute(sql, params).fetchall()
        return self._connection().execute(sql, params).fetchall()

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM tag")[0][0]

    def add_csv(self, path: Path, *, source: str | None = None) -> int:
        """Load a tagcomplete or WD14 CSV (recognised by its header); returns tags added.

        Memory stays bounded whatever the list's size: rows go to SQLite in batches, and the
        popularity order is one SQL sort (which spills to disk when it must).
        """
        source = source or Path(path).stem
        db = self._connection()
        db.executescript(_STAGING)
        if not db.execute("SELECT count(*) FROM staged").fetchone()[0]:  # lists loaded before this one
            db.execute("INSERT INTO staged (key, name, count, category, source) "
                       "SELECT key, name, count, category, source FROM tag ORDER BY id")
            db.execute("INSERT INTO staged_alias (key, tag_key, name) "
                       "SELECT alias.key, tag.key, alias.name FROM alias JOIN tag ON tag.id = alias.tag_id")
        before = db.execute("SELECT count(*) FROM staged").fetchone()[0]
        tags: list[tuple] = []
        aliases: list[tuple] = []

        def flush() -> None:
            db.executemany("INSERT INTO staged (key, name, count, category, source) VALUES (?, ?, ?, ?, ?)", tags)
            db.executemany("INSERT INTO staged_alias (key, tag_key, name) VALUES (?, ?, ?)", aliases)
            tags.clear()
            aliases.clear()

        for name, count, category, alias_text in _rows(Path(path), source):
            name = name.strip()
            key = normalise_tag(name)
            if not key:
                continue
            tags.append((key, name, count, category, source))
            if alias_text:
                for alias in alias_text.split(","):
                    alias_key = normalise_tag(alias)
                    if alias_key:
                        aliases.append((alias_key, key, alias.strip()))
            if len(tags) >= _INSERT_BATCH:
                flush()
        flush()
        added = db.execute("SELECT count(*) FROM staged").fetchone()[0] - before
        db.executescript(_FINISH)
        self._store_search_text(db)
        db.commit()
        self._blob = None
        return added

    @staticmethod
    def _store_search_text(db: sqlite3.Connection) -> None:
        """Every key in one string, most popular first, and each key's start (see `_contains`),
        made once here so a process loads them with one read instead of a million rows."""
        text, offsets, offset = io.StringIO("\n"), array.array("I"), 1
        text.seek(1)
        for (key,) in db.execute("SELECT key FROM tag ORDER BY id"):
            offsets.append(offset)
            text.write(key + "\n")
            offset += len(key) + 1
        db.execute("DELETE FROM search_text")
        db.execute("INSERT INTO search_text (id, keys, offsets) VALUES (1, ?, ?)", (text.getvalue(), offsets.tobytes()))

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
        suggestions = dataset_suggestions(query, dataset_counts, limit)
        if len(suggestions) >= limit:
            return suggestions
        seen_keys = [normalise_tag(s.tag) for s in suggestions]
        seen: set[int] = set()
        if seen_keys:
            marks = ",".join("?" * len(seen_keys))
            seen = {row[0] for row in self._query(f"SELECT id FROM tag WHERE key IN ({marks})", seen_keys)}
        wanted = limit - len(suggestions)
        fetch = wanted + len(seen)
        columns = "tag.id, tag.name, tag.count, tag.source, tag.category"

        picked: list[tuple] = []  # (id, name, count, source, category, matched alias)
        picked_ids: set[int] = set(seen)

        def take(rows: Iterable[tuple], alias_of: dict[int, str] | None = None) -> None:
            for row in rows:
                if len(picked) >= wanted:
                    return
                if row[0] not in picked_ids:
                    picked_ids.add(row[0])
                    picked.append((*row[:5], (alias_of or {}).get(row[0])))

        end = query + _TOP
        # The smallest ids in the key range are the most popular: the index alone answers.
        direct = self._query(f"SELECT {columns} FROM tag WHERE id IN (SELECT id FROM tag INDEXED BY tag_key "
                             "WHERE key >= ? AND key < ? ORDER BY id LIMIT ?) ORDER BY id", (query, end, fetch))
        by_alias = self._query(
            f"SELECT {columns}, alias.name FROM alias JOIN tag ON tag.id = alias.tag_id WHERE alias.rowid IN "
            "(SELECT rowid FROM alias INDEXED BY alias_key WHERE key >= ? AND key < ? ORDER BY tag_id LIMIT ?) "
            "ORDER BY tag.id", (query, end, fetch * 2))
        direct_ids = {row[0] for row in direct}
        alias_of: dict[int, str] = {}
        for row in by_alias:
            if row[0] not in direct_ids:
                alias_of.setdefault(row[0], row[5])
        # Prefix hits by the tag or by an alias compete on count, as one list.
        merged = sorted([*direct, *(row[:5] for row in by_alias if row[0] in alias_of)], key=lambda r: r[0])
        take(merged, alias_of)
        for needle in (" " + query, query):  # word starts, then anywhere
            if len(picked) < wanted:
                ids = self._contains(needle, wanted - len(picked), picked_ids)
                if ids:
                    marks = ",".join("?" * len(ids))
                    take(self._query(f"SELECT {columns} FROM tag WHERE id IN ({marks}) ORDER BY id", ids))

        for _, name, count, source, category, alias in picked:
            suggestions.append(Suggestion(_display(name, spaces), count, source, alias, category))
        return suggestions


    def _load_blob(self) -> None:
        """The search text: about 20 bytes per tag (20 MB for a million), read once per index."""
        with self._blob_lock:
            if self._blob is not None:
                return
            rows = self._query("SELECT keys, offsets FROM search_text WHERE id = 1")
            offsets = array.array("I")
            if rows:
                offsets.frombytes(rows[0][1])
            self._offsets, self._blob = offsets, rows[0][0] if rows else "\n"

    def _contains(self, needle: str, wanted: int, exclude: set[int]) -> list[int]:
        """Up to `wanted` tag ids (most popular first) whose key contains `needle`, not in `exclude`."""
        if self._blob is None:
            self._load_blob()
        blob, offsets = self._blob, self._offsets
        found: list[int] = []
        pos = blob.find(needle)
        while pos != -1 and len(found) < wanted:
            slot = bisect.bisect_right(offsets, pos) - 1
            tag_id = slot + 1  # ids are 1..n in popularity order
            if tag_id not in exclude:
                found.append(tag_id)
            next_key = offsets[slot + 1] if slot + 1 < len(offsets) else len(blob)
            pos = blob.find(needle, max(pos + 1, next_key))
        return found


def dataset_suggestions(query: str, dataset_counts: Mapping[str, int], limit: int) -> list[Suggestion]:
    """The dataset's own tags for a normalised `query`: starts, word starts, then contains."""
    ranked: list[tuple[int, int, str]] = []  # (rank, -count, tag)
    for tag, count in dataset_counts.items():
        key = normalise_tag(tag)
        if key.startswith(query):
            ranked.append((0, -count, tag))
        elif (" " + query) in key:
            ranked.append((1, -count, tag))
        elif query in key:
            ranked.append((2, -count, tag))
    return [Suggestion(tag, -neg, DATASET_SOURCE) for _, neg, tag in heapq.nsmallest(limit, ranked)]

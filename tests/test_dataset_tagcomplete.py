from pathlib import Path

import pytest

from app.datasets.tagcomplete import Suggestion, TagIndex


@pytest.fixture
def index(tmp_path: Path) -> TagIndex:
    danbooru = tmp_path / "danbooru.csv"
    danbooru.write_text(
        "1girl,0,4114588,\"1girls,sole_female\"\n"
        "long_hair,0,2000000,\"longhair,long-hair\"\n"
        "hair_ornament,0,900000,\n"
        "black_hair,0,1500000,\n"
        "hat,0,700000,\"headwear\"\n"
        "hatsune_miku,4,300000,\"miku\"\n"
        "star_(symbol),0,50000,\n"
        "^_^,0,40000,\n"
        "chair,0,100000,\n",
        encoding="utf-8",
    )
    index = TagIndex()
    assert index.add_csv(danbooru) == 9
    return index


def test_prefix_matches_rank_by_count(index: TagIndex) -> None:
    assert [s.tag for s in index.suggest("ha", {})] == ["hair ornament", "hat", "hatsune miku", "long hair", "black hair", "chair"]


def test_prefix_before_word_start_before_substring(index: TagIndex) -> None:
    tags = [s.tag for s in index.suggest("hair", {})]
    assert tags == ["hair ornament", "long hair", "black hair", "chair"]


def test_dataset_tags_come_first_by_dataset_count(index: TagIndex) -> None:
    result = index.suggest("ha", {"hat": 3, "hair bow": 12, "smile": 40})
    assert result[:2] == [Suggestion("hair bow", 12, "dataset"), Suggestion("hat", 3, "dataset")]
    assert "hat" not in [s.tag for s in result[2:]]  # no duplicate of a dataset tag from the list


def test_alias_resolves_to_canonical_tag(index: TagIndex) -> None:
    [first, *_] = index.suggest("longh", {})
    assert first.tag == "long hair" and first.matched_alias == "longhair" and first.source == "danbooru"
    [miku] = index.suggest("miku", {})
    assert miku.tag == "hatsune miku" and miku.matched_alias == "miku" and miku.category == 4


def test_underscores_and_spaces_are_alike(index: TagIndex) -> None:
    assert index.suggest("long_ha", {})[0].tag == "long hair"
    assert index.suggest("LONG HA", {})[0].tag == "long hair"
    assert index.suggest("long ha", {}, spaces=False)[0].tag == "long_hair"
    assert index.suggest("star \\(", {})[0].tag == "star (symbol)"


def test_short_kaomoji_keep_underscores(index: TagIndex) -> None:
    assert index.suggest("^_", {})[0].tag == "^_^"


def test_limit_and_empty_query(index: TagIndex) -> None:
    assert len(index.suggest("h", {}, limit=2)) == 2
    assert index.suggest("  ", {"a": 1}) == []


def test_wd14_selected_tags_with_header(tmp_path: Path) -> None:
    wd14 = tmp_path / "selected_tags.csv"
    wd14.write_text(
        "tag_id,name,category,count\n"
        "9999999,general,9,807366\n"
        "470575,1girl,0,4114588\n"
        "212816,solo,0,3426446\n"
        "1383885,hatsune_miku,4,300000\n",
        encoding="utf-8",
    )
    index = TagIndex()
    assert index.add_csv(wd14) == 3  # the rating "general" is not a caption tag
    assert index.suggest("so", {}) == [Suggestion("solo", 3426446, "selected_tags", None, 0)]
    assert index.suggest("gen", {}) == []


def test_first_list_wins_for_duplicates(index: TagIndex, tmp_path: Path) -> None:
    other = tmp_path / "e621.csv"
    other.write_text("long_hair,0,5,\nfur,0,10,\n", encoding="utf-8")
    assert index.add_csv(other) == 1
    assert index.suggest("long", {})[0].source == "danbooru"
    assert index.suggest("fur", {})[0].source == "e621"


def test_large_list_prefix_and_substring(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as fh:
        for n in range(100_000):
            fh.write(f"tag_{n:06d}_word,0,{n},\n")
    index = TagIndex()
    assert index.add_csv(path) == 100_000
    result = index.suggest("tag_00001", {}, limit=3)
    assert [s.tag for s in result] == ["tag 000019 word", "tag 000018 word", "tag 000017 word"]
    result = index.suggest("9999", {}, limit=2)
    assert [s.tag for s in result] == ["tag 099999 word", "tag 099998 word"]
    assert [s.tag for s in index.suggest("wor", {}, limit=1)] == ["tag 099999 word"]


# --- configured lists: built once, in the background, shared by processes ---------------------

import os
import subprocess
import sys
import textwrap

from app.datasets.taglists import TagListCache


def write_list(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for n in range(rows):
            fh.write(f"tag_{n:06d},0,{rows - n},\n")
    return path


def test_cache_builds_in_the_background_and_never_blocks(tmp_path: Path) -> None:
    tags = write_list(tmp_path / "list.csv", 20_000)
    cache = TagListCache([tags], tmp_path / "cache")
    assert cache.index() is None  # answers at once; the build runs in a thread
    index = cache.wait(60)
    assert index is not None and len(index) == 20_000
    assert [s.tag for s in index.suggest("tag_00000", {}, limit=2)] == ["tag 000000", "tag 000001"]
    assert [p.suffix for p in (tmp_path / "cache").iterdir() if p.suffix == ".sqlite"] == [".sqlite"]
    # Another process (here: another cache object) opens the built file at once.
    again = TagListCache([tags], tmp_path / "cache").index()
    assert again is not None and again.suggest("tag_019999", {}, limit=1)[0].tag == "tag 019999"


def test_an_edited_list_builds_a_new_cache(tmp_path: Path) -> None:
    tags = write_list(tmp_path / "list.csv", 10)
    assert TagListCache([tags], tmp_path / "cache").wait(30).suggest("tag", {}, limit=1)[0].tag == "tag 000000"
    tags.write_text("fresh_tag,0,5,\n", encoding="utf-8")
    os.utime(tags, ns=(1, 2_000_000_000_000_000_000))
    assert TagListCache([tags], tmp_path / "cache").wait(30).suggest("fre", {})[0].tag == "fresh tag"


def test_two_processes_build_one_cache_once(tmp_path: Path) -> None:
    tags = write_list(tmp_path / "list.csv", 50_000)
    script = textwrap.dedent(f"""
        import logging, sys
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from app.datasets.taglists import TagListCache
        index = TagListCache([{str(tags)!r}], Path({str(tmp_path / "cache")!r})).wait(120)
        print("answer", index.suggest("tag_04999", {{}}, limit=1)[0].tag)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert all("answer tag 049990" in out for out in outputs), outputs
    assert sum(out.count("Tag list list.csv") for out in outputs) == 1  # built by one of them only

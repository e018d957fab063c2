import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, func, select

from app.canvas.tiles import (
    COUNT_BITS,
    NotFound,
    OutOfRange,
    StaleWrite,
    TileStore,
    canvas_history_head,
    canvas_revision,
    canvas_revision_tile,
    canvas_tile,
)
from app.metadata import metadata
from tests.canvas_helpers import noise

TILE = 64
TABLES = [canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile]


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    metadata.create_all(create_engine(url), tables=TABLES)
    return url


@pytest.fixture
def store(db_url, tmp_path):
    return TileStore(create_engine(db_url), tmp_path / "tiles", tile_size=TILE, levels=3)


def solid(width, height, rgba):
    return np.full((height, width, 4), rgba, np.uint8)


def write(store, x, y, pixels, base=None, **kwargs):
    return store.write_region(1, x, y, Image.fromarray(pixels), base_revision=base, description="test", **kwargs)


def read(store, x, y, width, height, canvas_id=1):
    return np.array(store.read_region(canvas_id, x, y, width, height))


def versions(store, level, canvas_id=1):
    return {(ref.tx, ref.ty): ref.version for ref in store.tiles_in(canvas_id, level, -99, -99, 99, 99)}


def files(root: Path):
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def normalised(pixels):
    """What the store keeps: transparent pixels as (0, 0, 0, 0)."""
    out = pixels.copy()
    out[out[..., 3] == 0] = 0
    return out


def reference_half(pixels):
    """2×2 box filter on premultiplied colour, rounded half up (the documented rule)."""
    p = pixels.astype(np.int64)
    alpha = p[..., 3]
    a = alpha[0::2, 0::2] + alpha[1::2, 0::2] + alpha[0::2, 1::2] + alpha[1::2, 1::2]
    premultiplied = p[..., :3] * alpha[..., None]
    c = premultiplied[0::2, 0::2] + premultiplied[1::2, 0::2] + premultiplied[0::2, 1::2] + premultiplied[1::2, 1::2]
    out = np.zeros(a.shape + (4,), np.uint8)
    out[..., 3] = (a + 2) // 4
    divisor = np.maximum(a, 1)[..., None]
    out[..., :3] = (c + divisor // 2) // divisor
    return normalised(out)


def level_version(newest, count):
    """A level tile's version: the newest level 0 version under it and how many level 0 tiles."""
    return newest << COUNT_BITS | count


def level_image(store, level, tx0, ty0, tx1, ty1):
    """Tiles of a level pasted side by side."""
    out = np.zeros(((ty1 - ty0) * TILE, (tx1 - tx0) * TILE, 4), np.uint8)
    for ref in store.tiles_in(1, level, tx0, ty0, tx1, ty1):
        with Image.open(store.tile_path(1, level, ref.tx, ref.ty, ref.version)) as tile:
            top, left = (ref.ty - ty0) * TILE, (ref.tx - tx0) * TILE
            out[top:top + TILE, left:left + TILE] = np.asarray(tile)
    return out


def test_round_trip_across_tile_borders_and_negative_coordinates(store):
    pixels = noise(150, 130, 1, alpha=255)
    assert write(store, -70, -40, pixels, base=0) == 1
    assert np.array_equal(read(store, -70, -40, 150, 130), pixels)
    around = read(store, -100, -100, 250, 250)
    assert np.array_equal(around[60:190, 30:180], pixels)
    around[60:190, 30:180] = 0
    assert not around.any()
    # x -70..79 and y -40..89 span tiles -2..1 by -1..1
    assert versions(store, 0) == {(tx, ty): 1 for tx in range(-2, 2) for ty in range(-1, 2)}


def test_transparent_pixels_are_kept_as_transparent_black(store):
    pixels = noise(100, 90, 2)
    pixels[::7, ::5, 3] = 0
    write(store, 10, -20, pixels)
    assert np.array_equal(read(store, 10, -20, 100, 90), normalised(pixels))


def test_only_touched_tiles_get_new_versions(store):
    write(store, 0, 0, noise(4 * TILE, 4 * TILE, 3, alpha=255))
    before = {level: versions(store, level) for level in range(4)}
    write(store, 70, 70, noise(10, 10, 4, alpha=255))
    after = {level: versions(store, level) for level in range(4)}
    assert after[0] == {**before[0], (1, 1): 2}
    # Only the ancestors of tile (1, 1) change: (0, 0) at every level.
    assert after[1] == {**before[1], (0, 0): level_version(2, 4)}
    assert before[1].keys() == {(0, 0), (1, 0), (0, 1), (1, 1)}
    assert after[2] == {(0, 0): level_version(2, 16)} and after[3] == {(0, 0): level_version(2, 16)}

    write(store, TILE - 1, 3 * TILE - 1, noise(2, 2, 5, alpha=255))
    changed = {key for key, version in versions(store, 0).items() if version == 3}
    assert changed == {(0, 2), (1, 2), (0, 3), (1, 3)}


def test_transparent_tiles_are_not_stored(store, tmp_path):
    pixels = noise(2 * TILE, TILE, 6, alpha=255)
    pixels[:, TILE:] = 0
    write(store, 0, 0, pixels)
    assert versions(store, 0) == {(0, 0): 1}
    assert not (tmp_path / "tiles/1/L0/1_0").exists()

    write(store, 0, 0, solid(TILE, TILE, (9, 9, 9, 0)))  # erase the tile
    assert all(versions(store, level) == {} for level in range(4))
    assert store.bounds(1) is None
    assert store.undo(1) == 1
    assert np.array_equal(read(store, 0, 0, 2 * TILE, TILE), pixels)


def test_masked_write_changes_only_masked_pixels(store):
    base = noise(2 * TILE, 2 * TILE, 7, alpha=255)
    write(store, 0, 0, base)
    mask = np.zeros((2 * TILE, 2 * TILE), np.uint8)
    mask[10:40, 10:40] = 255
    mask[40:50, 10:40] = 51
    new = noise(2 * TILE, 2 * TILE, 8, alpha=255)
    write(store, 0, 0, new, mask=Image.fromarray(mask))
    out = read(store, 0, 0, 2 * TILE, 2 * TILE)
    assert np.array_equal(out[mask == 0], base[mask == 0])
    assert np.array_equal(out[mask == 255], new[mask == 255])
    assert versions(store, 0) == {(0, 0): 2, (1, 0): 1, (0, 1): 1, (1, 1): 1}

    # weight 51/255 = 0.2 between two opaque colours
    write(store, 0, 0, solid(2 * TILE, 2 * TILE, (200, 0, 40, 255)))
    write(store, 0, 0, solid(2 * TILE, 2 * TILE, (0, 100, 240, 255)), mask=Image.fromarray(mask))
    assert read(store, 20, 45, 1, 1)[0, 0].tolist() == [160, 20, 80, 255]


def test_masked_blend_is_premultiplied_so_edges_do_not_darken(store):
    mask = np.full((4, 4), 128, np.uint8)
    write(store, 0, 0, solid(4, 4, (255, 0, 0, 255)), mask=Image.fromarray(mask))
    assert read(store, 0, 0, 1, 1)[0, 0].tolist() == [255, 0, 0, 128]


def test_over_mode_alpha_composites(store):
    write(store, 0, 0, solid(8, 8, (0, 0, 255, 255)))
    src = solid(8, 8, (255, 0, 0, 51))
    src[:, 4:, 3] = 0
    write(store, 0, 0, src, mode="over")
    out = read(store, 0, 0, 8, 8)
    assert out[0, 0].tolist() == [51, 0, 204, 255]
    assert np.array_equal(out[:, 4:], solid(4, 8, (0, 0, 255, 255)))


def test_undo_redo_restore_exact_pixels_and_persist(store, db_url, tmp_path):
    states, level_states = [read(store, -80, -80, 200, 200)], [versions(store, 1)]
    for seed in range(3):
        write(store, -80 + 30 * seed, -80, noise(120, 150, seed, alpha=200 + seed))
        states.append(read(store, -80, -80, 200, 200))
        level_states.append(versions(store, 1))
    assert store.undo(1) == 2
    assert np.array_equal(read(store, -80, -80, 200, 200), states[2])
    assert store.undo(1) == 1
    assert versions(store, 1) == level_states[1]

    reopened = TileStore(create_engine(db_url), tmp_path / "tiles", tile_size=TILE, levels=3)
    assert reopened.head(1) == 1 and reopened.can_undo(1) and reopened.can_redo(1)
    assert np.array_equal(read(reopened, -80, -80, 200, 200), states[1])
    assert reopened.redo(1) == 2 and reopened.redo(1) == 3
    assert reopened.redo(1) is None
    assert np.array_equal(read(reopened, -80, -80, 200, 200), states[3])
    assert versions(reopened, 1) == level_states[3]
    for head in (2, 1, 0):
        assert reopened.undo(1) == head
    assert reopened.undo(1) is None
    assert not read(reopened, -80, -80, 200, 200).any()
    assert versions(reopened, 0) == {} and versions(reopened, 3) == {}


def test_more_than_a_hundred_undo_steps_and_pruning(db_url, tmp_path):
    store = TileStore(create_engine(db_url), tmp_path / "tiles", tile_size=TILE, levels=1, keep_revisions=105)
    snapshots = {0: read(store, 0, 0, TILE, TILE)}
    for i in range(1, 111):
        write(store, i % TILE, i // TILE, solid(1, 1, (i, 255 - i, 7, 255)))
        snapshots[i] = read(store, 0, 0, TILE, TILE)
    assert len(store.history(1)) == 105
    for expected_head in range(109, 4, -1):
        assert store.undo(1) == expected_head
        assert np.array_equal(read(store, 0, 0, TILE, TILE), snapshots[expected_head])
    assert store.undo(1) is None and not store.can_undo(1)
    # The versions of pruned states are deleted: 5..110 remain.
    assert files(tmp_path / "tiles/1/L0/0_0") == {f"{v}.png" for v in range(5, 111)}


def test_new_change_after_undo_drops_redo_branch(store, tmp_path):
    write(store, 0, 0, solid(10, 10, (1, 2, 3, 255)))
    write(store, 5, 5, solid(10, 10, (4, 5, 6, 255)))
    assert (tmp_path / "tiles/1/L0/0_0/2.png").exists()
    store.undo(1)
    assert write(store, 20, 20, solid(3, 3, (7, 8, 9, 255))) == 3  # numbers are never reused
    assert [r.rev for r in store.history(1)] == [1, 3]
    assert not store.can_redo(1) and store.redo(1) is None
    with pytest.raises(NotFound):
        store.tile_path(1, 0, 0, 0, 2)
    assert not list((tmp_path / "tiles/1").rglob("2.png"))
    assert store.tile_path(1, 0, 0, 0, 3) == tmp_path / "tiles/1/L0/0_0/3.png"
    out = read(store, 0, 0, 30, 30)
    assert out[7, 7].tolist() == [1, 2, 3, 255] and out[12, 12].tolist() == [0, 0, 0, 0]
    assert out[21, 21].tolist() == [7, 8, 9, 255]


def test_levels_equal_a_reference_downsample(store):
    content = noise(300, 200, 9)
    content[:, :40, 3] = 255
    write(store, -100, -50, content)
    # Level n tiles cover TILE·2^n pixels; compare the area of tiles -1..0 at level 3.
    span = TILE * 8
    canvas = np.zeros((2 * span, 2 * span, 4), np.uint8)
    canvas[span - 50:span + 150, span - 100:span + 200] = normalised(content)
    expected = canvas
    for level in range(1, 4):
        expected = reference_half(expected)
        tiles_across = 2 * 2 ** (3 - level)
        got = level_image(store, level, -tiles_across // 2, -tiles_across // 2, tiles_across // 2, tiles_across // 2)
        assert np.array_equal(got, expected), f"level {level}"

    # Incrementally rebuilt after a second write, and still equal to the reference.
    patch = noise(20, 20, 10, alpha=255)
    write(store, 3, 3, patch)
    canvas[span + 3:span + 23, span + 3:span + 23] = patch
    expected = canvas
    for level in range(1, 4):
        expected = reference_half(expected)
        tiles_across = 2 * 2 ** (3 - level)
        got = level_image(store, level, -tiles_across // 2, -tiles_across // 2, tiles_across // 2, tiles_across // 2)
        assert np.array_equal(got, expected), f"level {level} after the second write"
        assert {key for key, v in versions(store, level).items() if v >> COUNT_BITS == 2} == {(0, 0)}


def test_level_tiles_keep_colour_next_to_transparency(store):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 255)
    write(store, 0, 0, pixels)
    assert level_image(store, 1, 0, 0, 1, 1)[0, 0].tolist() == [255, 0, 0, 64]


def test_stale_write_is_refused_and_writes_nothing(store, tmp_path):
    write(store, 0, 0, solid(20, 20, (1, 1, 1, 255)), base=0)
    before_files, before_pixels = files(tmp_path / "tiles"), read(store, 0, 0, 40, 40)
    with pytest.raises(StaleWrite, match="Someone else changed this part of the canvas"):
        write(store, 10, 10, solid(20, 20, (2, 2, 2, 255)), base=0)
    assert store.head(1) == 1 and len(store.history(1)) == 1
    assert files(tmp_path / "tiles") == before_files
    assert np.array_equal(read(store, 0, 0, 40, 40), before_pixels)

    # A part nobody changed since the base is fine, and so is the up-to-date base.
    assert write(store, 5 * TILE, 5 * TILE, solid(4, 4, (3, 3, 3, 255)), base=0) == 2
    assert write(store, 10, 10, solid(4, 4, (4, 4, 4, 255)), base=1) == 3
    # Someone who saw revision 3 is stale once it is undone, for the tile it changed only.
    store.undo(1)
    with pytest.raises(StaleWrite):
        write(store, 0, 0, solid(20, 20, (5, 5, 5, 255)), base=3)
    assert write(store, 2 * TILE, 0, solid(4, 4, (6, 6, 6, 255)), base=3) == 4
    # Revision 3 has now been dropped from the redo branch: what it showed is unknown.
    with pytest.raises(StaleWrite):
        write(store, 9 * TILE, 9 * TILE, solid(4, 4, (7, 7, 7, 255)), base=3)


def test_bounds_are_tight(store):
    assert store.bounds(1) is None
    write(store, -5, 7, solid(3, 2, (1, 2, 3, 255)))
    assert store.bounds(1) == (-5, 7, -2, 9)
    framed = np.zeros((50, 60, 4), np.uint8)
    framed[10:12, 20:21] = (9, 9, 9, 1)
    write(store, 90, -60, framed)
    assert store.bounds(1) == (-5, -50, 111, 9)


def test_atomic_writes_leave_no_temporary_files(store, tmp_path, monkeypatch):
    for seed in range(3):
        write(store, seed * 50, 0, noise(100, 100, seed, alpha=255))
    assert not [p for p in (tmp_path / "tiles").rglob("*") if p.name.endswith(".tmp")]
    before_files, head = files(tmp_path / "tiles"), store.head(1)

    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write(store, 0, 0, noise(3 * TILE, 2 * TILE, 9, alpha=255))
    monkeypatch.undo()
    assert len(calls) == 6  # the six tiles are written side by side: the others ran, one failed
    assert files(tmp_path / "tiles") == before_files  # and every one written was removed again
    assert store.head(1) == head and len(store.history(1)) == head
    assert write(store, 0, 0, solid(1, 1, (1, 1, 1, 255))) == head + 1


def test_read_region_of_sparse_canvas_reads_only_the_tiles_it_needs(store):
    for tx, ty in [(0, 0), (100, 0), (-50, 80), (3, 3)]:
        write(store, tx * TILE + 5, ty * TILE + 5, solid(4, 4, (tx % 256, 1, 1, 255)))
    store.tile_reads = 0
    region = read(store, -TILE, -TILE, 3 * TILE, 3 * TILE)
    assert store.tile_reads == 1
    assert region[TILE + 5, TILE + 5].tolist() == [0, 1, 1, 255]
    store.tile_reads = 0
    bands = list(store.iter_rows(1, -2 * TILE, 0, 200 * TILE, 4 * TILE))
    assert store.tile_reads == 3 and [len(b) for b in bands] == [TILE] * 4


def test_out_of_range_is_refused(store):
    limit = 2**20 * TILE
    with pytest.raises(OutOfRange, match="too far out"):
        write(store, limit + TILE, 0, solid(1, 1, (1, 1, 1, 255)))
    with pytest.raises(OutOfRange):
        write(store, 0, -limit - 1, solid(1, 1, (1, 1, 1, 255)))
    write(store, -limit, limit + TILE - 1, solid(1, 1, (1, 1, 1, 255)))
    assert store.bounds(1) == (-limit, limit + TILE - 1, -limit + 1, limit + TILE)


def test_delete_canvas_removes_its_rows_and_files(store, tmp_path):
    write(store, 0, 0, solid(5, 5, (1, 1, 1, 255)))
    store.write_region(2, 0, 0, Image.fromarray(solid(5, 5, (2, 2, 2, 255))), base_revision=None, description="x")
    store.delete_canvas(1)
    assert not (tmp_path / "tiles/1").exists() and (tmp_path / "tiles/2").exists()
    with store.engine.connect() as conn:
        for table in TABLES:
            assert conn.execute(select(func.count()).where(table.c.canvas_id == 1)).scalar() == 0
            assert conn.execute(select(func.count()).where(table.c.canvas_id == 2)).scalar() > 0
    assert store.head(1) == 0 and not read(store, 0, 0, 5, 5).any()
    assert read(store, 0, 0, 1, 1, canvas_id=2)[0, 0].tolist() == [2, 2, 2, 255]


def test_history_describes_each_revision(store):
    store.write_region(1, 0, 0, Image.fromarray(solid(2 * TILE, 10, (1, 1, 1, 255))), base_revision=0,
                       description="Import photo.png")
    store.clear(1, base_revision=1)
    store.write_region(1, 0, 0, Image.fromarray(solid(10, 10, (1, 1, 1, 255))), base_revision=2,
                       description="Inpaint: a cat")
    store.undo(1)
    history = store.history(1)
    assert [(r.rev, r.description, r.tiles_changed, r.applied) for r in history] == [
        (1, "Import photo.png", 2, True),
        (2, "Clear canvas", 2, True),
        (3, "Inpaint: a cat", 1, False),
    ]
    assert versions(store, 0) == {}
    assert store.write_region(1, 0, 0, Image.fromarray(solid(10, 10, (0, 0, 0, 0))), base_revision=2,
                              description="no change") == 2


def test_concurrent_writers_to_different_tiles_all_land(store):
    errors = []

    def painter(tx, shade):
        try:
            for i in range(12):
                write(store, tx * TILE, 0, solid(TILE, TILE, (shade, i, 0, 255)), base=store.head(1))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=painter, args=(tx, 10 * tx)) for tx in (0, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [r.rev for r in store.history(1)] == list(range(1, 25))
    assert read(store, 0, 0, 1, 1)[0, 0].tolist() == [0, 11, 0, 255]
    assert read(store, 3 * TILE, 0, 1, 1)[0, 0].tolist() == [30, 11, 0, 255]


def test_undo_returns_to_level_tiles_already_built(store, tmp_path):
    write(store, 0, 0, solid(2 * TILE, 2 * TILE, (255, 255, 255, 255)))
    first = versions(store, 1)
    write(store, 5, 5, solid(20, 20, (0, 0, 255, 255)))
    assert versions(store, 1) != first
    store.undo(1)
    assert versions(store, 1) == first
    reads = store.tile_reads
    assert np.array_equal(level_image(store, 1, 0, 0, 1, 1), solid(TILE, TILE, (255, 255, 255, 255)))
    assert store.tile_reads == reads  # its file was still there: nothing was built again


def test_level_tiles_of_a_dropped_redo_branch_are_not_shown_again(store):
    """Two different states can leave the same tiles with the same newest version (erasing one tile, or
    another): a dropped branch's level tiles must not stand in for the new branch's."""
    write(store, 0, 0, solid(2 * TILE, TILE, (200, 0, 0, 255)))  # tiles (0, 0) and (1, 0), version 1
    write(store, 0, 0, solid(TILE, TILE, (0, 0, 0, 0)))  # erase (0, 0): (1, 0) is left
    erased_left = level_image(store, 1, 0, 0, 1, 1).copy()
    store.undo(1)
    write(store, TILE, 0, solid(TILE, TILE, (0, 0, 0, 0)))  # erase (1, 0) instead: (0, 0) is left
    assert versions(store, 1)[(0, 0)] == level_version(1, 1)  # the dropped state's version too
    expected = reference_half(read(store, 0, 0, 2 * TILE, 2 * TILE))
    got = level_image(store, 1, 0, 0, 1, 1)
    assert np.array_equal(got, expected) and not np.array_equal(got, erased_left)


def test_levels_built_in_the_background_match_and_missing_ones_are_built_on_demand(db_url, tmp_path):
    store = TileStore(create_engine(db_url), tmp_path / "bg", tile_size=TILE, levels=3, build_levels="background")
    content = noise(3 * TILE, 2 * TILE, 11, alpha=255)
    write(store, 0, 0, content)
    store.wait_for_levels()
    assert len(files(tmp_path / "bg/1")) == 6 + 2 + 1 + 1  # 6 level 0 tiles, then 2, 1, 1 above them
    canvas = np.zeros((8 * TILE, 8 * TILE, 4), np.uint8)
    canvas[:2 * TILE, :3 * TILE] = content
    for path in (tmp_path / "bg/1").glob("L[123]/*/*.png"):
        path.unlink()  # lost (or never built): tile_path builds the current version again
    store._cache.clear()
    expected = canvas
    for level in (1, 2, 3):
        expected = reference_half(expected)
        size = 8 // 2 ** level
        assert np.array_equal(level_image(store, level, 0, 0, size, size), expected[:size * TILE, :size * TILE])
    [ref] = store.tiles_in(1, 3, 0, 0, 1, 1)
    with pytest.raises(NotFound):
        store.tile_path(1, 3, 0, 0, ref.version + 1)


def test_a_write_planned_before_a_concurrent_change_is_planned_again(store, db_url, tmp_path, monkeypatch):
    write(store, 0, 0, solid(TILE, TILE, (9, 9, 9, 255)))
    other = TileStore(create_engine(db_url), tmp_path / "tiles", tile_size=TILE, levels=3)
    plan_write, raced = store._plan_write, []

    def plan_then_race(*args):
        plan = plan_write(*args)
        if not raced:  # the other writer commits between this plan and taking the lock
            raced.append(other.write_region(1, 40, 40, Image.fromarray(solid(4, 4, (0, 0, 255, 255))),
                                            base_revision=None, description="other"))
        return plan

    monkeypatch.setattr(store, "_plan_write", plan_then_race)
    assert write(store, 0, 0, solid(4, 4, (255, 0, 0, 255))) == 3
    out = read(store, 0, 0, TILE, TILE)
    assert out[0, 0].tolist() == [255, 0, 0, 255] and out[41, 41].tolist() == [0, 0, 255, 255]
    assert np.array_equal(level_image(store, 1, 0, 0, 1, 1)[:TILE // 2, :TILE // 2], reference_half(out))
    store.undo(1)
    assert read(store, 0, 0, 1, 1)[0, 0].tolist() == [9, 9, 9, 255]
    assert read(store, 41, 41, 1, 1)[0, 0].tolist() == [0, 0, 255, 255]


def test_write_bands_equals_write_region_and_is_one_revision(store, tmp_path):
    write(store, 10, 10, noise(150, 90, 12))
    picture = noise(170, 230, 13)
    asked = []

    def open_rows():
        def rows(top, bottom):
            asked.append((top, bottom))
            return picture[top:bottom]
        return rows

    other = TileStore(store.engine, tmp_path / "other", tile_size=TILE, levels=3)
    expected_store = TileStore(create_engine(f"sqlite:///{tmp_path}/e.db"), tmp_path / "e", tile_size=TILE, levels=3)
    metadata.create_all(expected_store.engine, tables=TABLES)
    write(expected_store, 10, 10, noise(150, 90, 12))
    write(expected_store, -37, -5, picture, mode="over")
    rev = store.write_bands(1, -37, -5, 170, 230, open_rows, base_revision=1, description="bands", mode="over")
    assert rev == 2 and [r.rev for r in store.history(1)] == [1, 2]
    assert np.array_equal(read(store, -64, -64, 300, 320), read(expected_store, -64, -64, 300, 320))
    # One tile row at a time, top to bottom, never more than a tile's height.
    assert asked[0][0] == 0 and all(b - a <= TILE for a, b in asked)
    assert all(asked[i][1] == asked[i + 1][0] for i in range(len(asked) - 1)) and asked[-1][1] == 230
    assert not list((tmp_path / "tiles").rglob(".pending-*"))
    store.undo(1)
    assert np.array_equal(read(store, -64, -64, 300, 320)[74:164, 74:224], normalised(noise(150, 90, 12)))
    assert other.head(1) == 1

"""The bounded on-disk image cache, on a real temporary folder."""

import os

from core.fetch.image_cache import ImageCache
from tests.threads import run_together

ENTRY = 1000  # bytes per test entry


def filled(folder, count, max_bytes):
    """A cache holding `count` entries u0..u(count-1), last used in that order (1 s apart)."""
    cache = ImageCache(folder, max_bytes)
    for i in range(count):
        cache.write(f"u{i}", bytes([i]) * ENTRY)
        os.utime(cache.path_for(f"u{i}"), (1_000_000 + i, 1_000_000 + i))
    return cache


def kept(cache, count):
    return [i for i in range(count) if cache.path_for(f"u{i}").exists()]


def test_entries_round_trip_and_a_missing_one_is_none(tmp_path):
    cache = ImageCache(tmp_path, 10 * ENTRY)
    cache.write("http://shop.test/a.jpg", b"jpeg bytes")
    assert cache.read("http://shop.test/a.jpg") == b"jpeg bytes"
    assert cache.read("http://shop.test/b.jpg") is None
    cache.discard("http://shop.test/a.jpg")
    assert cache.read("http://shop.test/a.jpg") is None


def test_going_over_the_bound_removes_the_least_recently_used_down_to_90_percent(tmp_path):
    cache = filled(tmp_path, 10, 10 * ENTRY)
    assert kept(cache, 10) == list(range(10))  # exactly at the bound: nothing removed
    cache.write("u10", b"x" * ENTRY)
    assert kept(cache, 10) == list(range(2, 10))  # 11 entries -> 9 (90 %)
    assert cache.size_bytes() == 9 * ENTRY


def test_reading_an_entry_keeps_it(tmp_path):
    cache = filled(tmp_path, 10, 10 * ENTRY)
    assert cache.read("u0") == bytes([0]) * ENTRY  # now the most recently used
    cache.write("u10", b"x" * ENTRY)
    assert kept(cache, 10) == [0, *range(3, 10)]


def test_a_new_process_counts_what_an_earlier_one_left(tmp_path):
    filled(tmp_path, 10, 10 * ENTRY)
    later = ImageCache(tmp_path, 10 * ENTRY)  # knows nothing yet about the 10 entries
    later.write("u10", b"x" * ENTRY)
    assert later.size_bytes() <= 9 * ENTRY
    assert later.path_for("u10").exists()


def test_a_smaller_bound_prunes_at_the_next_write(tmp_path):
    filled(tmp_path, 10, 10 * ENTRY)
    smaller = ImageCache(tmp_path, 4 * ENTRY)
    smaller.write("u10", b"x" * ENTRY)
    assert smaller.size_bytes() <= int(4 * ENTRY * 0.9)


def test_a_file_larger_than_the_whole_bound_is_not_kept(tmp_path):
    cache = ImageCache(tmp_path, ENTRY)
    cache.write("big", b"x" * (ENTRY + 1))
    assert cache.read("big") is None and cache.size_bytes() == 0


def test_a_file_where_the_folder_should_be_only_means_no_entry(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    cache = ImageCache(blocker, 10 * ENTRY)
    cache.write("u0", b"x" * ENTRY)
    assert cache.read("u0") is None and cache.size_bytes() == 0


def test_many_threads_writing_at_once_stay_within_the_bound(tmp_path):
    cache = ImageCache(tmp_path, 20 * ENTRY)

    def write(worker):
        for i in range(40):
            cache.write(f"w{worker}-{i}", b"x" * ENTRY)

    assert run_together(write, range(8)) == []
    cache.prune()  # a write that raced a running prune may leave the folder just over
    assert 0 < cache.size_bytes() <= 20 * ENTRY
    assert not list(tmp_path.rglob("*.part"))

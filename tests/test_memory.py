import sys

import pytest

from core.bulk.memory import limit_allocator_retention, release_free_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_allocator_settings_apply_and_are_idempotent():
    assert limit_allocator_retention() is True
    assert limit_allocator_retention() is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_free_memory_goes_back_to_the_system():
    def rss_kb() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    blocks = [bytearray(b"x" * 100_000) for _ in range(2000)]  # 200 MB of heap (below mmap)
    kept = blocks[1::2]  # every other block stays: the freed holes cannot shrink the heap
    del blocks
    before = rss_kb()
    assert release_free_memory() is True
    assert before - rss_kb() > 50_000  # most of the ~100 MB of holes went back
    assert len(kept) == 1000

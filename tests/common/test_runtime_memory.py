"""The runtime's hold on glibc's heap: freed memory goes back to the system (what the hostile suite's burst of peers
showed staying in every service's RSS)."""

import os

import pytest

from common import runtime


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not runtime.return_large_blocks(), reason="not glibc")
def test_free_pages_inside_a_fragmented_heap_are_given_back():
    # 40 MB in 40 KB blocks (heap, under the mmap threshold), each followed by a 1 KB block kept (malloc's too, not
    # Python's small-object arenas): once the large ones are freed the heap cannot shrink from its top (measured:
    # 2.4 of 40 MB given back by free alone), malloc_trim gives their pages back
    kept, large = [], []
    for i in range(1000):
        large.append(bytes(40_000) + i.to_bytes(4, "little"))
        kept.append(bytes(1000) + i.to_bytes(4, "little"))
    peak = rss()
    free_before = runtime.heap_free_bytes()
    del large
    freed = rss()
    assert runtime.heap_free_bytes() - free_before > 30 * 2**20  # what a heartbeat looks at before it trims
    assert runtime.give_back_free_pages()
    after = rss()
    assert freed - after > 30 * 2**20, (peak, freed, after)
    assert len(kept) == 1000

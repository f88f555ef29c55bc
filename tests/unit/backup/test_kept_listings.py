"""The listings a daemon keeps between backups: taken only for the tree they were encoded from, and held
within their byte bound."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.backup.keptlistings import KeptListings
from cbr_agent.repository.tree import encode_listing


def listing(n: int, size: int = 100):
    return encode_listing([{"name": f"f{i:05d}", "type": "file", "size": i, "content": ["ab" * 32],
                            "pad": "x" * size} for i in range(n)])


def test_a_listing_is_given_only_for_the_tree_it_was_stored_with() -> None:
    kept = KeptListings()
    a = listing(3)
    kept.put("/d", "11" * 32, a)
    assert kept.get("/d", "11" * 32) is a
    assert kept.get("/d", "22" * 32) is None, "another tree of the same directory"
    assert kept.get("/e", "11" * 32) is None, "another directory"
    b = listing(4)
    kept.put("/d", "22" * 32, b)  # the directory's newer listing replaces the older
    assert kept.get("/d", "11" * 32) is None and kept.get("/d", "22" * 32) is b
    assert len(kept) == 1


def four_fit() -> KeptListings:
    one = listing(10)
    kept = KeptListings(max_bytes=4 * (sum(map(len, one.datas)) + 100 * 10))
    kept.begin()
    return kept


def held(kept: KeptListings, ids: range) -> list[bool]:
    return [kept.get(f"/d{i}", f"{i:02d}" * 32) is not None for i in ids]


def test_when_full_the_last_backups_listings_stay_and_a_new_one_is_not_kept() -> None:
    """Dropping the oldest instead would let a backup that edits more than fits push out every listing of
    the backup before it before its walk reaches them: no hit at all."""
    kept = four_fit()
    for i in range(6):
        kept.put(f"/d{i}", f"{i:02d}" * 32, listing(10))
    assert held(kept, range(6)) == [True] * 4 + [False] * 2
    assert kept.bytes <= kept.max_bytes
    kept.begin()  # the next backup: the first backup's listings are the ones it may take
    kept.put("/d6", "06" * 32, listing(10))
    assert held(kept, range(7)) == [True] * 4 + [False] * 3


def test_listings_neither_stored_nor_taken_by_the_last_two_backups_make_room() -> None:
    kept = four_fit()
    for i in range(4):
        kept.put(f"/d{i}", f"{i:02d}" * 32, listing(10))
    kept.begin()
    assert kept.get("/d1", "01" * 32) is not None  # taken by the second backup: kept on
    kept.put("/d2", "22" * 32, listing(10))        # stored again by it
    kept.begin()
    kept.put("/d4", "04" * 32, listing(10))
    kept.put("/d5", "05" * 32, listing(10))
    kept.put("/d6", "06" * 32, listing(10))
    assert held(kept, range(7)) == [False, True, False, False, True, True, False]
    assert kept.get("/d2", "22" * 32) is not None
    assert kept.bytes <= kept.max_bytes


def test_a_listing_larger_than_a_quarter_of_the_bound_is_not_kept() -> None:
    small, large = listing(2), listing(200)
    kept = KeptListings(max_bytes=4 * (sum(map(len, small.datas)) + 200) + 1)
    kept.put("/small", "aa" * 32, small)
    kept.put("/large", "bb" * 32, large)
    assert kept.get("/large", "bb" * 32) is None
    assert kept.get("/small", "aa" * 32) is small, "the small one was not pushed out"
    kept.put("/small", "cc" * 32, large)  # nor does a large listing leave the older one behind
    assert kept.get("/small", "aa" * 32) is None and len(kept) == 0 and kept.bytes == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 30)), max_size=60))
def test_bytes_are_the_sum_of_what_is_held(puts) -> None:
    kept = KeptListings(max_bytes=20_000)
    for k, (path, n) in enumerate(puts):
        if k % 7 == 0:
            kept.begin()
        kept.put(f"/{path}", f"{n:02d}" * 32, listing(n, size=50))
        assert kept.bytes == sum(c for _t, _l, c, _b in kept._items.values()) <= kept.max_bytes


def test_threads_storing_at_once_keep_it_consistent() -> None:
    kept = KeptListings(max_bytes=200_000)
    lst = listing(5)

    def store(k: int) -> None:
        for i in range(300):
            kept.put(f"/{k}/{i % 40}", f"{i:064x}", lst)

    threads = [threading.Thread(target=store, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kept.bytes == sum(c for _t, _l, c, _b in kept._items.values()) <= kept.max_bytes

"""Listings a daemon keeps between backups: the directories a journal-led backup edited.

A journal-led backup writes no files cache row for a directory whose named entries it looked at (its
listing is spliced from the previous one, with no fingerprint of the whole directory), so the next
backup that finds the same directory changed again had to read, decrypt and decode its tree blob from the
parent snapshot and encode every node again: on the 200,000-file benchmark tree, a second 1 % change
took about twice as long as the first. The daemon keeps those listings here instead, in memory, each
under the id of the tree encoded from it. The id is the hash of the listing's own bytes, so a listing is
taken only for the very tree the parent snapshot holds: a backup that failed, or a listing of another
repository, is never taken for anything but what it is.

Bounded by the bytes of the nodes it holds (least recently stored out first), and no listing larger than
a quarter of that is kept (one huge directory does not push out hundreds of small ones): a daemon whose
backups edit more than that just reads some trees again, as before. Measured on the benchmark's tiny
tree, a change of the same 200 directories (50 files or fewer each) at every backup took 0.03-0.05 s
with the listings kept against 0.05-0.08 s without; its worst case, 1 % of the 200,000 files changed at
random, edits 2,317 directories holding 140,350 entries (74 MiB as listings), a third of which fits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cbr_agent.repository.tree import EncodedListing

#: the nodes' bytes the listings may hold (about 1.5 times that in memory, with the columns)
MAX_BYTES = 16 * 1024 * 1024
#: what a listing costs beside its nodes' bytes, per entry (its columns' items), for the bound
_ENTRY_OVERHEAD = 100


class KeptListings:
    """Thread-safe ``path -> (tree id, listing)``; a listing given away is never changed afterwards (the
    walker edits copies of it)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, EncodedListing, int]] = OrderedDict()
        self._bytes = 0

    def put(self, path: str, tree_id: str, listing: EncodedListing) -> None:
        cost = sum(map(len, listing.datas)) + _ENTRY_OVERHEAD * len(listing.names)
        with self._lock:
            self._drop(path)
            if cost > self.max_bytes // 4:
                return
            self._items[path] = (tree_id, listing, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def get(self, path: str, tree_id: str) -> EncodedListing | None:
        """The listing of ``path`` if it is the one ``tree_id`` was encoded from."""
        with self._lock:
            item = self._items.get(path)
        return item[1] if item is not None and item[0] == tree_id else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, path: str) -> None:
        item = self._items.pop(path, None)
        if item is not None:
            self._bytes -= item[2]

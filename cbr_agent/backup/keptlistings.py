"""Listings a daemon keeps between backups: the directories a journal-led backup edited.

A journal-led backup writes no files cache row for a directory whose named entries it looked at (its
listing is spliced from the previous one, with no fingerprint of the whole directory), so the next
backup that finds the same directory changed again had to read, decrypt and decode its tree blob from the
parent snapshot and encode every node again: on the 200,000-file benchmark tree, a second 1 % change
took about twice as long as the first. The daemon keeps those listings here instead, in memory, each
under the id of the tree encoded from it. The id is the hash of the listing's own bytes, so a listing is
taken only for the very tree the parent snapshot holds: a backup that failed, or a listing of another
repository, is never taken for anything but what it is.

Bounded by the bytes of the nodes it holds, and no listing larger than a quarter of that is kept (one huge
directory does not push out hundreds of small ones). When a listing does not fit, those neither stored nor
taken by the last two backups go first; if that is not enough it is not kept. Dropping the least recently
stored instead gave no hit at all once the directories a backup edits hold more than the bound: each
backup's new listings pushed out the previous backup's before the walk reached them. So a daemon whose
backups edit more than the bound keeps a stable part of them, and reads the other trees again, as before.

Measured in-process on the benchmark's tiny tree (200,000 files), backups led by complete journal names:
the same 200 directories (50 files or fewer each) changed at every backup read 4 trees from the
repository instead of 205, in 0.038-0.055 s against 0.053-0.076 s; 1 % of the files changed at random
(2,317 directories edited, holding 140,350 entries: 74 MiB as listings, 48 MiB by this bound's count)
read 1,066-1,160 trees instead of 2,165-2,316, in 0.88-1.41 s against 1.32-1.74 s.
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
    walker edits copies of it). :meth:`begin` at the start of each backup."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: path -> (tree id, listing, cost, the backup that last stored or took it), oldest first
        self._items: OrderedDict[str, tuple[str, EncodedListing, int, int]] = OrderedDict()
        self._bytes = 0
        self._backup = 0

    def begin(self) -> None:
        """A backup starts: what the one before stored may be taken now, so it is not pushed out."""
        with self._lock:
            self._backup += 1

    def put(self, path: str, tree_id: str, listing: EncodedListing) -> None:
        cost = sum(map(len, listing.datas)) + _ENTRY_OVERHEAD * len(listing.names)
        with self._lock:
            self._drop(path)
            if cost > self.max_bytes // 4:
                return
            while self._bytes + cost > self.max_bytes:
                oldest = next(iter(self._items.values()), None)
                if oldest is None or oldest[3] >= self._backup - 1:
                    return  # all of them are the last backup's or this one's: this one is not kept
                self._drop(next(iter(self._items)))
            self._items[path] = (tree_id, listing, cost, self._backup)
            self._bytes += cost

    def get(self, path: str, tree_id: str) -> EncodedListing | None:
        """The listing of ``path`` if it is the one ``tree_id`` was encoded from."""
        with self._lock:
            item = self._items.get(path)
            if item is None or item[0] != tree_id:
                return None
            self._items[path] = (*item[:3], self._backup)
            self._items.move_to_end(path)
            return item[1]

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, path: str) -> None:
        item = self._items.pop(path, None)
        if item is not None:
            self._bytes -= item[2]

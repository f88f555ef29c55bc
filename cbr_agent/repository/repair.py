"""repair: make a damaged repository usable again with the tool, never silently.

``rebuild_index`` rebuilds the index from the pack headers (each pack's header lists its blobs), for when
index files are gone or damaged. It only reads packs. The new index files are written (fsynced, renamed)
before any old one is removed, so a crash at any moment leaves an index at least as complete as before.

``repair_snapshots`` removes snapshots that cannot be read and rewrites snapshots whose trees are partly
readable: damaged or missing directory listings and files with missing (or, with ``read_data``, damaged)
data are left out, the rest is kept, and the new snapshot records what was removed. New trees are flushed
(packs, then index) before the new snapshot is saved, and the old snapshot is removed last.

Both need the exclusive lock (the caller takes it). Every action is returned in the report; nothing is
decided quietly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cbr_agent.errors import IntegrityError, RepositoryError
from cbr_agent.repository.index import INDEX_MAX_FILE_ENTRIES
from cbr_agent.repository.pack import PackEntry
from cbr_agent.repository.snapshot import Snapshot
from cbr_agent.repository.tree import TOTALS, decode_tree, encode_tree

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository
    from cbr_agent.repository.writer import BlobWriter

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")
#: how many removed paths a repaired snapshot lists in its summary (the count is always there)
NOTE_MAX_PATHS = 100
REPAIRED_TAG = "repaired"


# ---------------------------------------------------------------------------------------------- index
@dataclass
class IndexRepairReport:
    packs: int = 0  # pack files found
    packs_indexed: int = 0  # packs the new index covers
    blobs: int = 0  # entries of the new index
    index_files_written: int = 0
    index_files_deleted: int = 0
    actions: list[str] = field(default_factory=list)  # what was done, one line each
    warnings: list[str] = field(default_factory=list)  # what could not be recovered, one line each

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rebuild_index(repo: Repository, *, progress: Callable[[str], None] | None = None) -> IndexRepairReport:
    """Rebuild the index from the headers of every pack; see the module docstring."""
    report = IndexRepairReport()
    repo.load_index()
    old_files = set(repo.index_files) | set(repo.damaged_index_files)
    old = repo.index.by_pack()
    sizes = dict(repo.backend.list("data"))
    report.packs = len(sizes)
    new: dict[str, list[PackEntry]] = {}
    for n, pack_id in enumerate(sorted(sizes), 1):
        if progress is not None and n % 100 == 0:
            progress(f"read {n} of {len(sizes)} pack headers")
        if len(pack_id) != 64 or not _HEX.issuperset(pack_id):
            report.warnings.append(f"data/{pack_id[:2]}/{pack_id} is not a pack (bad name); left alone")
            continue
        entries = _pack_entries(repo, pack_id, sizes[pack_id], old.get(pack_id), report)
        if entries:
            new[pack_id] = entries
    gone = sorted(old.keys() - sizes.keys())
    if gone:
        lost = sum(len(old[p]) for p in gone)
        report.warnings.append(
            f"the old index named {len(gone)} packs that do not exist (e.g. {gone[0]}); their {lost} "
            "entries were dropped ('cbr-agent check' names the snapshots that used them)"
        )
    written = _write_index(repo, new)
    report.index_files_written = len(written)
    report.packs_indexed = len(new)
    report.blobs = sum(len(e) for e in new.values())
    report.actions.append(
        f"wrote {len(written)} index files for {report.blobs} blobs in {len(new)} packs"
    )
    for name in sorted(old_files - set(written)):  # only now: the new index is durable
        repo.backend.delete("index/" + name)
        report.index_files_deleted += 1
    if report.index_files_deleted:
        report.actions.append(f"removed {report.index_files_deleted} old index files")
    repo.load_index()
    return report


def _pack_entries(
    repo: Repository, pack_id: str, size: int, old: list[PackEntry] | None, report: IndexRepairReport
) -> list[PackEntry] | None:
    """The entries of a pack's header, or (when the header cannot be read) those of the old index."""
    try:
        return repo.read_pack_header(pack_id, size)
    except FileNotFoundError:
        report.warnings.append(f"pack {pack_id} vanished while the index was rebuilt")
        return None
    except IntegrityError as exc:
        reason = str(getattr(exc, "message", exc))
    if old:
        report.warnings.append(f"{reason}; kept the {len(old)} entries the old index had for it")
        return old
    report.warnings.append(
        f"{reason}; its blobs cannot be indexed (no old index entries for it): snapshots that need them "
        "stay damaged ('cbr-agent check' names them, 'cbr-agent repair snapshots' repairs them)"
    )
    return None


def _write_index(repo: Repository, packs: dict[str, list[PackEntry]]) -> list[str]:
    written: list[str] = []
    batch: dict[str, list[PackEntry]] = {}
    count = 0
    for pack_id, entries in packs.items():
        batch[pack_id] = entries
        count += len(entries)
        if count >= INDEX_MAX_FILE_ENTRIES:
            written.append(repo.write_index_file(batch))
            batch, count = {}, 0
    if batch:
        written.append(repo.write_index_file(batch))
    return written


# ---------------------------------------------------------------------------------------------- snapshots
@dataclass
class SnapshotAction:
    snapshot: str  # the id of the damaged snapshot
    action: str  # "remove" or "rewrite"
    reason: str
    removed: list[str] = field(default_factory=list)  # what a rewrite leaves out, "path: why"
    new_id: str | None = None  # the rewritten snapshot (None in a dry run or for a removal)

    def __str__(self) -> str:
        if self.action == "remove":
            return f"snapshot {self.snapshot}: {self.reason}: removed"
        new = f" as {self.new_id}" if self.new_id else ""
        return f"snapshot {self.snapshot}: rewritten{new} without {len(self.removed)} damaged entries"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SnapshotRepairReport:
    snapshots: int = 0
    dry_run: bool = False
    actions: list[SnapshotAction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # snapshots left alone: not readable for other reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "dry_run": self.dry_run,
            "actions": [a.to_dict() for a in self.actions],
            "errors": list(self.errors),
        }


#: a repaired tree: (new hex id or None when unreadable, removed entries "rel/path: why", why unreadable)
_Repaired = tuple[str | None, list[str], str]


class _TreeRepairer:
    """Rewrites trees bottom-up, each distinct tree once (snapshots share most of their trees)."""

    def __init__(self, repo: Repository, *, read_data: bool, dry_run: bool) -> None:
        self.repo = repo
        self.read_data = read_data
        self.dry_run = dry_run
        self.present = {name for name, _size in repo.backend.list("data")}
        self.done: dict[str, _Repaired] = {}
        self.blob_ok: dict[str, str | None] = {}  # blob hex -> why it is unusable, or None
        self.writer: BlobWriter | None = None
        self._unindexed: set[bytes] | None = None

    def _missing(self, blob_id: bytes) -> str:
        """Why a blob the index lacks is "missing", after making sure no unindexed pack holds it: with an
        incomplete index, repairing snapshots would throw away data that is only unindexed."""
        if self._unindexed is None:
            self._unindexed = set()
            indexed = self.repo.index.packs()
            for pack_id, size in self.repo.backend.list("data"):
                if pack_id not in indexed:
                    with contextlib.suppress(IntegrityError, FileNotFoundError, ValueError):
                        self._unindexed.update(e.blob_id for e in self.repo.read_pack_header(pack_id, size))
        if blob_id in self._unindexed:
            raise RepositoryError(
                f"blob {blob_id.hex()} is in a pack that no index names: the index is incomplete, so "
                "nothing was changed",
                hint="run 'cbr-agent repair index' first, then 'cbr-agent repair snapshots' again",
            )
        return "is missing"

    def repair(self, root: str) -> _Repaired:
        # iterative post-order: directory depth is not bounded by Python's recursion limit
        pending: dict[str, list[dict[str, Any]]] = {}
        stack = [(root, False)]
        while stack:
            tree_hex, expanded = stack.pop()
            if tree_hex in self.done:
                continue
            if expanded:
                self.done[tree_hex] = self._rebuild(tree_hex, pending.pop(tree_hex))
                continue
            if tree_hex in pending:  # a cycle (impossible with content addressing): treat as damaged
                continue
            nodes, why = self._load(tree_hex)
            if nodes is None:
                self.done[tree_hex] = (None, [], why)
                continue
            pending[tree_hex] = nodes
            stack.append((tree_hex, True))
            stack.extend((n["subtree"], False) for n in nodes if n.get("subtree") is not None)
        return self.done.get(root, (None, [], "is part of a cycle"))

    def _load(self, tree_hex: str) -> tuple[list[dict[str, Any]] | None, str]:
        tree_id = bytes.fromhex(tree_hex)  # decode_tree and decode_snapshot checked it is hex
        if self.repo.blob_location(tree_id) is None:
            return None, self._missing(tree_id)
        try:
            return decode_tree(self.repo.load_blob(tree_id)), ""
        except IntegrityError as exc:
            return None, _why(exc)
        except ValueError as exc:
            return None, f"is not a directory listing ({exc})"

    def _data_problem(self, blob_hex: str) -> str | None:
        if blob_hex in self.blob_ok:
            return self.blob_ok[blob_hex]
        blob_id = bytes.fromhex(blob_hex)
        loc = self.repo.blob_location(blob_id)
        why = None
        if loc is None:
            why = self._missing(blob_id)
        elif loc.pack_id not in self.present:
            why = f"is missing (pack {loc.pack_id} is gone)"
        elif self.read_data:
            try:
                self.repo.load_blob(blob_id)
            except IntegrityError as exc:
                why = _why(exc)
        self.blob_ok[blob_hex] = why
        return why

    def _rebuild(self, tree_hex: str, nodes: list[dict[str, Any]]) -> _Repaired:
        out: list[dict[str, Any]] = []
        removed: list[str] = []
        changed = False
        for node in nodes:
            name = node["name"]
            subtree = node.get("subtree")
            if subtree is not None:
                new, below, why = self.done.get(subtree, (None, [], "is part of a cycle"))
                if new is None:
                    removed.append(f"{name}/: directory listing {subtree} {why}")
                    changed = True
                    continue
                if new != subtree:  # the totals of what was below are no longer true: left out
                    node = {**{k: v for k, v in node.items() if k != TOTALS}, "subtree": new}
                    removed.extend(f"{name}/{path}" for path in below)
                    changed = True
            bad = next(
                ((b, w) for b in node.get("content") or () if (w := self._data_problem(b)) is not None), None
            )
            if bad is not None:
                removed.append(f"{name}: data blob {bad[0]} {bad[1]}")
                changed = True
                continue
            out.append(node)
        if not changed:
            return tree_hex, [], ""
        encoded = encode_tree(out)
        new_id = self.repo.blob_id(encoded)
        if not self.dry_run:
            if self.writer is None:
                self.writer = self.repo.writer()
            self.writer.add(new_id, encoded, kind="tree")
        return new_id.hex(), removed, ""

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.close()  # packs, then the index that makes the new trees reachable

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _why(exc: IntegrityError) -> str:
    """The part of an IntegrityError after "... is", e.g. "damaged (authentication failed)"."""
    msg = str(getattr(exc, "message", exc))
    return "is " + msg.rsplit(" is ", 1)[-1] if " is " in msg else msg


def repair_snapshots(
    repo: Repository, *, dry_run: bool = False, read_data: bool = False
) -> SnapshotRepairReport:
    """Remove unreadable snapshots, rewrite partly readable ones; see the module docstring."""
    report = SnapshotRepairReport(dry_run=dry_run)
    repo.load_index()
    loaded: dict[str, Snapshot] = {}
    for sid in repo.snapshot_ids():
        report.snapshots += 1
        try:
            loaded[sid] = repo.load_snapshot(sid)
        except IntegrityError as exc:
            report.actions.append(SnapshotAction(sid, "remove", f"cannot be read, {_why(exc)[3:]}"))
        except RepositoryError as exc:  # I/O, permissions: the snapshot may be fine; never remove it
            report.errors.append(f"snapshot {sid}: {exc}; left alone")
    trees = _TreeRepairer(repo, read_data=read_data, dry_run=dry_run)
    try:
        rewrites = _plan(report, loaded, trees)
    except BaseException:
        trees.abort()  # an I/O error: nothing was changed (new trees are unreferenced at worst)
        raise
    if dry_run:
        return report
    trees.flush()
    for action, snap, new_root in rewrites:
        action.new_id = repo.save_snapshot(_rewritten(snap, new_root, action.removed))
    for action in report.actions:  # every replacement is saved before anything is removed
        log.debug("%s", action)
        repo.forget_snapshot(action.snapshot)
    return report


def _plan(
    report: SnapshotRepairReport, loaded: dict[str, Snapshot], trees: _TreeRepairer
) -> list[tuple[SnapshotAction, Snapshot, str]]:
    """Decide (and, unless a dry run, write the new trees for) what each snapshot needs."""
    # a repair killed between saving a rewritten snapshot and removing the old one: finish it
    repaired_from = {
        s.summary["repaired"].get("from"): s.id
        for s in loaded.values()
        if isinstance(s.summary.get("repaired"), dict)
    }
    rewrites: list[tuple[SnapshotAction, Snapshot, str]] = []
    for sid, snap in sorted(loaded.items()):
        new_root, removed, why = trees.repair(snap.tree)
        if new_root == snap.tree:
            continue
        if sid in repaired_from:
            report.actions.append(
                SnapshotAction(sid, "remove", f"was already rewritten as {repaired_from[sid]}")
            )
        elif new_root is None:
            report.actions.append(SnapshotAction(sid, "remove", f"its root directory listing {why}"))
        else:
            action = SnapshotAction(sid, "rewrite", "some entries are damaged", ["/" + r for r in removed])
            report.actions.append(action)
            rewrites.append((action, snap, new_root))
    return rewrites


def _rewritten(snap: Snapshot, new_root: str, removed: list[str]) -> Snapshot:
    summary = dict(snap.summary)
    summary["repaired"] = {
        "from": snap.id,
        "removed_count": len(removed),
        "removed": removed[:NOTE_MAX_PATHS],
    }
    tags = list(snap.tags) + ([REPAIRED_TAG] if REPAIRED_TAG not in snap.tags else [])
    return Snapshot(
        time=snap.time,
        host=snap.host,
        paths=list(snap.paths),
        tree=new_root,
        agent_id=snap.agent_id,
        excludes=dict(snap.excludes),
        parent=snap.parent,
        summary=summary,
        tags=tags,
    )

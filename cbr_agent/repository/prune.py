"""prune: remove blobs no snapshot reaches, rewriting partly used packs.

Crash-safe order: (1) copy the still-used blobs of rewritten packs into new packs (fsynced), (2) write one
consolidated index covering every kept and new pack, (3) delete the old index files, (4) delete the packs
no index points to any more. Killed at any point, every snapshot still finds all its blobs: before (2) the
old index is intact; between (2) and (3) old and new index both point to existing packs; after (3) the old
packs are unreferenced garbage that the next prune removes. Nothing is deleted when any snapshot or tree
cannot be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cbr_agent.crypto import AuthenticationFailed
from cbr_agent.errors import IntegrityError, RepositoryError
from cbr_agent.progress import Progress
from cbr_agent.repository.index import INDEX_MAX_FILE_ENTRIES
from cbr_agent.repository.lock import STALE_AFTER
from cbr_agent.repository.pack import PackEntry
from cbr_agent.repository.tree import decode_tree, referenced_blobs

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    snapshots: int = 0
    blobs_used: int = 0
    blobs_removed: int = 0
    packs_kept: int = 0
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    unindexed_packs_deleted: int = 0
    index_files_deleted: int = 0
    index_files_written: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["bytes_freed"] = self.bytes_freed
        return d


Hook = Callable[[str], None]


def prune(repo: Repository, **options: Any) -> PruneReport:
    """:func:`run_prune` under an exclusive lock (the caller's, when it holds one already: forget --prune)."""
    if repo.holds_exclusive_lock():
        return run_prune(repo, **options)
    with repo.lock(exclusive=True):
        return run_prune(repo, **options)


def run_prune(repo: Repository, *, max_unused: float = 0.0, hook: Hook | None = None,
              progress: Progress | None = None, dry_run: bool = False,
              ignore_snapshots: frozenset[str] = frozenset()) -> PruneReport:
    """``max_unused``: a partly used pack is rewritten when more than this fraction of it is unused
    (0.0 = rewrite every partly used pack). ``hook(stage)`` is called between stages (tests use it).
    ``progress`` counts snapshots read, then packs rewritten (and their bytes), then packs deleted.
    ``dry_run``: classify and report what would go and what it would free, change nothing;
    ``ignore_snapshots``: count these as forgotten already (what ``forget --dry-run --prune`` shows)."""
    step = hook or (lambda _stage: None)
    progress = progress or Progress()
    report = PruneReport(dry_run=dry_run)
    repo.load_index()
    sizes = dict(repo.backend.list("data"))
    report.bytes_before = sum(sizes.values())
    by_pack = repo.index.by_pack()
    unindexed = set(sizes) - set(by_pack)
    if repo.damaged_index_files:
        _recover_unindexed(repo, sizes, by_pack, unindexed, report)
    used = _used_blobs(repo, report, progress, ignore_snapshots)
    report.blobs_used = len(used)

    # choose one copy of every used blob; classify packs
    chosen: dict[bytes, str] = {}
    for pack_id, entries in by_pack.items():
        if pack_id not in sizes:
            continue
        for e in entries:
            if e.blob_id in used:
                chosen.setdefault(e.blob_id, pack_id)
    missing = used - chosen.keys()
    if missing:
        raise RepositoryError(
            f"prune stopped, nothing deleted: {len(missing)} blobs that snapshots use are missing "
            f"(e.g. {next(iter(missing)).hex()})",
            hint="run 'cbr-agent check --read-data' to see which snapshots are damaged, then 'cbr-agent "
            "repair index' (when check says the index is incomplete) or 'cbr-agent repair snapshots'",
        )
    keep, delete, rewrite = [], [], []
    for pack_id, entries in by_pack.items():
        if pack_id not in sizes:
            continue
        mine = [e for e in entries if chosen.get(e.blob_id) == pack_id]
        if len(mine) == len(entries):
            keep.append(pack_id)
        elif not mine:
            delete.append(pack_id)
        else:
            unused = sum(e.length for e in entries if chosen.get(e.blob_id) != pack_id)
            total = sum(e.length for e in entries)
            (rewrite if unused > max_unused * total else keep).append(pack_id)
    report.blobs_removed = sum(1 for p in delete + rewrite for e in by_pack[p] if chosen.get(e.blob_id) != p)
    step("classified")
    if dry_run:
        return _estimate(report, sizes, by_pack, chosen, keep, delete, rewrite, unindexed)
    remove_temp = getattr(repo.backend, "remove_stale_temp_files", None)
    if remove_temp is not None:  # temp files of writers that crashed (no live writer: we hold the lock)
        remove_temp(STALE_AFTER)
    if (
        not delete
        and not rewrite
        and not unindexed
        and not repo.damaged_index_files
        and len(repo.index_files) <= 1
    ):
        report.packs_kept = len(keep)
        report.bytes_after = report.bytes_before
        return report  # nothing to remove and the index is already one file

    # (1) copy used blobs out of the packs being rewritten
    progress.start("rewriting packs", "packs", items_total=len(rewrite),
                   bytes_total=sum(sizes[p] for p in rewrite))
    new_packs, unrewritable = _rewrite(repo, rewrite, by_pack, chosen, report, step, progress)
    keep.extend(unrewritable)
    rewritten = [p for p in rewrite if p not in unrewritable]
    report.packs_rewritten = len(rewritten)
    report.packs_kept = len(keep)
    step("packs-written")

    # (2) one consolidated index for every kept and new pack
    final: dict[str, list[PackEntry]] = {p: by_pack[p] for p in keep}
    final.update(new_packs)
    old_index_files = set(repo.index_files) | set(repo.damaged_index_files)
    written: list[str] = []
    batch: dict[str, list[PackEntry]] = {}
    count = 0
    for pack_id, entries in final.items():
        batch[pack_id] = entries
        count += len(entries)
        if count >= INDEX_MAX_FILE_ENTRIES:
            written.append(repo.write_index_file(batch))
            batch, count = {}, 0
    if batch or not written:
        written.append(repo.write_index_file(batch))
    report.index_files_written = len(written)
    step("index-written")

    # (3) old index files, (4) then packs nothing points to
    for name in sorted(old_index_files - set(written)):
        repo.backend.delete("index/" + name)
        report.index_files_deleted += 1
        step("index-deleted")
    referenced = set(final)
    delete_set = set(delete)
    progress.start("deleting packs", "packs", items_total=len(set(sizes) - referenced))
    for pack_id in sorted(sizes):
        if pack_id in referenced:
            continue
        repo.backend.delete("data/" + pack_id)
        progress.items_done += 1
        if pack_id in unindexed:
            report.unindexed_packs_deleted += 1
        elif pack_id in delete_set:
            report.packs_deleted += 1
        step("pack-deleted")
    repo.load_index()
    report.bytes_after = sum(size for _name, size in repo.backend.list("data"))
    step("done")
    return report


def _recover_unindexed(
    repo: Repository,
    sizes: dict[str, int],
    by_pack: dict[str, list[PackEntry]],
    unindexed: set[str],
    report: PruneReport,
) -> None:
    """With a damaged index file, packs it named look unindexed: read their headers so blobs a snapshot
    still needs are kept. (Without damage, unindexed packs come from interrupted runs and hold nothing a
    snapshot uses, since blobs are only reused once indexed.)"""
    for pack_id in sorted(unindexed):
        try:
            entries = repo.read_pack_header(pack_id, sizes[pack_id])
        except (IntegrityError, ValueError, FileNotFoundError) as exc:
            report.warnings.append(f"pack {pack_id} has no index and an unreadable header: {exc}")
            continue
        by_pack[pack_id] = entries
        repo.index.add_pack(pack_id, entries)
        unindexed.discard(pack_id)


def _estimate(report: PruneReport, sizes: dict[str, int], by_pack: dict[str, list[PackEntry]],
              chosen: dict[bytes, str], keep: list[str], delete: list[str], rewrite: list[str],
              unindexed: set[str]) -> PruneReport:
    """What a prune would do: packs deleted whole, the unused blobs of rewritten packs (their headers
    shrink too, not counted), unindexed packs; nothing is changed."""
    freed = sum(sizes[p] for p in delete) + sum(sizes[p] for p in unindexed)
    freed += sum(e.length for p in rewrite for e in by_pack[p] if chosen.get(e.blob_id) != p)
    report.packs_kept = len(keep)
    report.packs_deleted = len(delete)
    report.packs_rewritten = len(rewrite)
    report.unindexed_packs_deleted = len(unindexed)
    report.bytes_after = report.bytes_before - freed
    return report


REPAIR_HINT = "run 'cbr-agent repair snapshots' or 'cbr-agent forget {sid}', then prune again"


def _used_blobs(repo: Repository, report: PruneReport, progress: Progress,
                ignore_snapshots: frozenset[str] = frozenset()) -> set[bytes]:
    # a snapshot that cannot be read might reference any blob: nothing may be deleted until it is
    # repaired or forgotten
    snapshots = []
    for sid in repo.snapshot_ids():
        if sid in ignore_snapshots:
            continue
        try:
            snapshots.append(repo.load_snapshot(sid))
        except RepositoryError as exc:
            prefix = f"snapshot {sid} "
            what = (exc.message if exc.message.startswith(prefix)
                    else f"{prefix}cannot be read ({exc.message})")
            raise RepositoryError(
                f"prune stopped, nothing deleted: {what}", hint=REPAIR_HINT.format(sid=sid[:8])
            ) from None
    report.snapshots = len(snapshots)
    used: set[bytes] = set()
    progress.start("reading snapshots", "snapshots", items_total=len(snapshots))
    for snap in snapshots:
        progress.items_done += 1
        stack = [snap.tree]
        while stack:
            tree_id = bytes.fromhex(stack.pop())
            if tree_id in used:
                continue
            used.add(tree_id)
            try:
                nodes = decode_tree(repo.load_blob(tree_id))
            except (IntegrityError, ValueError) as exc:
                raise RepositoryError(
                    f"prune stopped, nothing deleted: snapshot {snap.id}: tree {tree_id.hex()}: "
                    f"{getattr(exc, 'message', exc)}",
                    hint=_tree_hint(repo, snap.id or ""),
                ) from None
            for _name, kind, blob_hex in referenced_blobs(nodes):
                if kind == "tree":
                    stack.append(blob_hex)
                else:
                    used.add(bytes.fromhex(blob_hex))
    return used


def _tree_hint(repo: Repository, sid: str) -> str:
    if not repo.index_files and any(True for _ in repo.backend.list("data")):
        return "the index is missing: run 'cbr-agent repair index', then prune again"
    return "run 'cbr-agent check' to see the damage; " + REPAIR_HINT.format(sid=sid[:8])


def _rewrite(
    repo: Repository,
    rewrite: list[str],
    by_pack: dict[str, list[PackEntry]],
    chosen: dict[bytes, str],
    report: PruneReport,
    step: Hook,
    progress: Progress,
) -> tuple[dict[str, list[PackEntry]], list[str]]:
    """Copy the used blobs of ``rewrite`` packs (still sealed, after authenticating them) into new packs."""
    unrewritable: list[str] = []
    if not rewrite:
        return {}, unrewritable
    writer = repo.writer(dedup_against_index=False, write_index=False)
    try:
        for pack_id in rewrite:
            try:
                data = repo.backend.get("data/" + pack_id)
            except FileNotFoundError:
                raise RepositoryError(f"prune stopped: pack {pack_id} vanished") from None
            progress.items_done += 1
            progress.bytes_done += len(data)
            mine = [e for e in by_pack[pack_id] if chosen.get(e.blob_id) == pack_id]
            try:
                sealed = [bytes(memoryview(data)[e.offset : e.offset + e.length]) for e in mine]
                for e, s in zip(mine, sealed, strict=False):
                    repo.key.sealer.open(s, e.blob_id)  # never copy a damaged blob into a new pack
            except AuthenticationFailed:
                report.warnings.append(f"pack {pack_id} holds a damaged blob; kept as it is")
                unrewritable.append(pack_id)
                continue
            for e, s in zip(mine, sealed, strict=False):
                writer.add_sealed(e.blob_id, e.flags, s, e.raw_length)
            step("pack-rewritten")
        writer.flush()
    finally:
        writer.close_without_index()
    packs = writer.written_packs()
    report.packs_written = len(packs)
    return packs, unrewritable

"""check: structure, index against packs, snapshots -> trees -> blobs; with read_data every blob decrypted
and verified. Every problem names the object (and pack) and says why."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cbr_agent.crypto import KeyFileDamaged, verify_key_file
from cbr_agent.errors import IntegrityError, RepositoryError, RepositoryLocked
from cbr_agent.progress import Progress
from cbr_agent.repository.index import BlobLocation, MasterIndex
from cbr_agent.repository.objects import content_name
from cbr_agent.repository.pack import PackEntry
from cbr_agent.repository.tree import decode_tree, referenced_blobs

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    object: str  # e.g. "pack 3fa2...", "snapshot 9c01...", "index file index/...", "blob ..."
    reason: str
    pack: str | None = None

    def __str__(self) -> str:
        where = f" (in pack {self.pack})" if self.pack and self.pack not in self.object else ""
        return f"{self.object}{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "reason": self.reason, "pack": self.pack}


@dataclass
class CheckReport:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    data_blobs: int = 0
    packs: int = 0
    index_files: int = 0
    read_data: bool = False
    blobs_verified: int = 0
    bytes_read: int = 0
    read_data_subset: str | None = None
    packs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "snapshots": self.snapshots,
            "trees": self.trees,
            "data_blobs": self.data_blobs,
            "packs": self.packs,
            "index_files": self.index_files,
            "read_data": self.read_data,
            "blobs_verified": self.blobs_verified,
            "bytes_read": self.bytes_read,
            "read_data_subset": self.read_data_subset,
            "packs_read": self.packs_read,
        }


def run_check(
    repo: Repository, *, read_data: bool = False, progress: Progress | None = None,
    subset: PackSubset | None = None,
) -> CheckReport:
    """``progress`` counts packs (and with ``read_data`` their bytes), then snapshots. ``subset``: read
    only the packs it selects (implies ``read_data``); the others get the header check."""
    progress = progress or Progress()
    read_data = read_data or subset is not None
    report = CheckReport(read_data=read_data, read_data_subset=str(subset) if subset else None)
    _check_keys(repo, report)
    repo.load_index()
    report.index_files = len(repo.index_files)
    for name, reason in sorted(repo.damaged_index_files.items()):
        report.errors.append(Problem(f"index file index/{name}", reason.split(": ", 1)[-1]))
    by_pack = repo.index.by_pack()
    stored = dict(repo.backend.list("data"))
    report.packs = len(stored)
    unindexed = _read_unindexed(repo, sorted(stored.keys() - by_pack.keys()), stored, report)
    bad_packs: set[str] = set()  # packs whose blobs cannot be trusted as a whole (missing, header damaged)
    bad_blobs: set[bytes] = set()  # blobs found damaged by reading them
    for pack_id in sorted(by_pack.keys() - stored.keys()):
        bad_packs.add(pack_id)
        report.errors.append(
            Problem(f"pack {pack_id}", f"missing ({len(by_pack[pack_id])} indexed blobs)", pack_id)
        )
    present = {p: e for p, e in by_pack.items() if p in stored}
    to_read = {} if not read_data else present if subset is None else subset.choose(present)
    if to_read:
        progress.start("reading packs", "packs", items_total=len(to_read),
                       bytes_total=sum(stored[p] for p in to_read))
        _read_all_packs(repo, to_read, stored, report, bad_packs, bad_blobs, progress)
        report.packs_read = len(to_read)
    headers_only = {p: e for p, e in present.items() if p not in to_read}
    if headers_only:
        progress.start("checking packs", "packs", items_total=len(headers_only))
    for pack_id, entries in sorted(headers_only.items()):
        _check_pack_header(repo, pack_id, stored[pack_id], entries, report, bad_packs)
        progress.items_done += 1
    needed = _check_snapshots(repo, report, bad_packs, bad_blobs, unindexed, progress)
    _report_unindexed(repo, report, unindexed, needed)
    return report


def _read_unindexed(
    repo: Repository, pack_ids: list[str], sizes: dict[str, int], report: CheckReport
) -> MasterIndex:
    """The headers of packs no index names: an interrupted run leaves such packs, and so does a lost or
    damaged index, whose packs hold blobs that snapshots use. Which of the two, the snapshots tell."""
    found = MasterIndex()
    for pack_id in pack_ids:
        try:
            found.add_pack(pack_id, repo.read_pack_header(pack_id, sizes[pack_id]))
        except IntegrityError as exc:
            report.warnings.append(
                Problem(f"pack {pack_id}", f"not in any index, and its {_detail(exc)}", pack_id)
            )
        except RepositoryError as exc:
            report.warnings.append(Problem(f"pack {pack_id}", f"not in any index, cannot be read ({exc})"))
        except (FileNotFoundError, ValueError):  # vanished meanwhile, or a stray file with a bad name
            continue
    return found


def _report_unindexed(
    repo: Repository, report: CheckReport, unindexed: MasterIndex, needed: dict[str, set[bytes]]
) -> None:
    """One error for an index that lacks blobs snapshots use (naming the command that rebuilds it), a
    warning for each unindexed pack."""
    for pack_id in sorted(unindexed.packs()):
        if pack_id in needed:
            why = "not in any index, but holds blobs that snapshots use (run 'cbr-agent repair index')"
        else:
            why = "not in any index (left by an interrupted run; prune removes it)"
        report.warnings.append(Problem(f"pack {pack_id}", why, pack_id))
    if needed:
        state = "missing (no index files)" if not repo.index_files else "incomplete"
        blobs = sum(map(len, needed.values()))
        report.errors.insert(0, Problem(
            "index",
            f"the repository index is {state}: {len(needed)} packs that no index names hold {blobs} blobs "
            "that snapshots use; run 'cbr-agent repair index' to rebuild it from the pack headers",
        ))


def _detail(exc: IntegrityError) -> str:
    """"header is damaged: ..." out of "header of pack X is damaged: ..."."""
    msg = str(getattr(exc, "message", exc))
    head, sep, tail = msg.partition(" is ")
    if not sep:
        return msg
    return head.split(" of ", 1)[0] + " is " + tail


class PackSubset:
    """Which packs ``check --read-data-subset`` reads: ``N/M`` is the N-th of M fixed slices (a pack's
    slice comes from its id, so M nightly runs with N = 1..M read every pack once); ``P%`` is a random
    P percent (at least one pack when there are any)."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.slice: tuple[int, int] | None = None
        self.percent: float | None = None
        try:
            if self.text.endswith("%"):
                self.percent = float(self.text[:-1])
                if not 0 < self.percent <= 100:
                    raise ValueError
            else:
                n, _, m = self.text.partition("/")
                self.slice = (int(n), int(m))
                if not 1 <= self.slice[0] <= self.slice[1]:
                    raise ValueError
        except ValueError:
            raise ValueError(f"read-data subset {text!r} is not N/M (1 <= N <= M) or P% (0 < P <= 100)"
                             ) from None

    def __str__(self) -> str:
        return self.text

    def selects(self, pack_id: str) -> bool:
        """Whether the slice ``N/M`` holds this pack (not meaningful for ``P%``)."""
        assert self.slice is not None
        n, m = self.slice
        return int(pack_id[:16], 16) % m == n - 1

    def choose(self, packs: dict[str, list[PackEntry]]) -> dict[str, list[PackEntry]]:
        if self.slice is not None:
            return {p: e for p, e in packs.items() if self.selects(p)}
        import math
        import random

        assert self.percent is not None
        count = min(len(packs), math.ceil(len(packs) * self.percent / 100))
        chosen = random.sample(sorted(packs), count)
        return {p: packs[p] for p in chosen}


def _check_keys(repo: Repository, report: CheckReport) -> None:
    for name, _size in repo.backend.list("keys"):
        try:
            verify_key_file(repo.backend.get("keys/" + name))
        except (KeyFileDamaged, FileNotFoundError) as exc:
            report.errors.append(Problem(f"key file keys/{name}", f"damaged ({exc})"))


def _compare_header(
    pack_id: str, size: int, header: list[PackEntry], entries: list[PackEntry], report: CheckReport
) -> bool:
    ok = True
    in_header = {e.blob_id: e for e in header}
    for e in entries:
        h = in_header.get(e.blob_id)
        if h is None or (h.offset, h.length, h.raw_length, h.flags) != (
            e.offset,
            e.length,
            e.raw_length,
            e.flags,
        ):
            ok = False
            report.errors.append(
                Problem(f"blob {e.blob_id.hex()}", "index entry does not match the pack header", pack_id)
            )
        elif e.offset + e.length > size:
            ok = False
            report.errors.append(
                Problem(f"blob {e.blob_id.hex()}", "lies beyond the end of its pack", pack_id)
            )
    return ok


def _check_pack_header(
    repo: Repository,
    pack_id: str,
    size: int,
    entries: list[PackEntry],
    report: CheckReport,
    bad_packs: set[str],
    data: bytes | None = None,
) -> None:
    try:
        header = repo.read_pack_header(pack_id, size, data)
    except IntegrityError as exc:
        bad_packs.add(pack_id)
        report.errors.append(Problem(f"pack {pack_id}", _detail(exc), pack_id))
        return
    except FileNotFoundError:
        bad_packs.add(pack_id)
        report.errors.append(Problem(f"pack {pack_id}", "vanished during check", pack_id))
        return
    except RepositoryError as exc:  # an I/O error on this pack: name it and go on with the others
        bad_packs.add(pack_id)
        report.errors.append(Problem(f"pack {pack_id}", f"cannot be read ({exc})", pack_id))
        return
    if not _compare_header(pack_id, size, header, entries, report):
        bad_packs.add(pack_id)


def _read_all_packs(
    repo: Repository,
    present: dict[str, list[PackEntry]],
    sizes: dict[str, int],
    report: CheckReport,
    bad_packs: set[str],
    bad_blobs: set[bytes],
    progress: Progress,
) -> None:
    """Read every pack whole: its hash, its header, and every blob decrypted and verified. Packs that cannot
    be read go to ``bad_packs``, damaged blobs to ``bad_blobs``."""

    def verify(pack_id: str) -> tuple[str, list[Problem], int, int, bool, list[bytes]]:
        problems: list[Problem] = []
        damaged: list[bytes] = []
        sub = CheckReport()
        try:
            data = repo.backend.get("data/" + pack_id)
        except FileNotFoundError:
            return pack_id, [Problem(f"pack {pack_id}", "vanished during check", pack_id)], 0, 0, True, []
        except RepositoryError as exc:
            return pack_id, [Problem(f"pack {pack_id}", f"cannot be read ({exc})", pack_id)], 0, 0, True, []
        if content_name(data) != pack_id:
            problems.append(Problem(f"pack {pack_id}", "content does not match its name (damaged)", pack_id))
        sub_bad: set[str] = set()
        _check_pack_header(repo, pack_id, len(data), present[pack_id], sub, sub_bad, data)
        problems.extend(sub.errors)
        verified = 0
        for e in present[pack_id]:
            loc = BlobLocation(pack_id, e.offset, e.length, e.raw_length, e.flags)
            try:
                repo.decode_blob(e.blob_id, loc, memoryview(data)[e.offset : e.offset + e.length])
                verified += 1
            except IntegrityError as exc:
                problems.append(Problem(f"blob {e.blob_id.hex()}", _reason(exc), pack_id))
                damaged.append(e.blob_id)
        return pack_id, problems, verified, len(data), False, damaged

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="check-read") as pool:
        for pack_id, problems, verified, nbytes, unusable, damaged in pool.map(verify, sorted(present)):
            report.errors.extend(problems)
            report.blobs_verified += verified
            report.bytes_read += nbytes
            progress.items_done += 1
            progress.bytes_done += sizes[pack_id]
            bad_blobs.update(damaged)
            if unusable:
                bad_packs.add(pack_id)


def _reason(exc: Exception) -> str:
    msg = str(getattr(exc, "message", exc))
    return msg.rsplit(" is ", 1)[-1] if " is " in msg else msg


def _check_snapshots(
    repo: Repository,
    report: CheckReport,
    bad_packs: set[str],
    bad_blobs: set[bytes],
    unindexed: MasterIndex,
    progress: Progress,
) -> dict[str, set[bytes]]:
    """Walk every snapshot; returns the blobs found only in unindexed packs, by pack."""
    seen_trees: set[bytes] = set()
    seen_data: set[bytes] = set()
    needed: dict[str, set[bytes]] = {}
    index = repo.index
    ids = repo.snapshot_ids()
    progress.start("checking snapshots", "snapshots", items_total=len(ids))
    for sid in ids:
        progress.items_done += 1
        try:
            snap = repo.load_snapshot(sid)
        except IntegrityError as exc:
            report.errors.append(Problem(
                f"snapshot {sid}", f"{_reason(exc)} ('cbr-agent repair snapshots' removes it)"
            ))
            continue
        except RepositoryError as exc:  # not damage (I/O, permissions): repair would leave it alone
            report.errors.append(Problem(f"snapshot {sid}", _reason(exc)))
            continue
        report.snapshots += 1
        stack: list[tuple[str, str]] = [("/", snap.tree)]
        while stack:
            path, tree_hex = stack.pop()
            try:
                tree_id = bytes.fromhex(tree_hex)
            except ValueError:
                report.errors.append(Problem(f"snapshot {sid}", f"{path}: tree id {tree_hex!r} is not hex"))
                continue
            if tree_id in seen_trees:
                continue
            seen_trees.add(tree_id)
            loc = index.lookup(tree_id)
            if loc is None:
                loc = unindexed.lookup(tree_id)
                if loc is None:
                    report.errors.append(Problem(f"snapshot {sid}", f"{path}: tree {tree_hex} is missing"))
                    continue
                needed.setdefault(loc.pack_id, set()).add(tree_id)
            try:
                nodes = decode_tree(_load_at(repo, tree_id, loc))
            except IntegrityError as exc:
                report.errors.append(
                    Problem(f"snapshot {sid}", f"{path}: tree {tree_hex}: {_reason(exc)}", loc.pack_id)
                )
                continue
            except ValueError as exc:
                report.errors.append(
                    Problem(f"snapshot {sid}", f"{path}: tree {tree_hex} is not a tree ({exc})")
                )
                continue
            report.trees += 1
            for name, kind, blob_hex in referenced_blobs(nodes):
                child = path.rstrip("/") + "/" + name
                if kind == "tree":
                    stack.append((child, blob_hex))
                    continue
                try:
                    blob_id = bytes.fromhex(blob_hex)
                except ValueError:
                    report.errors.append(
                        Problem(f"snapshot {sid}", f"{child}: blob id {blob_hex!r} is not hex")
                    )
                    continue
                if blob_id in seen_data:
                    continue
                seen_data.add(blob_id)
                dloc = index.lookup(blob_id)
                if dloc is None and (oloc := unindexed.lookup(blob_id)) is not None:
                    needed.setdefault(oloc.pack_id, set()).add(blob_id)
                elif dloc is None:
                    report.errors.append(
                        Problem(f"snapshot {sid}", f"{child}: data blob {blob_hex} is missing")
                    )
                elif blob_id in bad_blobs or dloc.pack_id in bad_packs:
                    report.errors.append(
                        Problem(f"snapshot {sid}", f"{child}: data blob {blob_hex} is damaged", dloc.pack_id)
                    )
    report.data_blobs = len(seen_data)
    return needed


def _load_at(repo: Repository, blob_id: bytes, loc: BlobLocation) -> bytes:
    """A blob at a known place (indexed or found in an unindexed pack's header)."""
    try:
        stored = repo.backend.get("data/" + loc.pack_id, loc.offset, loc.length)
    except FileNotFoundError:
        raise IntegrityError(f"pack {loc.pack_id} holding blob {blob_id.hex()} is missing") from None
    return repo.decode_blob(blob_id, loc, stored)


@contextmanager
def check_lock(repo: Repository) -> Iterator[str | None]:
    """A shared lock for check. Where none can be written (a read-only mount, a write-once copy, a full
    disk), check still runs, read-only: this yields why there is no lock (None when locked). A repository
    locked by a prune is still refused (RepositoryLocked): its packs are being rewritten."""
    with ExitStack() as stack:
        try:
            stack.enter_context(repo.lock(exclusive=False))
        except RepositoryLocked:
            raise
        except RepositoryError as exc:
            yield str(getattr(exc, "message", exc))
            return
        yield None


def unlocked_warning(why: str) -> Problem:
    return Problem(
        "lock",
        f"could not lock the repository ({why}); checked it read-only without a lock (a prune running "
        "at the same time could cause false alarms)",
    )

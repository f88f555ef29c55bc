"""The walker led by a change hint (the daemon's journal): only named directories are listed, the rest of
the parent snapshot's trees are reused, and the result is the tree a full scan would have built."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbr_agent.backup.changehint import DirtyDirs
from cbr_agent.backup.run import RunOptions, backup_paths
from cbr_agent.repository import decode_tree
from cbr_agent.repository.tree import Totals, totals_of


def make_tree(src: Path) -> int:
    """Three top dirs with three subdirs of two files each; returns the number of directories."""
    dirs = 1
    for top in "abc":
        dirs += 1
        for sub in range(3):
            d = src / top / str(sub)
            d.mkdir(parents=True)
            dirs += 1
            for name in ("x", "y"):
                (d / name).write_bytes(f"{top}{sub}{name}".encode() * 100)
    return dirs


def tree_of(engine, snapshot_id: str, path: Path) -> str:
    """The subtree id of ``path`` in the snapshot (not the root's: the directories above ``path`` are
    the test's temporary directories, which other processes may touch between two backups)."""
    repo = engine.open()
    tree = next(s.tree for s in repo.list_snapshots() if s.id == snapshot_id)
    for part in [p for p in str(path).split("/") if p]:
        nodes = decode_tree(repo.load_blob(bytes.fromhex(tree)))
        tree = next(n["subtree"] for n in nodes if n["name"] == part)
    return tree


def counts(summary) -> tuple[int, int, int]:
    """What a summary says the snapshot holds: files, their bytes, directories."""
    return (summary.files_new + summary.files_changed + summary.files_unchanged, summary.bytes_total,
            summary.dirs)


def node_of(engine, snapshot_id: str, path: Path) -> dict:
    repo = engine.open()
    tree = next(s.tree for s in repo.list_snapshots() if s.id == snapshot_id)
    parts = [p for p in str(path).split("/") if p]
    for i, part in enumerate(parts):
        node = next(n for n in decode_tree(repo.load_blob(bytes.fromhex(tree))) if n["name"] == part)
        if i == len(parts) - 1:
            return node
        tree = node["subtree"]
    raise AssertionError(path)


def walked_totals(engine, tree: str) -> Totals:
    """A subtree's totals counted by reading every tree below it."""
    repo = engine.open()
    files = size = dirs = 0
    stack = [tree]
    while stack:
        dirs += 1
        for node in decode_tree(repo.load_blob(bytes.fromhex(stack.pop()))):
            if node["type"] == "file":
                files, size = files + 1, size + node["size"]
            elif node["type"] == "dir":
                stack.append(node["subtree"])
    return Totals(files, size, dirs)


def test_directory_nodes_carry_the_totals_of_their_subtree(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_tree(src)
    (src / "a" / "0" / "big").write_bytes(bytes(range(256)) * 400)
    first = backup_paths(engine.settings(), [str(src)])
    node = node_of(engine, first.snapshot_id, src)
    assert totals_of(node) == walked_totals(engine, node["subtree"]) == Totals(19, 18 * 300 + 102_400, total)
    for sub in ("a", "a/0", "c/2"):
        node = node_of(engine, first.snapshot_id, src / sub)
        assert totals_of(node) == walked_totals(engine, node["subtree"])


def test_only_dirty_directories_are_listed_and_the_tree_equals_a_full_scan(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    assert first.scan == "full" and first.dirs_scanned == total

    (src / "a" / "1" / "x").write_bytes(b"changed content")
    hint = DirtyDirs(first.snapshot_id, dirty=[str(src / "a" / "1")])
    second = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    assert second.scan == "journal"
    assert second.dirs_scanned == 1, "only the dirty directory is listed"
    assert second.dirs_reused == 2 + 2, "a/0, a/2, b and c are reused unopened"
    # the changed file, and its neighbour too if it was written within RACY_NS of the first listing
    assert 1 <= second.files_changed <= 2 and second.files_new == 0

    full = backup_paths(settings, [str(src)])
    assert full.scan == "full" and full.dirs_scanned == total
    assert tree_of(engine, second.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    # the reused subtrees count as a full scan counts them: the CBR backup's size is the snapshot's
    assert counts(second) == counts(full)
    assert counts(second)[0::2] == counts(first)[0::2], "the same files and directories"
    assert second.bytes_total == first.bytes_total - 300 + len(b"changed content")


def test_unchanged_tree_lists_nothing(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    second = backup_paths(settings, [str(src)], RunOptions(changes=DirtyDirs(first.snapshot_id)))
    assert second.scan == "journal" and second.dirs_scanned == 0 and second.dirs_reused == 3
    assert second.bytes_read == 0
    assert counts(second) == counts(first) and second.files_unchanged == first.files_new == 18
    assert second.bytes_unchanged == first.bytes_total == 18 * 300
    assert tree_of(engine, second.snapshot_id, src) == tree_of(engine, first.snapshot_id, src)


def test_hint_counting_from_another_snapshot_is_ignored(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (src / "b" / "2" / "new").write_bytes(b"new file")
    backup_paths(settings, [str(src)])  # e.g. a CLI backup the journal did not see
    third = backup_paths(settings, [str(src)], RunOptions(changes=DirtyDirs(first.snapshot_id)))
    assert third.scan == "full" and third.dirs_scanned == total


def test_degraded_subtree_and_new_and_removed_directories(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (src / "c" / "new" / "deep").mkdir(parents=True)
    (src / "c" / "new" / "deep" / "f").write_bytes(b"in a new directory")
    shutil.rmtree(src / "a" / "0")
    (src / "b" / "0" / "x").write_bytes(b"lost by the journal")  # the journal overflowed below b
    hint = DirtyDirs(first.snapshot_id, dirty=[str(src / "c"), str(src / "c" / "new"), str(src / "a")],
                     degraded=[str(src / "b")])
    second = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    assert second.scan == "journal"
    # a (listed), c, c/new, c/new/deep (new: no previous tree), b and its three subdirs (degraded)
    assert second.dirs_scanned == 1 + 3 + 4
    full = backup_paths(settings, [str(src)])
    assert tree_of(engine, second.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    assert counts(second) == counts(full)
    restored = tmp_path / "out"
    assert engine.cli("restore", second.snapshot_id, "--target", str(restored)).returncode == 0
    base = restored / str(src).lstrip("/")
    assert (base / "c" / "new" / "deep" / "f").read_bytes() == b"in a new directory"
    assert (base / "b" / "0" / "x").read_bytes() == b"lost by the journal"
    assert not (base / "a" / "0").exists()


def test_changed_excludes_scan_that_path_fully(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [(str(src), ())])
    second = backup_paths(settings, [(str(src), (str(src / "b"),))],
                          RunOptions(changes=DirtyDirs(first.snapshot_id)))
    assert second.scan == "full" and second.dirs_scanned == total - 4
    assert not os.path.exists(src / "nothing")


def test_a_directory_changed_behind_the_hints_back_is_walked(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (src / "b" / "0" / "unseen").write_bytes(b"the journal missed this")
    # b is listed; b/0's mtime no longer matches the parent snapshot's, so it is not taken on trust
    second = backup_paths(settings, [str(src)],
                          RunOptions(changes=DirtyDirs(first.snapshot_id, dirty=[str(src / "b")])))
    assert second.scan == "journal" and second.files_new == 1
    full = backup_paths(settings, [str(src)])
    assert tree_of(engine, second.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)


def test_a_dirty_directory_is_compared_with_the_parent_snapshot(engine, tmp_path: Path) -> None:
    """The files cache row of a directory the journal skipped is older than the parent snapshot: a
    subdirectory changed in between must not come back with its old tree."""
    src = tmp_path / "src"
    make_tree(src)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (src / "a" / "0" / "x").write_bytes(b"second version")  # content only: a/0's own stat stays
    second = backup_paths(settings, [str(src)],
                          RunOptions(changes=DirtyDirs(first.snapshot_id, dirty=[str(src / "a" / "0")])))
    (src / "a" / "new").write_bytes(b"a new file in a")
    third = backup_paths(settings, [str(src)],
                         RunOptions(changes=DirtyDirs(second.snapshot_id, dirty=[str(src / "a")])))
    assert third.scan == "journal"
    full = backup_paths(settings, [str(src)])
    assert tree_of(engine, third.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)


def test_journal_backups_do_not_age_the_files_cache_rows(engine, tmp_path: Path, monkeypatch) -> None:
    import sqlite3

    from cbr_agent.backup import filescache

    monkeypatch.setattr(filescache, "KEEP_GENERATIONS", 1)
    src = tmp_path / "src"
    total = make_tree(src)
    settings = engine.settings()
    last = backup_paths(settings, [str(src)])
    for _ in range(3):  # skipped subtrees: their rows must be there for the next full scan
        last = backup_paths(settings, [str(src)], RunOptions(changes=DirtyDirs(last.snapshot_id)))
        assert last.scan == "journal"
    with sqlite3.connect(engine.state_dir / "filescache.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM dirs").fetchone()[0]
    assert rows >= total


def test_trees_of_an_older_version_get_totals_at_the_next_full_scan(engine, tmp_path: Path,
                                                                     monkeypatch) -> None:
    from cbr_agent.backup import treesaver

    src = tmp_path / "src"
    make_tree(src)
    time.sleep(0.25)  # past RACY_NS: the next listings are trusted, the files cache rows used as they are
    settings = engine.settings()
    writes_totals = treesaver._set_totals
    # a version before totals: its trees and its files cache rows have none
    monkeypatch.setattr(treesaver, "_set_totals", lambda node, totals: node.pop("totals", None))
    old = backup_paths(settings, [str(src)])
    assert "totals" not in node_of(engine, old.snapshot_id, src)
    monkeypatch.setattr(treesaver, "_set_totals", writes_totals)

    full = backup_paths(settings, [str(src)])  # nothing changed: the older rows and trees are reused
    assert full.files_unchanged == 18 and full.bytes_read == 0
    for sub in (src, src / "a", src / "a" / "0"):
        node = node_of(engine, full.snapshot_id, sub)
        assert totals_of(node) == walked_totals(engine, node["subtree"])
    led = backup_paths(settings, [str(src)], RunOptions(changes=DirtyDirs(full.snapshot_id)))
    assert led.scan == "journal" and counts(led) == counts(full) == counts(old)


def backed_up_with(engine, tmp_path: Path, names: tuple[str, ...], excludes: list[str]):
    """The test tree with ``names`` added to a/1 (10 times their name each), backed up once; (src, a/1,
    settings, the first backup's summary)."""
    src = tmp_path / "src"
    make_tree(src)
    d = src / "a" / "1"
    for name in names:
        (d / name).write_bytes(name.encode() * 10)
    time.sleep(0.25)  # past RACY_NS
    settings = engine.settings()
    return src, d, settings, backup_paths(settings, [(str(src), excludes)])


def test_in_a_dirty_directory_only_named_and_new_entries_are_looked_at(engine, tmp_path: Path) -> None:
    src, d, settings, first = backed_up_with(engine, tmp_path, ("gone", "swapped", "stays"), [])
    (d / "x").write_bytes(b"named by the journal")
    (d / "y").write_bytes(b"changed where the journal did not look")  # trusted: not looked at
    (d / "new").write_bytes(b"a new entry is found by listing")
    (d / "gone").unlink()
    (d / "swap.tmp").write_bytes(b"saved by write-then-rename")
    os.replace(d / "swap.tmp", d / "swapped")  # another inode under the same name
    hint = DirtyDirs(first.snapshot_id, dirty=[str(d)], names={str(d): {"x"}})
    second = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    assert second.scan == "journal" and second.dirs_scanned == 1
    nodes = {n["name"]: n for n in decode_tree(engine.open().load_blob(
        bytes.fromhex(tree_of(engine, second.snapshot_id, d))))}
    assert sorted(nodes) == ["new", "stays", "swapped", "x", "y"]
    assert nodes["x"]["size"] == len(b"named by the journal")
    assert nodes["new"]["size"] == len(b"a new entry is found by listing")
    assert nodes["swapped"]["size"] == len(b"saved by write-then-rename"), "a new inode is looked at"
    assert nodes["y"]["size"] == 300, "an entry the journal did not name is the parent snapshot's"
    assert (second.files_new, second.files_changed) == (1, 2)
    assert second.files_unchanged == first.files_new - 1 - 2  # less the one gone and the two changed


def test_a_hint_naming_what_came_and_went_too_is_trusted_without_listing(engine, tmp_path: Path) -> None:
    """With complete names (the daemon's journal), a dirty directory is not listed: what came, went or
    changed is what the journal named; an entry it did not name is the parent snapshot's, even one that
    came (the same trust as for a directory it calls unchanged)."""
    src, d, settings, first = backed_up_with(engine, tmp_path, ("gone", "stays", "skip.tmp"), ["*.tmp"])
    (d / "x").write_bytes(b"named by the journal")
    (d / "new").write_bytes(b"came, and named")
    (d / "unnamed").write_bytes(b"came without the journal seeing it")
    (d / "also.tmp").write_bytes(b"came, named, excluded")
    (d / "gone").unlink()
    (d / "0").mkdir()
    (d / "0" / "inside").write_bytes(b"a directory that came")
    (src / "a" / "2" / "y").write_bytes(b"below a subdirectory of a: a is looked at through it")
    names = {str(d): {"x", "new", "gone", "also.tmp", "0"}, str(d / "0"): {"inside"},
             str(src / "a" / "2"): {"y"}}
    hint = DirtyDirs(first.snapshot_id, dirty=names, degraded=[str(d / "0")], names=names,
                     names_complete=True)
    led = backup_paths(settings, [(str(src), ["*.tmp"])], RunOptions(changes=hint))
    assert led.scan == "journal" and led.warnings == []
    nodes = {n["name"]: n for n in decode_tree(engine.open().load_blob(
        bytes.fromhex(tree_of(engine, led.snapshot_id, d))))}
    assert sorted(nodes) == ["0", "new", "stays", "x", "y"], "unnamed is not there: d was not listed"
    assert nodes["x"]["size"] == len(b"named by the journal")
    assert nodes["y"]["size"] == 300
    a2 = {n["name"]: n for n in decode_tree(engine.open().load_blob(
        bytes.fromhex(tree_of(engine, led.snapshot_id, src / "a" / "2"))))}
    assert a2["y"]["size"] == len(b"below a subdirectory of a: a is looked at through it")
    assert (led.files_new, led.files_changed) == (2, 2)  # new, 0/inside; x, a/2/y
    (d / "unnamed").unlink()  # (d's own times change: its listing is compared, not its node)
    full = backup_paths(settings, [(str(src), ["*.tmp"])])
    assert tree_of(engine, led.snapshot_id, d) == tree_of(engine, full.snapshot_id, d)
    assert counts(led) == counts(full)


def test_a_subdirectory_gone_behind_the_journals_back_gets_its_directory_listed(engine,
                                                                               tmp_path: Path) -> None:
    """Complete names are trusted only while they agree with what is there: a subdirectory below which
    something changed, found gone, makes its directory listed after all (as without complete names)."""
    src = tmp_path / "src"
    make_tree(src)
    time.sleep(0.25)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (src / "b" / "x").write_bytes(b"named")
    (src / "b" / "unnamed").write_bytes(b"found by listing")
    shutil.rmtree(src / "b" / "1")
    names = {str(src / "b"): {"x"}, str(src / "b" / "1"): {"x"}}
    hint = DirtyDirs(first.snapshot_id, dirty=names, names=names, names_complete=True)
    led = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    full = backup_paths(settings, [str(src)])
    assert led.scan == "journal"
    assert tree_of(engine, led.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    assert counts(led) == counts(full)


def test_a_hint_naming_every_change_builds_the_full_scans_tree(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "b" / "2" / "link").symlink_to("x")
    time.sleep(0.25)
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    d, e = src / "b" / "2", src / "c" / "0"
    (d / "x").write_bytes(b"new content")
    os.chmod(d / "y", 0o600)
    (d / "link").unlink()
    (d / "link").symlink_to("y")
    (e / "x").unlink()
    (e / "x").mkdir()  # a file became a directory
    (e / "x" / "inside").write_bytes(b"in the new directory")
    names = {str(d): {"x", "y", "link"}, str(e): {"x"}, str(e / "x"): {"inside"}}
    hint = DirtyDirs(first.snapshot_id, dirty=names, degraded=[str(e / "x")], names=names)
    second = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    assert second.scan == "journal"
    full = backup_paths(settings, [str(src)])
    assert tree_of(engine, second.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    assert counts(second) == counts(full)


KINDS = ["write", "chmod", "delete", "create", "mkdir", "symlink", "rename"]
OPS = st.lists(st.tuples(st.sampled_from(KINDS),
                         st.sampled_from("abc"), st.integers(0, 2), st.sampled_from("xy")), max_size=8)
EXAMPLE = itertools.count()


def apply(src: Path, op: str, top: str, sub: int, name: str, hint: dict[str, set[str]],
          fresh: set[str]) -> None:
    """One change to the tree, recorded as the journal names it: the parent directory and the entry."""
    d = src / top / str(sub)
    p = d / name
    hint.setdefault(str(d), set()).add(name)
    if op == "rename" and p.exists():
        target = d / (name + ".moved")
        hint[str(d)].add(target.name)
        if target.is_dir() and not target.is_symlink():  # moved there in an earlier round
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        os.replace(p, target)
    elif op == "delete" and (p.is_file() or p.is_symlink()):
        p.unlink()
    elif op == "chmod" and p.is_file():
        os.chmod(p, 0o600)
    elif op == "symlink" and not p.is_dir():
        p.unlink(missing_ok=True)
        p.symlink_to("elsewhere")
    elif op == "mkdir" and not p.exists() and not p.is_symlink():
        p.mkdir()
        (p / "inside").write_bytes(b"in a new directory")
        fresh.add(str(p))
    elif op in ("write", "create") and not p.is_dir():
        p.unlink(missing_ok=True)
        p.write_bytes(os.urandom(50 + len(hint[str(d)]) * 7))


@pytest.mark.parametrize("complete", [False, True], ids=["listed", "unlisted"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, more=OPS)
def test_a_hint_naming_what_changed_always_builds_the_full_scans_tree(engine, tmp_path: Path, complete,
                                                                     ops, more) -> None:
    """Twice in a row: the first journal-led backup takes the previous nodes from the files cache rows,
    the second, for the directories the first rebuilt (they have no row of that tree), from the parent
    snapshot's trees."""
    src = tmp_path / f"src{next(EXAMPLE)}"
    make_tree(src)
    time.sleep(0.05)
    settings_ = engine.settings()
    led = backup_paths(settings_, [str(src)])
    for changes in (ops, more):
        hint: dict[str, set[str]] = {}
        fresh: set[str] = set()
        for op in changes:
            apply(src, op[0], op[1], op[2], op[3], hint, fresh)
        led = backup_paths(settings_, [str(src)], RunOptions(changes=DirtyDirs(
            led.snapshot_id, dirty=hint, degraded=fresh, names=hint, names_complete=complete)))
    full = backup_paths(settings_, [str(src)])
    assert tree_of(engine, led.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    assert counts(led) == counts(full)


def test_a_large_directory_named_in_part_builds_the_full_scans_tree(engine, tmp_path: Path) -> None:
    """A directory of more files than a files cache row holds in one part: the journal names a changed,
    a new, a gone and a renamed file, and a changed subdirectory; the tree spliced from the row is the
    full scan's, at the first journal-led backup (from the row) and the second (from the parent tree)."""
    from cbr_agent.backup.filescache import NODES_PER_PART

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "inner").write_bytes(b"inner")
    for i in range(2 * NODES_PER_PART + 10):
        (src / f"f{i:05d}").write_bytes(b"%d" % i)
    time.sleep(0.25)  # past RACY_NS: the listing is trusted
    settings_ = engine.settings()
    led = backup_paths(settings_, [str(src)])
    for round_no in range(2):
        (src / f"f{7 + round_no:05d}").write_bytes(b"changed")
        (src / f"f{NODES_PER_PART + round_no:05d}").unlink()
        (src / f"new{round_no}").write_bytes(b"new")
        os.replace(src / f"f{2 * NODES_PER_PART + round_no:05d}", src / f"a-renamed{round_no}")
        (src / "sub" / "inner").write_bytes(b"inner %d" % round_no)
        names = {str(src): {f"f{7 + round_no:05d}", f"f{NODES_PER_PART + round_no:05d}", f"new{round_no}",
                            f"f{2 * NODES_PER_PART + round_no:05d}", f"a-renamed{round_no}"},
                 str(src / "sub"): {"inner"}}
        led = backup_paths(settings_, [str(src)], RunOptions(changes=DirtyDirs(
            led.snapshot_id, dirty=names, names=names, names_complete=True)))
        renamed = len(b"%d" % (2 * NODES_PER_PART + round_no))  # a new name: read again
        assert led.scan == "journal"
        assert led.bytes_read == len(b"changed") + len(b"new") + renamed + len(b"inner 0")
    full = backup_paths(settings_, [str(src)])
    assert tree_of(engine, led.snapshot_id, src) == tree_of(engine, full.snapshot_id, src)
    assert counts(led) == counts(full)


def damage_blob(engine, blob_id: str) -> None:
    """Flip one byte of a blob's ciphertext in its pack: reading it fails authentication."""
    loc = engine.open().blob_location(bytes.fromhex(blob_id))
    pack = next(p for p in Path(engine.repo_path).rglob(loc.pack_id) if p.is_file())
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as fh:
        fh.seek(loc.offset + loc.length // 2)
        byte = fh.read(1)
        fh.seek(loc.offset + loc.length // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_dirty_directory_takes_its_previous_nodes_from_its_files_cache_row(engine, tmp_path: Path) -> None:
    """When the row holds the very tree the parent snapshot has, the walker takes the nodes from it and
    never reads that tree blob: here the blob is damaged, so reading it would cost every file of the
    directory read again."""
    src = tmp_path / "src"
    make_tree(src)
    d = src / "b" / "2"
    time.sleep(0.25)  # past RACY_NS: the listing is trusted
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    damage_blob(engine, tree_of(engine, first.snapshot_id, d))
    (d / "x").write_bytes(b"named by the journal")
    hint = DirtyDirs(first.snapshot_id, dirty=[str(d)], names={str(d): {"x"}})
    second = backup_paths(settings, [str(src)], RunOptions(changes=hint))
    assert second.scan == "journal" and second.warnings == []
    assert second.bytes_read == len(b"named by the journal")  # y was not read again
    assert (second.files_changed, second.files_unchanged) == (1, first.files_new - 1)


def test_a_files_cache_row_older_than_the_parent_snapshot_is_not_taken(engine, tmp_path: Path) -> None:
    """A journal-led backup writes no row for a directory whose named entries it looked at: the row is
    then of an older tree than the parent snapshot's, and the next journal-led backup must take the
    parent's nodes (here: y's second version), not the row's."""
    src = tmp_path / "src"
    make_tree(src)
    d = src / "c" / "1"
    time.sleep(0.25)  # past RACY_NS
    settings = engine.settings()
    first = backup_paths(settings, [str(src)])
    (d / "y").write_bytes(b"second version of y")

    def named(parent: str, name: str) -> RunOptions:
        return RunOptions(changes=DirtyDirs(parent, dirty=[str(d)], names={str(d): {name}}))

    second = backup_paths(settings, [str(src)], named(first.snapshot_id, "y"))
    (d / "x").write_bytes(b"second version of x")
    third = backup_paths(settings, [str(src)], named(second.snapshot_id, "x"))
    assert second.scan == third.scan == "journal"
    full = backup_paths(settings, [str(src)])
    assert tree_of(engine, third.snapshot_id, d) == tree_of(engine, full.snapshot_id, d)


def test_a_directory_edited_again_takes_its_previous_nodes_from_the_kept_listing(engine,
                                                                                  tmp_path: Path) -> None:
    """A journal-led backup writes no files cache row for a directory it edited; the daemon keeps its
    listing instead, and the next backup that finds it changed again takes the nodes from there and never
    reads that tree blob: here the blob is damaged, so reading it would cost every file read again."""
    from cbr_agent.backup.keptlistings import KeptListings

    src, d, settings, first = backed_up_with(engine, tmp_path, (), [])
    kept = KeptListings()

    def named(parent: str, name: str) -> RunOptions:
        return RunOptions(changes=DirtyDirs(parent, dirty=[str(d)], names={str(d): {name}}), listings=kept)

    (d / "x").write_bytes(b"second version of x")
    second = backup_paths(settings, [str(src)], named(first.snapshot_id, "x"))
    edited = tree_of(engine, second.snapshot_id, d)
    assert kept.get(str(d), edited) is not None
    damage_blob(engine, edited)
    (d / "y").write_bytes(b"second version of y")
    third = backup_paths(settings, [str(src)], named(second.snapshot_id, "y"))
    assert third.scan == "journal" and third.warnings == []
    assert third.bytes_read == len(b"second version of y")  # x was not read again
    assert (third.files_changed, third.files_unchanged) == (1, first.files_new - 1)
    nodes = {n["name"]: n for n in decode_tree(engine.open().load_blob(
        bytes.fromhex(tree_of(engine, third.snapshot_id, d))))}
    assert nodes["x"]["size"] == len(b"second version of x")
    assert nodes["y"]["size"] == len(b"second version of y")

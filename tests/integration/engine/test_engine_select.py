"""restore --include/--exclude/--verify and backup --exclude/--exclude-file/--files-from, real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cbr_agent.restore.verify import verify_restore
from tests.integration.engine.treeutil import build_tree, random_bytes, write


def cli_json(engine, *args: str, code: int = 0) -> dict:
    res = engine.cli(*args, "--json")
    assert res.returncode == code, res.stderr
    return json.loads(res.stdout)


def restored_files(root: Path) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            out.add(str((Path(dirpath) / name).relative_to(root)))
    return out


def make_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "a.txt", b"a")
    write(src / "docs" / "b.txt", b"b")
    write(src / "docs" / "c.log", b"c")
    write(src / "cache" / "d.txt", b"d")
    write(src / "cache" / "deep" / "e.txt", b"e")
    write(src / "photos" / "f.jpg", random_bytes(70_000, 1))
    return src


def test_restore_include_and_exclude(engine, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    cli_json(engine, "backup", str(src))
    rel = str(src).lstrip("/")

    def restore(*args: str, code: int = 0) -> set[str]:
        target = tmp_path / f"r{len(list(tmp_path.glob('r*')))}"
        out = cli_json(engine, "restore", "latest", "--target", str(target), *args, code=code)
        assert out["errors"] == []
        return {p.removeprefix(rel + "/") for p in restored_files(target) if p.startswith(rel + "/")}

    assert restore("--include", "*.txt") == {"a.txt", "docs", "docs/b.txt", "cache", "cache/d.txt",
                                             "cache/deep", "cache/deep/e.txt"}
    assert restore("--include", "*.txt", "--exclude", "cache") == {"a.txt", "docs", "docs/b.txt"}
    assert restore("--exclude", "cache", "--exclude", "*.log") == {"a.txt", "docs", "docs/b.txt", "photos",
                                                                   "photos/f.jpg"}
    # a matching directory brings everything below it; a relative pattern is relative to the backup path
    assert restore("--include", "docs") == {"docs", "docs/b.txt", "docs/c.log"}
    assert restore("--include", "cache/**/*.txt") == {"cache", "cache/d.txt", "cache/deep",
                                                      "cache/deep/e.txt"}  # '**/' can be no directory
    assert restore("--include", "cache/*/*.txt") == {"cache", "cache/deep", "cache/deep/e.txt"}
    assert restore("--include", f"{src}/photos/*") == {"photos", "photos/f.jpg"}
    # --path narrows --include
    assert restore("--path", str(src / "docs"), "--include", "*.txt") == {"docs", "docs/b.txt"}
    # nothing matches: an error, nothing written
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "none"), "--include", "*.xyz")
    assert res.returncode == 1 and "matches the --include" in res.stderr
    assert not (tmp_path / "none").exists()
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "bad"), "--exclude", "a/../b")
    assert res.returncode == 2 and "--exclude" in res.stderr and "Traceback" not in res.stderr


def test_restore_verify_reads_everything_back(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    cli_json(engine, "backup", str(src))
    out = cli_json(engine, "restore", "latest", "--target", str(tmp_path / "r"), "--verify")
    files = sum(1 for _d, _s, fs in os.walk(src) for f in fs
                if Path(_d, f).is_file() and not Path(_d, f).is_symlink())
    assert out["verify"]["errors"] == [] and out["verify"]["files"] == files
    assert out["verify"]["bytes"] >= 2 * (1 << 20)  # the sparse file's data read back too
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "r2"), "--verify",
                     "--include", "*.txt")
    assert res.returncode == 0 and "verified 1 files" in res.stdout and "all match" in res.stdout
    # a restored file changed afterwards: verify names it
    victim = tmp_path / "r" / str(src).lstrip("/") / "random.bin"
    data = bytearray(victim.read_bytes())
    data[1000] ^= 1
    victim.write_bytes(bytes(data))
    (tmp_path / "r" / str(src).lstrip("/") / "text.txt").unlink()
    repo = engine.open()
    result = verify_restore(repo, repo.find_snapshot("latest").tree, str(tmp_path / "r"))
    assert len(result.errors) == 2  # (the hard link to text.txt is another name: still there)
    assert any("random.bin: contents differ" in e for e in result.errors)
    assert any("text.txt: cannot be read back" in e for e in result.errors)


def test_backup_exclude_exclude_file_and_files_from(engine, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    other = tmp_path / "other"
    write(other / "x.txt", b"x")
    write(other / "skip.log", b"s")
    excludes = tmp_path / "excludes"
    excludes.write_text("# comments and blank lines are skipped\n\n*.log\n")
    listing = tmp_path / "paths"
    listing.write_text(f"{src}\n# {tmp_path}/nothing\n{other}\n")
    out = cli_json(engine, "backup", "--files-from", str(listing), "--exclude", "cache",
                   "--exclude", str(src / "photos"), "--exclude-file", str(excludes))
    assert out["paths"] == sorted([str(src), str(other)])
    listed = cli_json(engine, "ls", "latest")
    paths = {e["path"] for e in listed}
    assert str(src / "a.txt") in paths and str(other / "x.txt") in paths
    assert not any(p.endswith(".log") or "/cache" in p or "/photos" in p for p in paths)
    snap = engine.open().find_snapshot("latest")
    assert snap.excludes[str(src)] == ["cache", str(src / "photos"), "*.log"]
    assert snap.excludes[str(other)] == ["cache", "*.log"]
    # an absolute exclude outside every backup path, or a bad glob: one-line usage errors
    for args in (["--exclude", "/elsewhere"], ["--exclude", "../x"], ["--exclude-file", "/nonexistent"],
                 ["--files-from", "/nonexistent"]):
        res = engine.cli("backup", str(src), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1

"""Helper processes for small files: real subprocesses, the same answers as the in-process path, and a
dead helper loses nothing (its batches come back as LOST)."""

from __future__ import annotations

import os
import queue
import signal
import time
from pathlib import Path

import pytest

from cbr_agent import compress as zcompress
from cbr_agent.backup.helperprocs import DEPTH, LOST, HelperPool, init_message
from cbr_agent.backup.smallbatch import Ready, prepare_batch
from cbr_agent.crypto.aead import Sealer
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.repository.codec import BlobCodec
from cbr_agent.repository.objects import FLAG_COMPRESSED

ID_KEY = bytes(range(32))
ENC_KEY = bytes(range(32, 64))
LIMIT = 64 * 1024


@pytest.fixture
def sealer() -> BlobCodec:
    return BlobCodec(ID_KEY, ENC_KEY, 3)


@pytest.fixture
def pool(sealer: BlobCodec):
    p = HelperPool(1, init_message(sealer, LIMIT))
    p.start()
    yield p
    p.close()


def make_files(root: Path, n: int, prefix: str = "f") -> list[tuple[str, int]]:
    root.mkdir(exist_ok=True)
    items = []
    for i in range(n):
        f = root / f"{prefix}{i:04d}"
        f.write_bytes((b"text line %d\n" % i) * (i % 40) + os.urandom(i % 3))
        items.append((str(f), os.lstat(f).st_ino))
    return items


def unseal(blob: tuple, sealer: Sealer) -> bytes:
    blob_id, flags, (nonce, body), raw_length = blob
    payload = sealer.open(nonce + body, blob_id)
    return zcompress.decompress(payload, raw_length) if flags & FLAG_COMPRESSED else payload


def answer(pool: HelperPool, timeout: float = 20) -> tuple[int, object]:
    return pool.results.get(timeout=timeout)


def test_a_helper_answers_what_the_backup_process_would_compute(pool, sealer, tmp_path: Path) -> None:
    items = make_files(tmp_path / "src", 50)
    items.append((str(tmp_path / "missing"), 1))
    assert pool.try_submit(7, (7, items, True))
    token, outcomes = answer(pool)
    local = prepare_batch(items, LIMIT, sealer, LongPaths(), seal=True)
    assert token == 7 and len(outcomes) == len(local) == 51
    aead = Sealer(ENC_KEY)
    for (path, ino), got, want in zip(items, outcomes, local, strict=True):
        if isinstance(want, str):
            assert got == want == "vanished during backup"
            continue
        assert isinstance(got, Ready) and got.node == want.node and got.node["inode"] == ino
        data = Path(path).read_bytes()
        if not data:
            assert got.blob is None
            continue
        assert got.blob[0] == want.blob[0] == sealer.blob_id(data)
        assert unseal(got.blob, aead) == data  # sealed with the keys it was given
        assert got.blob[2] != want.blob[2]  # fresh nonces, never reused across processes


def test_unsealed_batches_carry_the_plaintext(pool, sealer, tmp_path: Path) -> None:
    items = make_files(tmp_path / "src", 5)
    pool.try_submit(1, (1, items, False))
    _token, outcomes = answer(pool)
    for (path, _ino), got in zip(items, outcomes, strict=True):
        data = Path(path).read_bytes()
        assert got.blob == ((sealer.blob_id(data), data) if data else None)


def test_a_busy_helper_refuses_more_than_its_depth(pool, tmp_path: Path) -> None:
    items = make_files(tmp_path / "src", 3)
    pid = pool._helpers[0].proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        accepted = [pool.try_submit(t, (t, items, True)) for t in range(DEPTH + 2)]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert accepted == [True] * DEPTH + [False, False]
    assert sorted(answer(pool)[0] for _ in range(DEPTH)) == list(range(DEPTH))


def test_a_killed_helper_reports_its_batches_lost_and_takes_no_more(pool, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    items = make_files(tmp_path / "src", 3)
    proc = pool._helpers[0].proc
    os.kill(proc.pid, signal.SIGSTOP)
    assert pool.try_submit(1, (1, items, True)) and pool.try_submit(2, (2, items, True))
    proc.kill()
    token, lost = answer(pool)
    assert token == LOST and lost == [1, 2]
    assert not pool.try_submit(3, (3, items, True))  # the caller does it itself
    with pytest.raises(queue.Empty):
        pool.results.get(timeout=0.2)
    assert any("helper process stopped" in r.getMessage() for r in caplog.records)


def test_keys_reach_the_helper_by_pipe_only(pool) -> None:
    pid = pool._helpers[0].proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    for key in (ID_KEY, ENC_KEY):
        for form in (key, key.hex().encode()):
            assert form not in cmdline and form not in environ


def test_helpers_exit_when_the_pool_closes(sealer) -> None:
    p = HelperPool(2, init_message(sealer, LIMIT))
    p.start()
    procs = [h.proc for h in p._helpers]
    assert all(proc.poll() is None for proc in procs)
    started = time.monotonic()
    p.close()
    assert all(proc.returncode == 0 for proc in procs)  # they left on their own (stdin closed)
    assert time.monotonic() - started < 2


def test_a_helper_refuses_to_work_for_other_code(sealer, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    _code, codec, limit = init_message(sealer, LIMIT)
    p = HelperPool(1, ("another version", codec, limit))  # as after an upgrade on disk
    p.start()
    try:
        items = make_files(tmp_path / "src", 2)
        if p.try_submit(1, (1, items, True)):
            assert answer(p) == (LOST, [1])
        assert p._helpers[0].proc.wait(timeout=10) == 3
    finally:
        p.close()
    assert any("upgraded while this backup ran" in r.getMessage() for r in caplog.records)


def test_sigterm_and_sigint_are_left_to_the_backup_process(pool, tmp_path: Path) -> None:
    # systemd stops a service by signalling every process of it: the helpers must outlive that signal
    # and leave when the backup process closes their pipe
    items = make_files(tmp_path / "src", 2)
    assert pool.try_submit(4, (4, items, True)) and answer(pool)[0] == 4  # up and serving
    pid = pool._helpers[0].proc.pid
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert pool.try_submit(5, (5, items, True))
    assert answer(pool)[0] == 5

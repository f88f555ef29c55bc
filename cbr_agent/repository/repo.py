"""The Repository: open/init with a password, blobs, snapshots, locks, check, prune."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from cbr_agent import compress as zcompress
from cbr_agent.chunking import DEFAULT_PARAMS, Chunker, ChunkerParams
from cbr_agent.crypto import (
    AuthenticationFailed,
    KdfParams,
    KeyFileDamaged,
    MasterKey,
    make_key_file,
    open_key_file,
)
from cbr_agent.errors import (
    IntegrityError,
    RepositoryError,
    RepositoryNotFound,
    WrongPassword,
)
from cbr_agent.repository.backend import Backend
from cbr_agent.repository.backends import BackendOptions, open_backend
from cbr_agent.repository.codec import BlobCodec
from cbr_agent.repository.index import BlobLocation, MasterIndex, decode_index, encode_index
from cbr_agent.repository.lock import RepositoryLock, acquire_waiting
from cbr_agent.repository.objects import (
    AAD_CONFIG,
    AAD_INDEX,
    AAD_PACK_HEADER,
    AAD_SNAPSHOT,
    content_name,
    open_object,
)
from cbr_agent.repository.pack import TAIL, PackEntry, decode_header, entries_fit, header_range
from cbr_agent.repository.snapshot import Snapshot, decode_snapshot, encode_snapshot
from cbr_agent.repository.writer import BlobWriter

log = logging.getLogger(__name__)

FORMAT_MAGIC = "cbr-agent-repository"
FORMAT_VERSION = 1


class Repository:
    """An opened repository. Thread-safe for blob loads, writers and snapshot saves."""

    def __init__(self, backend: Backend, key: MasterKey, config: dict[str, Any]) -> None:
        self.backend = backend
        self.key = key
        self.config = config
        self.id: str = config["id"]
        self.chunker: ChunkerParams = ChunkerParams.from_dict(config["chunker"])
        self.index = MasterIndex()
        self.index_files: set[str] = set()
        #: index files that could not be read at open (named by check; prune rebuilds from pack headers)
        self.damaged_index_files: dict[str, str] = {}
        self._held_locks: list[RepositoryLock] = []
        #: seconds a lock waits for a conflicting one to go (``--retry-lock``); 0 fails at once
        self.lock_wait = 0.0
        self._locks_mutex = threading.Lock()
        #: name of the key file the password opened (``keys/<name>``), None when not known
        self.key_name: str | None = None
        self._codec: BlobCodec | None = None

    # ---------------------------------------------------------------- init / open
    @classmethod
    def init(
        cls,
        url: str | Backend,
        password: str,
        *,
        chunker: ChunkerParams | None = None,
        kdf: KdfParams | None = None,
        options: BackendOptions | None = None,
    ) -> Repository:
        """Create a new repository at ``url`` (or in a backend object) (RepositoryExists if one is there or
        the location is not empty)."""
        if not password:
            raise RepositoryError("refusing to create a repository with an empty password")
        backend = _backend(url, options)
        backend.create()
        key = MasterKey.generate()
        config: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "id": secrets.token_hex(32),
            "chunker": (chunker or DEFAULT_PARAMS).to_dict(),
            "compression": {"algorithm": "zstd", "level": zcompress.DEFAULT_LEVEL},
            "created": datetime.now(timezone.utc).isoformat(),
        }
        key_file = make_key_file(key, password, kdf)
        backend.put("keys/" + content_name(key_file), key_file)
        sealed = key.sealer.seal(json.dumps(config, sort_keys=True).encode(), AAD_CONFIG)
        head = {
            "format": FORMAT_MAGIC,
            "version": FORMAT_VERSION,
            "id": config["id"],
            "sealed": base64.b64encode(sealed).decode("ascii"),
        }
        backend.put("config", json.dumps(head, indent=1).encode() + b"\n")  # last: marks it complete
        repo = cls(backend, key, config)
        repo.key_name = content_name(key_file)
        return repo

    @classmethod
    def open(cls, url: str | Backend, password: str, *, options: BackendOptions | None = None) -> Repository:
        """Open an existing repository: RepositoryNotFound, WrongPassword, IntegrityError, RepositoryError."""
        backend = _backend(url, options)
        head = _read_config_head(backend)
        key, key_name = _unlock(backend, password)
        try:
            sealed = base64.b64decode(head["sealed"], validate=True)
            config = json.loads(key.sealer.open(sealed, AAD_CONFIG))
        except (AuthenticationFailed, ValueError, KeyError, TypeError, RecursionError):
            raise IntegrityError(f"repository config of {backend.location} is damaged") from None
        if (
            not isinstance(config, dict)
            or config.get("id") != head.get("id")
            or config.get("version") != FORMAT_VERSION
        ):
            raise IntegrityError(f"repository config of {backend.location} is damaged (id/version mismatch)")
        try:
            repo = cls(backend, key, config)
            repo.compression_level  # noqa: B018 - read now so a bad value is named here, not mid-backup
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise IntegrityError(
                f"repository config of {backend.location} is damaged ({type(exc).__name__}: {exc})"
            ) from None
        repo.key_name = key_name
        repo.load_index()
        return repo

    def add_key(self, password: str, *, kdf: KdfParams | None = None) -> str:
        """Let another password open this repository; returns the key file name."""
        if not password:
            raise RepositoryError("refusing an empty password")
        key_file = make_key_file(self.key, password, kdf)
        name = content_name(key_file)
        self.backend.put("keys/" + name, key_file)
        return name

    @property
    def location(self) -> str:
        return self.backend.location

    # ---------------------------------------------------------------- index
    def load_index(self) -> None:
        """(Re)load every index file; damaged ones are skipped and remembered in damaged_index_files."""
        index = MasterIndex()
        files: set[str] = set()
        damaged: dict[str, str] = {}
        for name, _size in self.backend.list("index"):
            what = f"index file index/{name}"
            try:
                try:
                    stored = self.backend.get("index/" + name)
                except FileNotFoundError:
                    continue  # removed meanwhile (by a prune that wrote its replacement first)
                plain = open_object(self.key.sealer, stored, AAD_INDEX, what)
                try:
                    index.add_index_file(plain)
                except ValueError as exc:
                    raise IntegrityError(f"{what} is damaged: {exc}") from None
            except IntegrityError as exc:
                log.warning("%s", exc)
                damaged[name] = str(exc)
                continue
            files.add(name)
        self.index, self.index_files, self.damaged_index_files = index, files, damaged

    def refresh_index(self) -> None:
        """Catch up with what other processes wrote since the index was loaded, for a long-lived
        process (the daemon) that keeps the repository open: index files are immutable and named by
        their content, so new ones are added; if any went away (prune, repair) all are read again.
        RepositoryNotFound/RepositoryError if the repository is gone or was replaced by another."""
        if _read_config_head(self.backend).get("id") != self.id:
            raise RepositoryError(f"the repository at {self.backend.location} was replaced by another one")
        names = {name for name, _size in self.backend.list("index")}
        known = self.index_files | set(self.damaged_index_files)
        if not known <= names:
            self.load_index()
            return
        for name in sorted(names - known):
            what = f"index file index/{name}"
            try:
                stored = self.backend.get("index/" + name)
            except FileNotFoundError:  # removed meanwhile: a prune is rewriting the index
                self.load_index()
                return
            try:
                plain = open_object(self.key.sealer, stored, AAD_INDEX, what)
                try:
                    self.index.add_index_file(plain)
                except ValueError as exc:
                    raise IntegrityError(f"{what} is damaged: {exc}") from None
            except IntegrityError as exc:
                log.warning("%s", exc)
                self.damaged_index_files[name] = str(exc)
                continue
            self.index_files.add(name)

    def read_index_file(self, name: str) -> dict[str, list[PackEntry]]:
        what = f"index file index/{name}"
        try:
            stored = self.backend.get("index/" + name)
        except FileNotFoundError:
            raise IntegrityError(f"{what} is missing") from None
        plain = open_object(self.key.sealer, stored, AAD_INDEX, what)
        try:
            return decode_index(plain)
        except ValueError as exc:
            raise IntegrityError(f"{what} is damaged: {exc}") from None

    def write_index_file(self, packs: dict[str, list[PackEntry]]) -> str:
        """Seal and store an index file for packs that are already durable; returns its name."""
        stored = self.key.sealer.seal(encode_index(packs), AAD_INDEX)
        name = content_name(stored)
        self.backend.put("index/" + name, stored)
        self.index_files.add(name)
        return name

    # ---------------------------------------------------------------- blobs
    def new_chunker(self) -> Chunker:
        """A content-defined chunker with this repository's sizes and secret seed."""
        return Chunker(self.chunker, seed=self.key.chunker_seed)

    @property
    def compression_level(self) -> int:
        """The zstd level new blobs are compressed with (recorded in the repository config)."""
        return int(self.config.get("compression", {}).get("level", zcompress.DEFAULT_LEVEL))

    @property
    def codec(self) -> BlobCodec:
        """Blob ids, compression and sealing with this repository's keys and level (picklable: what the
        writer and the backup's helper processes seal with)."""
        codec = self._codec
        if codec is None or codec.level != self.compression_level:
            codec = self._codec = BlobCodec.for_key(self.key, self.compression_level)
        return codec

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """Keyed BLAKE3 (32 bytes) of a blob's plaintext; thread-safe."""
        return self.key.blob_id(data)

    def writer(self, **options: Any) -> BlobWriter:
        return BlobWriter(self, **options)

    def has_blob(self, blob_id: bytes) -> bool:
        return blob_id in self.index

    def has_all_blobs(self, blob_ids: Iterable[bytes]) -> bool:
        """``all(has_blob(i) for i in blob_ids)``, without a Python call per id."""
        return self.index.has_all(blob_ids)

    def blob_location(self, blob_id: bytes) -> BlobLocation | None:
        return self.index.lookup(blob_id)

    def load_blob(self, blob_id: bytes) -> bytes:
        """The plaintext of a blob, verified against its id; IntegrityError (naming the pack) otherwise."""
        loc = self.index.lookup(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()} is not in the repository index")
        try:
            stored = self.backend.get("data/" + loc.pack_id, loc.offset, loc.length)
        except FileNotFoundError:
            raise IntegrityError(f"pack {loc.pack_id} holding blob {blob_id.hex()} is missing") from None
        return self.decode_blob(blob_id, loc, stored)

    def decode_blob(self, blob_id: bytes, loc: BlobLocation, stored: bytes | memoryview) -> bytes:
        """The verified plaintext of a blob as stored in its pack (see :meth:`BlobCodec.decode`)."""
        return self.codec.decode(blob_id, loc, stored)

    def read_pack_header(self, pack_id: str, size: int, data: bytes | None = None) -> list[PackEntry]:
        """The entries a pack's own header lists (from ``data`` when the whole pack is at hand, else two
        small range reads). IntegrityError naming the pack when damaged, FileNotFoundError when gone."""
        name = "data/" + pack_id
        what = f"header of pack {pack_id}"
        try:
            end = max(0, size - TAIL.size)
            tail = self.backend.get(name, end) if data is None else data[end:]
            offset, length = header_range(size, tail)
            sealed = (
                data[offset : offset + length] if data is not None else self.backend.get(name, offset, length)
            )
            plain = open_object(self.key.sealer, sealed, AAD_PACK_HEADER, what)
            entries = decode_header(plain)
            misfit = entries_fit(entries, offset)
            if misfit:
                raise ValueError(misfit)
        except ValueError as exc:
            raise IntegrityError(f"{what} is damaged: {exc}") from None
        return entries

    # ---------------------------------------------------------------- snapshots
    def save_snapshot(self, snapshot: Snapshot) -> str:
        """Store a snapshot (after its trees are flushed); returns and sets its id.

        Refuses a snapshot whose root tree is not durably indexed yet: that would break the write order."""
        try:
            root = bytes.fromhex(snapshot.tree)
        except ValueError:
            raise RepositoryError(f"snapshot tree id {snapshot.tree!r} is not hex") from None
        if root not in self.index:
            raise RepositoryError(
                f"snapshot root tree {snapshot.tree} is not in the repository index",
                hint="flush the blob writer before saving the snapshot",
            )
        stored = self.key.sealer.seal(encode_snapshot(snapshot), AAD_SNAPSHOT)
        name = content_name(stored)
        self.backend.put("snapshots/" + name, stored)
        snapshot.id = name
        return name

    def load_snapshot(self, snapshot_id: str) -> Snapshot:
        what = f"snapshot {snapshot_id}"
        try:
            stored = self.backend.get("snapshots/" + snapshot_id)
        except FileNotFoundError:
            raise RepositoryError(f"no snapshot {snapshot_id} in the repository") from None
        plain = open_object(self.key.sealer, stored, AAD_SNAPSHOT, what)
        try:
            return decode_snapshot(plain, id=snapshot_id)
        except ValueError as exc:
            raise IntegrityError(f"{what} is damaged: {exc}") from None

    def snapshot_ids(self) -> list[str]:
        return sorted(name for name, _size in self.backend.list("snapshots"))

    def list_snapshots(self, *, strict: bool = False) -> list[Snapshot]:
        """Every readable snapshot, oldest first (damaged ones are logged and skipped unless strict)."""
        out = []
        for sid in self.snapshot_ids():
            try:
                out.append(self.load_snapshot(sid))
            except IntegrityError as exc:
                if strict:
                    raise
                log.warning("%s", exc)
        out.sort(key=lambda s: (_aware(s.time), s.id or ""))
        return out

    def find_snapshot(self, ref: str) -> Snapshot:
        """A snapshot by full id, unique id prefix, or ``latest``."""
        if ref == "latest":
            snaps = self.list_snapshots()
            if not snaps:
                raise RepositoryError("the repository has no snapshots yet")
            return snaps[-1]
        return self.load_snapshot(self.resolve_snapshot_id(ref))

    def resolve_snapshot_id(self, ref: str) -> str:
        """The full id of the snapshot a full id or unique id prefix names, without reading it (so that a
        damaged snapshot can still be named, and forgotten)."""
        ref = ref.lower()
        matches = [sid for sid in self.snapshot_ids() if sid.startswith(ref)] if ref else []
        if not matches:
            raise RepositoryError(f"no snapshot matches {ref!r}", hint="list them with 'cbr-agent snapshots'")
        if len(matches) > 1:
            raise RepositoryError(f"snapshot id prefix {ref!r} is ambiguous ({len(matches)} snapshots)")
        return matches[0]

    def forget_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot (its data stays until prune)."""
        if not self.backend.exists("snapshots/" + snapshot_id):
            raise RepositoryError(f"no snapshot {snapshot_id} in the repository")
        self.backend.delete("snapshots/" + snapshot_id)

    # ---------------------------------------------------------------- locks
    @contextmanager
    def lock(self, *, exclusive: bool, wait: float | None = None,
             cancel: threading.Event | None = None) -> Iterator[None]:
        """Shared (backup) or exclusive (prune) lock; RepositoryLocked when another run holds a
        conflicting one after waiting ``wait`` seconds (default :attr:`lock_wait`, 0: fail at once)."""
        held = RepositoryLock(self.backend, self.key.sealer, exclusive=exclusive)
        acquire_waiting(held, self.lock_wait if wait is None else wait, cancel=cancel)
        with self._locks_mutex:
            self._held_locks.append(held)
        try:
            yield
        except BaseException:
            with self._locks_mutex:
                self._held_locks.remove(held)
            try:
                held.release()
            except RepositoryError as exc:  # the storage that failed the run often fails this too
                log.warning("could not release the repository lock: %s", exc)
            raise
        with self._locks_mutex:
            self._held_locks.remove(held)
        held.release()

    def holds_exclusive_lock(self) -> bool:
        with self._locks_mutex:
            return any(lock.exclusive for lock in self._held_locks)


def _backend(url: str | Backend, options: BackendOptions | None) -> Backend:
    return open_backend(url, options) if isinstance(url, str) else url


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _read_config_head(backend: Backend) -> dict[str, Any]:
    if not backend.is_present():
        raise RepositoryNotFound(f"no repository at {backend.location}")
    try:
        raw = backend.get("config")
    except FileNotFoundError:
        if backend.is_empty():
            raise RepositoryNotFound(f"no repository at {backend.location}") from None
        raise RepositoryError(
            f"{backend.location} is not a cbr-agent repository (no config; a foreign or unfinished one)",
            hint="check the 'repository' setting",
        ) from None
    try:
        head = json.loads(raw)
        if not isinstance(head, dict):
            raise ValueError
    except (ValueError, RecursionError):
        raise RepositoryError(
            f"{backend.location} is not a cbr-agent repository, or its config file is damaged "
            "(config is not JSON)"
        ) from None
    if head.get("format") != FORMAT_MAGIC:
        raise RepositoryError(f"{backend.location} is not a cbr-agent repository (config is not ours)")
    version = head.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RepositoryError(f"{backend.location}: the repository config file is damaged (no valid "
                              "format version)")
    if version != FORMAT_VERSION:
        raise RepositoryError(
            f"repository {backend.location} has format version {version} (by its config file), this agent "
            f"reads {FORMAT_VERSION}",
            hint="upgrade cbr-agent" if version > FORMAT_VERSION else None,
        )
    return head


def _unlock(backend: Backend, password: str) -> tuple[MasterKey, str]:
    damaged: list[str] = []
    tried = 0
    for name, _size in sorted(backend.list("keys")):
        try:
            raw = backend.get("keys/" + name)
        except FileNotFoundError:
            continue
        tried += 1
        try:
            key = open_key_file(raw, password)
        except KeyFileDamaged as exc:
            damaged.append(f"keys/{name} ({exc})")
            continue
        if key is not None:
            return key, name
    if tried == 0:
        raise RepositoryError(f"repository {backend.location} has no key files", hint="it is damaged")
    if damaged and len(damaged) == tried:
        raise IntegrityError(f"every key file of {backend.location} is damaged: {', '.join(damaged)}")
    note = f" (damaged: {', '.join(damaged)})" if damaged else ""
    raise WrongPassword(f"wrong password for repository {backend.location}{note}")

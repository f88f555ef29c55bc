"""Read the metadata of an .rpm without rpm(8): the lead, the signature and the main header.

Enough of the format (rpm's "Package File Format" document) for the tests to check what the package
declares: its name, version, requirements, file names and modes, and maintainer scripts. The payload
is not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER_MAGIC = b"\x8e\xad\xe8\x01"
LEAD_SIZE = 96

TAG_NAME = 1000
TAG_VERSION = 1001
TAG_RELEASE = 1002
TAG_ARCH = 1022
TAG_PREIN = 1023
TAG_POSTIN = 1024
TAG_PREUN = 1025
TAG_POSTUN = 1026
TAG_FILEMODES = 1030
TAG_FILEFLAGS = 1037
TAG_REQUIRENAME = 1049
TAG_DIRINDEXES = 1116
TAG_BASENAMES = 1117
TAG_DIRNAMES = 1118

RPMFILE_CONFIG = 1 << 0
RPMFILE_NOREPLACE = 1 << 4

# type -> (struct format of one item, size) for fixed-size types
_FIXED = {2: ("B", 1), 3: (">H", 2), 4: (">I", 4), 5: (">Q", 8)}
_STRING, _BIN, _STRING_ARRAY, _I18NSTRING = 6, 7, 8, 9


def _strings(store: bytes, offset: int, count: int) -> list[str]:
    out = []
    for _ in range(count):
        end = store.index(b"\0", offset)
        out.append(store[offset:end].decode("utf-8", "replace"))
        offset = end + 1
    return out


def _read_header(data: bytes, pos: int) -> tuple[dict[int, Any], int]:
    if data[pos:pos + 4] != HEADER_MAGIC:
        raise ValueError(f"no rpm header magic at offset {pos}")
    nindex, hsize = struct.unpack(">II", data[pos + 8:pos + 16])
    entries_at = pos + 16
    store_at = entries_at + 16 * nindex
    store = data[store_at:store_at + hsize]
    tags: dict[int, Any] = {}
    for i in range(nindex):
        tag, kind, offset, count = struct.unpack(">IIII", data[entries_at + 16 * i:entries_at + 16 * i + 16])
        if kind in _FIXED:
            fmt, size = _FIXED[kind]
            tags[tag] = [struct.unpack(fmt, store[offset + k * size:offset + (k + 1) * size])[0]
                         for k in range(count)]
        elif kind in (_STRING, _STRING_ARRAY, _I18NSTRING):
            values = _strings(store, offset, count if kind != _STRING else 1)
            tags[tag] = values[0] if kind == _STRING else values
        elif kind == _BIN:
            tags[tag] = store[offset:offset + count]
    return tags, store_at + hsize


@dataclass(frozen=True)
class RpmFile:
    path: str
    mode: int
    flags: int


@dataclass(frozen=True)
class RpmInfo:
    tags: dict[int, Any]

    @property
    def name(self) -> str:
        return str(self.tags[TAG_NAME])

    @property
    def version(self) -> str:
        return f"{self.tags[TAG_VERSION]}-{self.tags[TAG_RELEASE]}"

    @property
    def arch(self) -> str:
        return str(self.tags[TAG_ARCH])

    @property
    def requires(self) -> list[str]:
        return list(self.tags.get(TAG_REQUIRENAME, []))

    def script(self, tag: int) -> str | None:
        value = self.tags.get(tag)
        return None if value is None else str(value)

    @property
    def files(self) -> dict[str, RpmFile]:
        dirs = self.tags.get(TAG_DIRNAMES, [])
        names = self.tags.get(TAG_BASENAMES, [])
        indexes = self.tags.get(TAG_DIRINDEXES, [])
        modes = self.tags.get(TAG_FILEMODES, [0] * len(names))
        flags = self.tags.get(TAG_FILEFLAGS, [0] * len(names))
        out = {}
        for name, index, mode, flag in zip(names, indexes, modes, flags, strict=True):
            path = dirs[index] + name
            out[path] = RpmFile(path, mode, flag)
        return out


def read_rpm(path: Path) -> RpmInfo:
    data = path.read_bytes()
    if data[:4] != b"\xed\xab\xee\xdb":
        raise ValueError(f"{path} is not an rpm (no lead magic)")
    _signature, end = _read_header(data, LEAD_SIZE)
    end += (8 - end % 8) % 8  # the signature is padded to 8 bytes
    tags, _ = _read_header(data, end)
    return RpmInfo(tags)

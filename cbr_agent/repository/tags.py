"""Changing the tags of snapshots.

A snapshot is an immutable object named by its hash, so new tags mean a new snapshot object (same tree,
time, host and paths; ``original`` names the first snapshot of the line) and the old object deleted,
in that order: a crash in between leaves both, never neither. Versions of cbr-agent that do not know
``original`` ignore it (unknown snapshot fields are tolerated), so the repository format is unchanged.
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cbr_agent.errors import UsageError

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository
    from cbr_agent.repository.snapshot import Snapshot

MAX_TAG_LENGTH = 128


def check_tag(tag: str) -> str:
    """A tag as stored; UsageError when it is empty, too long, or holds a comma or control character
    (a comma separates tags in ``--tag a,b``)."""
    if not tag or tag != tag.strip():
        raise UsageError(f"tag {tag!r} is empty or starts or ends with a space")
    if "," in tag:
        raise UsageError(f"tag {tag!r} holds a comma (commas separate tags: give them one by one)")
    if len(tag) > MAX_TAG_LENGTH or any(unicodedata.category(c)[0] == "C" for c in tag):
        raise UsageError(f"tag {tag!r} is longer than {MAX_TAG_LENGTH} characters or holds a control "
                         "character")
    return tag


def split_tags(values: Iterable[str]) -> list[str]:
    """``--tag a,b --tag c`` as ``[a, b, c]``, each checked, duplicates dropped, order kept."""
    out: list[str] = []
    for value in values:
        for tag in value.split(","):
            if check_tag(tag) not in out:
                out.append(tag)
    return out


def new_tags(current: Sequence[str], *, add: Sequence[str] = (), remove: Sequence[str] = (),
             set_to: Sequence[str] | None = None) -> list[str]:
    """The tags after a change: ``set_to`` replaces them all; else ``remove`` then ``add``. Sorted."""
    if set_to is not None:
        return sorted(set(set_to))
    return sorted((set(current) - set(remove)) | set(add))


def retag(repo: Repository, snapshot: Snapshot, tags: Sequence[str]) -> Snapshot | None:
    """Replace ``snapshot`` by a copy with ``tags``; None (and nothing written) when they are the same.
    The caller holds the exclusive lock."""
    if sorted(set(snapshot.tags)) == sorted(set(tags)):
        return None
    if snapshot.id is None:
        raise ValueError("snapshot has no id")
    replacement = copy.deepcopy(snapshot)
    replacement.tags = list(tags)
    replacement.original = snapshot.original or snapshot.id
    replacement.id = None
    repo.save_snapshot(replacement)
    if replacement.id != snapshot.id:
        repo.forget_snapshot(snapshot.id)
    return replacement

"""Child process for the crash tests: runs prune or a backup and reports progress on stdout.

python -m tests.integration.repository.crash_child prune REPO
python -m tests.integration.repository.crash_child backup REPO SEED COUNT
"""

from __future__ import annotations

import sys

from cbr_agent.repository import Repository
from cbr_agent.repository.prune import prune
from tests.integration.repository.crash_data import files_for
from tests.unit.repository.repo_helpers import store_files


def main() -> None:
    mode, location = sys.argv[1], sys.argv[2]
    repo = Repository.open(location, "pw")
    if mode == "prune":
        prune(repo, hook=lambda stage: print(stage, flush=True))
    else:
        seed, count = int(sys.argv[3]), int(sys.argv[4])
        original_writer = repo.writer

        def writer(**options):  # index after every pack, as a long backup does every minute
            options.setdefault("index_interval", 0.0)
            w = original_writer(**options)
            original_add = w.add

            def add(blob_id, data, *, kind="data"):
                stored = original_add(blob_id, data, kind=kind)
                print("added", flush=True)
                return stored

            w.add = add  # type: ignore[method-assign]
            return w

        repo.writer = writer  # type: ignore[method-assign]
        with repo.lock(exclusive=False):
            store_files(repo, files_for(seed, count), pack_size=16 * 1024)
    print("done", flush=True)


if __name__ == "__main__":
    main()

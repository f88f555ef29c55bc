"""Property: any sequence of add-path / remove-path / heartbeat calls leaves the agent's paths exactly
as a plain dictionary model says (order of first addition, excludes replaced only when given)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cbr_agent.api.models import AgentRegistration
from cbr_agent.controlplane.embedded import EmbeddedControlPlane

ROOTS = ["/data", "/srv/www", "/home/ü", "/"]
SPELLINGS = {root: [root, root + "/", root.replace("/", "//", 1)] if root != "/" else ["/", "//"]
             for root in ROOTS}
EXCLUDES = ["*.tmp", "node_modules", "cache/*", "**/build"]


def normal(spelling: str) -> str:
    return next(root for root, variants in SPELLINGS.items() if spelling in variants)


class PathsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.plane = EmbeddedControlPlane(Path(self.dir) / "cp.db", "p")
        self.reg = AgentRegistration("agent-1", "h", "10.0.0.1", "linux")
        self.plane.register_agent(self.reg)
        self.model: dict[str, tuple[str, ...]] = {}

    @rule(spellings=st.lists(st.sampled_from([s for v in SPELLINGS.values() for s in v]), min_size=1,
                             max_size=4),
          with_excludes=st.dictionaries(st.sampled_from(ROOTS), st.lists(st.sampled_from(EXCLUDES),
                                                                         max_size=3), max_size=2))
    def add(self, spellings: list[str], with_excludes: dict[str, list[str]]) -> None:
        excludes = {root: names for root, names in with_excludes.items()
                    if root in {normal(s) for s in spellings}}
        result = self.plane.add_paths(self.reg.agent_id, spellings, excludes)
        expected_added = [p for p in dict.fromkeys(normal(s) for s in spellings) if p not in self.model]
        assert list(result.added) == expected_added
        for path in dict.fromkeys(normal(s) for s in spellings):
            if path in excludes:
                self.model[path] = tuple(dict.fromkeys(excludes[path]))
            else:
                self.model.setdefault(path, ())

    @rule(spellings=st.lists(st.sampled_from([s for v in SPELLINGS.values() for s in v]), min_size=1,
                             max_size=3))
    def remove(self, spellings: list[str]) -> None:
        result = self.plane.remove_paths(self.reg.agent_id, spellings)
        wanted = list(dict.fromkeys(normal(s) for s in spellings))
        assert list(result.removed) == [p for p in wanted if p in self.model]
        assert list(result.not_existed) == [p for p in wanted if p not in self.model]
        for path in wanted:
            self.model.pop(path, None)

    @rule()
    def heartbeat(self) -> None:
        agent = self.plane.register_agent(self.reg)
        assert [p.dir_path for p in agent.paths or ()] == list(self.model)

    @invariant()
    def paths_match_model(self) -> None:
        paths = self.plane.show_agent(self.reg.agent_id).paths or ()
        assert [(p.dir_path, p.excludes) for p in paths] == list(self.model.items())

    def teardown(self) -> None:
        self.plane.close()
        shutil.rmtree(self.dir, ignore_errors=True)


PathsMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)
TestPathsMachine = PathsMachine.TestCase

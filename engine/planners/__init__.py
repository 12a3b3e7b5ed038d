"""Restore planners: turn a checkpoint's process table into a plan. Each follows `Planner`
and is found through the entry-point group `ckpt.planners`; `make_plan` proves its plan with
engine.validate before anything runs it. The default one, ours, is taken without looking at
the entry points: that lookup (importlib.metadata, every installed distribution's metadata)
cost a new `ckpt restore` process ~20 ms."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Protocol

from engine.errors import CkptError
from engine.plan import Plan, Table
from engine.validate import validate

GROUP = "ckpt.planners"
DEFAULT = "standard"  # engine.planners.standard, registered under this name too

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint


class Planner(Protocol):
    """Builds the plan of a table, or raises PlanError saying what cannot be built and why."""

    name: str

    def plan(self, table: Table) -> Plan:
        """The operations that rebuild the table."""
        ...


class UnknownPlanner(CkptError):
    """No planner of that name is installed."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, known)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return f"unknown planner {self.name!r} (known: {', '.join(self.known) or 'none'})"


@cache
def _registered() -> dict[str, EntryPoint]:
    """The group's entry points by name, looked up once per process: the lookup reads every
    installed distribution's metadata (6 ms here, a third of a small restore)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def known() -> list[str]:
    """Names of the installed planners."""
    return sorted(_registered())


def load(name: str = DEFAULT) -> Planner:
    """The planner registered under that name."""
    if name == DEFAULT:
        from engine.planners.standard import Standard

        return Standard()
    ep = _registered().get(name)
    if ep is None:
        raise UnknownPlanner(name, known())
    planner: Planner = ep.load()()
    return planner


def make_plan(table: Table, planner: Planner | str | None = None) -> Plan:
    """Plan the table with the planner (an object, a name, or the standard one), then validate."""
    if planner is None or isinstance(planner, str):
        planner = load(planner or DEFAULT)
    plan = planner.plan(table)
    validate(table, plan)
    return plan

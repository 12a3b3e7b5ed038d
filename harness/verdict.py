"""Verdicts (an enum, as LTP distinguishes them) and the per-test result record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from harness.spec import Spec


class Verdict(str, Enum):
    """What happened to one test in one flavor with one engine."""

    PASS = "pass"
    FAIL = "fail"
    BROKEN = "broken"  # the harness or the program could not run the test
    SKIP = "skip"
    XFAIL = "xfail"  # failed, as its spec expects for this engine
    XPASS = "xpass"  # passed, though its spec expects a failure: the debt is paid, update the spec

    @property
    def unexpected(self) -> bool:
        """A verdict that makes the run fail."""
        return self in (Verdict.FAIL, Verdict.BROKEN, Verdict.XPASS)


STEPS = ("start", "dump", "restore", "verify")


@dataclass(frozen=True, slots=True)
class Result:
    """One test's outcome: verdict, the step that decided it, and why."""

    test: str
    flavor: str
    engine: str
    verdict: Verdict
    step: str = ""
    reason: str = ""
    features: tuple[str, ...] = ()
    seconds: float = 0.0
    batch: str = ""
    diff: tuple[str, ...] = ()
    output: str = ""
    expected: str = field(default="")  # the spec's reason when an engine failure is expected

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (verdict as its string)."""
        d = asdict(self)
        d["verdict"] = self.verdict.value
        d["features"] = list(self.features)
        d["diff"] = list(self.diff)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """The inverse of to_dict."""
        d = dict(d)
        d["verdict"] = Verdict(d["verdict"])
        d["features"] = tuple(d.get("features", ()))
        d["diff"] = tuple(d.get("diff", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def settle(result: Result, spec: Spec, restored: bool = True) -> Result:
    """Apply the spec's expected failure for this engine and flavor: fail -> xfail, pass -> xpass.
    An expectation that names its step covers a failure at that step only."""
    exp = spec.expectation(result.engine, result.flavor, restored)
    if exp is None:
        return result
    note = exp.reason + (f" ({exp.tracking})" if exp.tracking else "")
    if result.verdict in (Verdict.FAIL, Verdict.BROKEN):
        if exp.at and result.step != exp.at:
            return replace(result, reason=f"{result.reason} (the spec expects a failure at {exp.at}, "
                                          f"not at {result.step or 'the end'}: {note})")
        return replace(result, verdict=Verdict.XFAIL, expected=note)
    if result.verdict is Verdict.PASS:
        return replace(result, verdict=Verdict.XPASS, expected=note,
                       reason=f"passed, but the spec expects a failure: {note}")
    return result

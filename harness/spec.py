"""Test specs: YAML files loaded with yaml.safe_load into validated, frozen dataclasses."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from harness import paths
from harness.errors import SpecError
from harness.needs import PROBES

FLAVORS = ("host", "ns")
FLAGS = frozenset({"exclusive", "crfail", "noauto", "nocheckonly"})
ASPECTS = ("tree", "threads", "maps", "fds", "sigmask", "fs", "ns", "sched")
KEYS = frozenset(
    {"description", "features", "program", "options", "flavors", "needs", "flags",
     "timeout", "compare", "expect"}
)
EXPECT_KEYS = frozenset({"fail", "tracking", "flavors", "at"})
STEPS = ("dump", "restore", "verify")  # where an expected failure shows


@dataclass(frozen=True, slots=True)
class Expectation:
    """A known failure of one engine: a debt with a reason."""

    engine: str
    reason: str
    tracking: str = ""
    flavors: tuple[str, ...] = ()
    at: str = ""  # the step it fails at (STEPS); "" for any

    def applies(self, engine: str, flavor: str, restored: bool = True) -> bool:
        """True when this expectation covers that engine in that flavor; a failure after the
        dump (of restored state) is not expected of a run that restores nothing (--norst)."""
        return engine == self.engine and (not self.flavors or flavor in self.flavors) \
            and (restored or self.at in ("", "dump"))


@dataclass(frozen=True, slots=True)
class Spec:
    """One test: what program to run, with what, where, covering which features."""

    name: str
    path: Path
    description: str
    features: tuple[str, ...]
    program: Path
    source: Path | None
    options: tuple[tuple[str, str], ...] = ()
    flavors: tuple[str, ...] = FLAVORS
    needs: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    timeout: float = 10.0
    compare: tuple[str, ...] = ASPECTS
    expect: tuple[Expectation, ...] = field(default=())

    @property
    def kind(self) -> str:
        """static, transition, or the first directory of the name."""
        return kind_of(self.name)

    @property
    def exclusive(self) -> bool:
        """Runs alone: never shares a dump with other tests."""
        return "exclusive" in self.flags or "crfail" in self.flags

    def expectation(self, engine: str, flavor: str, restored: bool = True) -> Expectation | None:
        """The expected failure for that engine and flavor (in a run that restores, or not), if any."""
        return next((e for e in self.expect if e.applies(engine, flavor, restored)), None)

    def argv(self) -> list[str]:
        """The program and its spec options, without the protocol options."""
        return [str(self.program)] + [f"--{k}={v}" for k, v in self.options]


def kind_of(name: str) -> str:
    """A test's kind is the first directory of its name (static when there is none)."""
    return name.split("/", 1)[0] if "/" in name else "static"


@lru_cache(maxsize=None)
def load_features(path: Path = paths.SPECS / "features.yaml") -> dict[str, str]:
    """The taxonomy as {"area.feature": description}."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(str(path), "", "expected a mapping of areas")
    out: dict[str, str] = {}
    for area, feats in data.items():
        if not isinstance(feats, dict):
            raise SpecError(str(path), str(area), "expected a mapping feature -> description")
        for name, desc in feats.items():
            if not isinstance(desc, str) or not desc:
                raise SpecError(str(path), f"{area}.{name}", "expected a one-line description")
            out[f"{area}.{name}"] = desc
    return out


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise SpecError(str(path), "", f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(str(path), "", f"not valid YAML{where}") from None


class _Checker:
    """Typed getters that raise SpecError naming the file and the key."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    def fail(self, key: str, why: str) -> SpecError:
        return SpecError(str(self.path), key, why)

    def string(self, key: str, default: str | None = None) -> str:
        v = self.data.get(key, default)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(key, f"expected a non-empty string, got {v!r}")
        return v

    def strings(self, key: str, default: tuple[str, ...], allowed: Callable[[str], bool],
                what: str, hint: str = "") -> tuple[str, ...]:
        v = self.data.get(key, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(key, f"expected a list of {what}, got {v!r}")
        for x in v:
            if not allowed(x):
                raise self.fail(key, f"unknown {what} '{x}'{hint}")
        return tuple(v)


def _options(c: _Checker) -> tuple[tuple[str, str], ...]:
    v = c.data.get("options", {})
    if not isinstance(v, dict):
        raise c.fail("options", f"expected a mapping name -> value, got {v!r}")
    out = []
    for k, val in v.items():
        if not isinstance(k, str) or not isinstance(val, (str, int, float, bool)):
            raise c.fail("options", f"option {k!r}: expected a scalar value, got {val!r}")
        if isinstance(val, bool):
            val = int(val)
        out.append((k, str(val)))
    return tuple(out)


def _expect(c: _Checker) -> tuple[Expectation, ...]:
    v = c.data.get("expect", {})
    if not isinstance(v, dict):
        raise c.fail("expect", f"expected a mapping engine -> {{fail: reason}}, got {v!r}")
    out = []
    for engine, e in v.items():
        key = f"expect.{engine}"
        if not isinstance(e, dict) or set(e) - EXPECT_KEYS:
            raise c.fail(key, f"expected a mapping with keys {sorted(EXPECT_KEYS)}, got {e!r}")
        reason = e.get("fail")
        if not isinstance(reason, str) or not reason.strip():
            raise c.fail(f"{key}.fail", "expected the reason this engine fails (a string)")
        flavors = e.get("flavors", [])
        if not isinstance(flavors, list) or any(f not in FLAVORS for f in flavors):
            raise c.fail(f"{key}.flavors", f"expected a list of {list(FLAVORS)}")
        at = e.get("at", "")
        if at not in ("",) + STEPS:
            raise c.fail(f"{key}.at", f"expected the step it fails at, one of {list(STEPS)}, got {at!r}")
        out.append(Expectation(str(engine), reason, str(e.get("tracking", "")), tuple(flavors), at))
    return tuple(out)


def _program(c: _Checker, name: str, kind: str) -> tuple[Path, Path | None]:
    """Resolve the program: a C source under zdtm/<kind>/ (built), or a binary path."""
    prog = c.string("program", name.rsplit("/", 1)[-1])
    if kind == "fuzz":
        # Fuzz regressions run a native helper (the tree builder) on a script of their own.
        source = paths.NATIVE / f"{prog}.c"
        if not source.is_file():
            raise c.fail("program", f"expected a native helper source at {source}")
        return paths.build_dir() / "native" / f"zdtm-{prog}", source
    if "/" in prog:
        binary = (c.path.parent / prog).resolve()
        if not os.access(binary, os.X_OK):
            raise c.fail("program", f"expected an executable zdtm-protocol binary at {binary}")
        return binary, None
    source = paths.ZDTM / kind / f"{prog}.c"
    if not source.is_file():
        raise c.fail("program", f"expected a C source at {source} (or a path to a binary)")
    return paths.build_dir() / "zdtm" / kind / prog, source


def _script(c: _Checker, options: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A fuzz spec's `script` option: a file relative to the spec, passed on as an absolute path."""
    out = dict(options)
    if "script" not in out:
        raise c.fail("options.script", "expected the tree script file (relative to the spec)")
    script = (c.path.parent / out["script"]).resolve()
    if not script.is_file():
        raise c.fail("options.script", f"expected a tree script at {script}")
    out["script"] = str(script)
    return tuple(out.items())


def load_spec(path: Path, root: Path) -> Spec:
    """Load and validate one spec file; `root` is the spec directory its name is relative to."""
    name = path.relative_to(root).with_suffix("").as_posix()
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(str(path), "", "expected a mapping of spec keys")
    c = _Checker(path, data)
    unknown = sorted(set(map(str, data)) - KEYS)
    if unknown:
        raise c.fail(unknown[0], f"unknown key; expected one of {sorted(KEYS)}")
    features = load_features()
    kind = kind_of(name)
    program, source = _program(c, name, kind)
    # Transition programs keep the CPU busy: a batch of them next to another needs longer.
    timeout = data.get("timeout", 30 if kind == "transition" else 10)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise c.fail("timeout", f"expected a positive number of seconds, got {timeout!r}")
    default_compare = () if kind == "transition" else ASPECTS
    feats = c.strings("features", (), lambda f: f in features, "feature", " (see specs/features.yaml)")
    if not feats:
        raise c.fail("features", "expected at least one feature")
    return Spec(
        name=name,
        path=path,
        description=c.string("description"),
        features=feats,
        program=program,
        source=source,
        options=_script(c, _options(c)) if kind == "fuzz" else _options(c),
        flavors=c.strings("flavors", FLAVORS, lambda f: f in FLAVORS, "flavor"),
        needs=c.strings("needs", (), lambda n: n in PROBES, "need", f" (known: {', '.join(sorted(PROBES))})"),
        flags=frozenset(c.strings("flags", (), lambda f: f in FLAGS, "flag")),
        timeout=float(timeout),
        compare=c.strings("compare", default_compare, lambda a: a in ASPECTS, "aspect"),
        expect=_expect(c),
    )


def spec_files(root: Path) -> list[Path]:
    """Every spec file below a spec directory (the taxonomy excluded)."""
    return sorted(
        p for p in root.rglob("*.yaml")
        if p.name != "features.yaml" and not any(part.startswith(".") for part in p.parts)
    )


def load_all(roots: list[Path]) -> list[Spec]:
    """All specs of these directories, checked for duplicate names."""
    seen: dict[str, Path] = {}
    out = []
    for root in roots:
        if not root.is_dir():
            raise SpecError(str(root), "", "expected a directory of spec files")
        for path in spec_files(root):
            spec = load_spec(path, root)
            if spec.name in seen:
                raise SpecError(str(path), "", f"test name '{spec.name}' also defined by {seen[spec.name]}")
            seen[spec.name] = path
            out.append(spec)
    return out

"""The pytest plugin (entry point `pytest11`): spec files are collected as items, one per
(test, flavor, engine); items are grouped into batches that run as ONE multi-root C/R cycle.
`zdtm run` is a thin front over this, so `pytest specs/ -n 2` runs the same items."""
from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import build, engines, paths, report
from harness.errors import ZdtmError
from harness.runner import Batch, RunOptions
from harness.spec import Spec, load_spec
from harness.verdict import Result, Verdict

DEFAULT_BATCH = 16


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the zdtm run, all prefixed --zdtm- to stay clear of other plugins."""
    g = parser.getgroup("zdtm", "zdtm checkpoint/restore tests")
    g.addoption("--zdtm-engine", default="nocr", help="engine(s), comma-separated (default nocr)")
    g.addoption("--zdtm-flavor", default="", help="flavor(s), comma-separated (default: each spec's)")
    g.addoption("--zdtm-test", action="append", default=[], help="run only this test (repeatable)")
    g.addoption("--zdtm-regex", action="append", default=[], help="run tests whose name matches")
    g.addoption("--zdtm-exclude", action="append", default=[], help="skip tests whose name matches")
    g.addoption("--zdtm-iters", type=int, default=1, help="dump/restore cycles per batch")
    g.addoption("--zdtm-norst", action="store_true", help="dump, leave running, then check")
    g.addoption("--zdtm-shard", default="", help="I/N: run the I-th of N shards")
    g.addoption("--zdtm-batch", type=int, default=DEFAULT_BATCH, help="tests per dump")
    g.addoption("--zdtm-report", default="", help="report directory")
    g.addoption("--zdtm-keep-images", action="store_true", help="keep images of passing batches")
    g.addoption("--zdtm-specs", action="append", default=[], help="another spec directory")


def pytest_cmdline_main(config: pytest.Config) -> None:
    """Batches must stay on one worker: xdist's `load` becomes `loadgroup`."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("load", "no"):
        config.option.dist = "loadgroup"


def spec_roots(config: pytest.Config) -> list[Path]:
    """The bundled spec directory and every --zdtm-specs one."""
    return [paths.SPECS] + [Path(d).resolve() for d in config.getoption("zdtm_specs")]


def _root_of(path: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        if path.is_relative_to(root):
            return root
    return None


def _wants_report(config: pytest.Config) -> bool:
    """A report is written when asked for, or when an argument holds (or is inside) a spec directory."""
    if config.getoption("zdtm_report"):
        return True
    args = [Path(a.split("::")[0]).resolve() for a in config.args]
    return any(a.is_relative_to(r) or r.is_relative_to(a) for a in args for r in spec_roots(config))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Pick the report directory (junit.xml goes there too) before junitxml configures."""
    config.addinivalue_line("markers", "zdtm: a zdtm checkpoint/restore test")
    # SIGTERM (a CI timeout, a killed worker) must unwind through the batches' cleanup.
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(config, "workerinput"):
        config.stash[_OUTDIR] = Path(config.workerinput["zdtm_outdir"])
        # A worker parses the original command line: the controller's switch to loadgroup
        # (pytest_cmdline_main) reaches it only this way, and without it no batch is grouped.
        if config.workerinput.get("zdtm_loadgroup"):
            config.option.loadgroup = True
        return
    out = None
    if _wants_report(config):
        out = Path(config.getoption("zdtm_report") or time.strftime("zdtm-report-%Y%m%d-%H%M%S")).resolve()
        out.mkdir(parents=True, exist_ok=True)
        config.stash[_OUTDIR] = out
        if not config.option.xmlpath:
            config.option.xmlpath = str(out / "junit.xml")
    config.pluginmanager.register(_Reporter(out), "zdtm-reporter")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker where the report directory is."""
    out = node.config.stash.get(_OUTDIR, None)
    node.workerinput["zdtm_outdir"] = str(out or Path("zdtm-report").resolve())
    node.workerinput["zdtm_loadgroup"] = node.config.option.dist == "loadgroup"


_OUTDIR = pytest.StashKey[Path]()


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A YAML file below a spec directory is a test spec."""
    if file_path.suffix != ".yaml" or file_path.name == "features.yaml":
        return None
    root = _root_of(file_path.resolve(), spec_roots(parent.config))
    if root is None:
        return None
    return SpecFile.from_parent(parent, path=file_path, root=root)


class SpecFile(pytest.File):
    """One spec: items for each of its flavors and each engine asked for."""

    def __init__(self, *, root: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.root = root

    def collect(self) -> Iterator[pytest.Item]:
        try:
            spec = load_spec(self.path.resolve(), self.root)
        except ZdtmError as e:
            raise self.CollectError(str(e)) from None
        wanted = [f for f in self.config.getoption("zdtm_flavor").split(",") if f]
        for engine in self.config.getoption("zdtm_engine").split(","):
            for flavor in spec.flavors:
                if not wanted or flavor in wanted:
                    yield ZdtmItem.from_parent(self, name=f"{spec.name}[{flavor}-{engine}]",
                                               spec=spec, flavor=flavor, engine=engine)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """One line for a bad spec."""
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


@dataclass(eq=False)
class BatchPlan:
    """Items that share one dump; the first of them to run runs the whole batch."""

    id: str
    items: list[ZdtmItem] = field(default_factory=list)
    results: dict[str, Result] | None = None

    def run(self, config: pytest.Config) -> None:
        """Build what is needed and run the batch once."""
        specs = [it.spec for it in self.items]
        build.build([(s.source, s.program) for s in specs if s.source])
        opts = RunOptions(
            outdir=_outdir(config),
            iters=config.getoption("zdtm_iters"),
            norst=config.getoption("zdtm_norst"),
            keep_images=config.getoption("zdtm_keep_images"),
        )
        first = self.items[0]
        batch = Batch(self.id, specs, first.flavor, _engine(first.engine), opts)
        self.results = {r.test: r for r in batch.run()}


_ENGINES: dict[str, engines.Engine] = {}


def _engine(name: str) -> engines.Engine:
    if name not in _ENGINES:
        _ENGINES[name] = engines.load(name)
    return _ENGINES[name]


def _outdir(config: pytest.Config) -> Path:
    if _OUTDIR in config.stash:
        return config.stash[_OUTDIR]
    return Path(config.getoption("zdtm_report") or "zdtm-report").resolve()


class ZdtmFailure(Exception):
    """A zdtm verdict that fails the item; carries the result for the report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


class ZdtmItem(pytest.Item):
    """One test in one flavor with one engine."""

    def __init__(self, *, spec: Spec, flavor: str, engine: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec, self.flavor, self.engine = spec, flavor, engine
        self.plan: BatchPlan | None = None
        self.add_marker("zdtm")

    def runtest(self) -> None:
        assert self.plan is not None
        if self.plan.results is None:
            self.plan.run(self.config)
        assert self.plan.results is not None
        result = self.plan.results[self.spec.name]
        self.user_properties.append(("zdtm", result.to_dict()))
        if result.verdict is Verdict.SKIP:
            pytest.skip(result.reason)
        if result.verdict is Verdict.XFAIL:
            pytest.xfail(f"{result.expected}; failed at {result.step}: {result.reason}")
        if result.verdict.unexpected:
            raise ZdtmFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The verdict, the step, the reason, the state diff and the program's output."""
        if isinstance(excinfo.value, ZdtmFailure):
            return report.describe(excinfo.value.result)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"zdtm {self.spec.name} [{self.flavor}, {self.engine}]"


def _selected(items: list[ZdtmItem], config: pytest.Config) -> list[ZdtmItem]:
    names = config.getoption("zdtm_test")
    regexes = [re.compile(r) for r in config.getoption("zdtm_regex")]
    excludes = [re.compile(r) for r in config.getoption("zdtm_exclude")]

    def named(spec: Spec) -> bool:
        return any(n in (spec.name, spec.name.rsplit("/", 1)[-1]) for n in names)

    out = []
    for it in items:
        s = it.spec
        if names or regexes:
            ok = named(s) or any(r.search(s.name) for r in regexes)
        else:
            ok = "noauto" not in s.flags
        if ok and "noauto" in s.flags and not named(s):
            ok = False
        if ok and any(r.search(s.name) for r in excludes):
            ok = False
        if ok:
            out.append(it)
    shard = config.getoption("zdtm_shard")
    if shard:
        i, n = parse_shard(shard)
        tests = sorted({it.spec.name for it in out})
        mine = {t for k, t in enumerate(tests) if k % n == i - 1}
        out = [it for it in out if it.spec.name in mine]
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N."""
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise pytest.UsageError(f"--shard '{text}': expected I/N with 1 <= I <= N")
    return int(m.group(1)), int(m.group(2))


def plan_batches(items: list[ZdtmItem], size: int) -> list[BatchPlan]:
    """Group items by (engine, flavor); exclusive tests alone, the others `size` at a time.
    A test expected to fail with that engine runs alone too: its failure (a refused dump, say)
    must not take the tests it would share a dump with down with it."""
    groups: dict[tuple[str, str], list[ZdtmItem]] = {}
    for it in items:
        groups.setdefault((it.engine, it.flavor), []).append(it)
    plans: list[BatchPlan] = []
    for (engine, flavor), group in sorted(groups.items()):
        group.sort(key=lambda it: it.spec.name)
        alone = {id(it) for it in group if it.spec.exclusive or it.spec.expectation(engine, flavor)}
        shared = [it for it in group if id(it) not in alone]
        chunks = [shared[k:k + size] for k in range(0, len(shared), max(1, size))]
        chunks += [[it] for it in group if id(it) in alone]
        for n, chunk in enumerate(chunks):
            plan = BatchPlan(f"{engine}-{flavor}-{n:03d}", list(chunk))
            for it in chunk:
                it.plan = plan
                it.add_marker(pytest.mark.xdist_group(plan.id))
            plans.append(plan)
    return plans


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Select, shard and batch the zdtm items (before xdist tags them with their group)."""
    zdtm = [it for it in items if isinstance(it, ZdtmItem)]
    if not zdtm:
        return
    keep = _selected(zdtm, config)
    kept = set(map(id, keep))
    dropped = [it for it in zdtm if id(it) not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = [it for it in items if not isinstance(it, ZdtmItem) or id(it) in kept]
    plan_batches(keep, config.getoption("zdtm_batch"))


class _Reporter:
    """Controller-side: gathers every zdtm result and writes the report at the end."""

    def __init__(self, outdir: Path | None) -> None:
        self.outdir = outdir
        self.results: list[Result] = []
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """xdist ships user_properties back with each report."""
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == "zdtm" and isinstance(value, dict):
                self.results.append(Result.from_dict(value))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """report.json, report.md and report.html (junit.xml is pytest's own)."""
        if self.outdir and self.results:
            report.write(self.outdir, report.make(self.results, self.started))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Counts per verdict and where the report is."""
        if not self.results:
            return
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
        terminalreporter.write_sep("-", "zdtm: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
        if self.outdir:
            terminalreporter.write_line(f"zdtm report: {self.outdir}/report.html")

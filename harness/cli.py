"""`zdtm`: list, build, run and report; `run` is a thin front over the pytest plugin."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from harness import build, engines, flavors, paths, report, spec
from harness.errors import UsageError, ZdtmError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zdtm", description="checkpoint/restore test harness")
    sub = p.add_subparsers(dest="cmd", required=True)

    ls = sub.add_parser("list", help="tests with flavors, features, flags")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--specs", action="append", default=[], metavar="DIR", help="another spec directory")

    b = sub.add_parser("build", help="build the test library, programs and helpers")
    b.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    b.add_argument("--specs", action="append", default=[], metavar="DIR")

    r = sub.add_parser("run", help="run tests through an engine")
    sel = r.add_argument_group("selection")
    sel.add_argument("-a", "--all", action="store_true", help="every test (but noauto ones)")
    sel.add_argument("-t", "--test", action="append", default=[], metavar="NAME", help="a test by name")
    sel.add_argument("-T", "--regex", action="append", default=[], metavar="REGEX", help="tests matching")
    sel.add_argument("-x", "--exclude", action="append", default=[], metavar="REGEX", help="leave these out")
    r.add_argument("--engine", default="nocr", help="engine(s), comma-separated: " + ", ".join(engines.names()))
    r.add_argument("-f", "--flavor", default="", help="flavor(s), comma-separated: host, ns (default: each spec's)")
    r.add_argument("-j", "--jobs", type=int, default=1, help="parallel workers (pytest-xdist)")
    r.add_argument("--iters", type=int, default=1, help="dump/restore cycles")
    r.add_argument("--norst", action="store_true", help="dump and leave running, then check")
    r.add_argument("--shard", default="", metavar="I/N", help="run shard I of N")
    r.add_argument("--batch", type=int, default=16, help="tests per dump")
    r.add_argument("--report", default="", metavar="DIR", help="report directory")
    r.add_argument("--keep-images", action="store_true")
    r.add_argument("--keep-going", action=argparse.BooleanOptionalAction, default=None,
                   help="go on after a failure (default: on with --all)")
    r.add_argument("--specs", action="append", default=[], metavar="DIR", help="another spec directory")
    r.add_argument("pytest_args", nargs="*", help="passed to pytest after --")

    fz = sub.add_parser("fuzz", help="fuzz process-tree shapes through an engine, or compare restore planners")
    fz.add_argument("--engine", default="ckpt", help="engine under test")
    fz.add_argument("--planner", default=None, help="ckpt's restore planner (default: standard)")
    fz.add_argument("-f", "--flavor", default="host", help="host or ns")
    fz.add_argument("--examples", type=int, default=100, help="scripts to try (shrinking comes on top)")
    fz.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    fz.add_argument("--max-ops", type=int, default=12, help="operations per script at most")
    fz.add_argument("--report", default="", metavar="DIR", help="report directory (default: a new one in /tmp)")
    fz.add_argument("--db", default=str(paths.ROOT / ".hypothesis" / "zdtm-fuzz"), metavar="DIR",
                    help="hypothesis example database: failures found before are replayed first")
    fz.add_argument("--save", default="", metavar="SPECDIR",
                    help="write the shrunk failure as test fuzz/NAME below this spec directory "
                         "(default: REPORT/specs; `--save specs` adds it to the corpus)")
    fz.add_argument("--compare-planners", default="", metavar="A,B",
                    help="plan generated trees with these planners (no C/R unless --real)")
    fz.add_argument("--trees", type=int, default=10000, help="trees for --compare-planners")
    fz.add_argument("--mutate", type=float, default=0.3, help="share of trees given a near-miss change")
    fz.add_argument("--real", type=int, default=0, help="with --compare-planners: trees also run through ckpt")

    rep = sub.add_parser("report", help="re-render report.md and report.html from report.json")
    rep.add_argument("dirs", nargs="+", metavar="DIR")
    return p


def _roots(extra: list[str]) -> list[Path]:
    out = [paths.SPECS]
    for d in extra:
        path = Path(d).resolve()
        if not path.is_dir():
            raise UsageError(f"--specs {d}: not a directory")
        out.append(path)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """Print the tests."""
    specs = spec.load_all(_roots(args.specs))
    if args.json:
        print(json.dumps([{
            "name": s.name, "description": s.description, "features": list(s.features),
            "flavors": list(s.flavors), "flags": sorted(s.flags), "needs": list(s.needs),
            "program": str(s.program), "expect": {e.engine: e.reason for e in s.expect},
        } for s in specs], indent=1))
        return 0
    width = max((len(s.name) for s in specs), default=4)
    for s in specs:
        flags = f" [{','.join(sorted(s.flags))}]" if s.flags else ""
        print(f"{s.name:<{width}}  {','.join(s.flavors):<8}  {' '.join(s.features)}{flags}")
    kinds: dict[str, int] = {}
    for s in specs:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"{len(specs)} tests: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), file=sys.stderr)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build everything the specs need."""
    specs = spec.load_all(_roots(args.specs))
    stale = build.build([(s.source, s.program) for s in specs if s.source], args.jobs)
    print(f"built {stale} program(s); {paths.build_dir()}")
    return 0


def _check_selection(args: argparse.Namespace, specs: list[spec.Spec]) -> None:
    if not (args.all or args.test or args.regex):
        raise UsageError("nothing selected: give --all, -t NAME or -T REGEX")
    names = {s.name for s in specs} | {s.name.rsplit("/", 1)[-1] for s in specs}
    for t in args.test:
        if t not in names:
            raise UsageError(f"-t {t}: no such test (see `zdtm list`)")
    for rx in args.regex + args.exclude:
        try:
            re.compile(rx)
        except re.error as e:
            raise UsageError(f"regex '{rx}': {e}") from None
    for rx in args.regex:
        if not any(re.search(rx, s.name) for s in specs):
            raise UsageError(f"-T {rx}: matches no test")
    for name in filter(None, args.engine.split(",")):
        engines.load(name)
    for f in filter(None, args.flavor.split(",")):
        if f not in flavors.NAMES:
            raise UsageError(f"unknown flavor '{f}'; expected one of {', '.join(flavors.NAMES)}")
    if args.shard:
        m = re.fullmatch(r"(\d+)/(\d+)", args.shard)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise UsageError(f"--shard '{args.shard}': expected I/N with 1 <= I <= N")
    if args.jobs < 1 or args.iters < 1 or args.batch < 1:
        raise UsageError("-j, --iters and --batch take a number >= 1")


def _chosen(args: argparse.Namespace, specs: list[spec.Spec]) -> list[spec.Spec]:
    """The specs a run may touch (the plugin refines: noauto, shards): only these are built."""
    def named(s: spec.Spec) -> bool:
        return s.name in args.test or s.name.rsplit("/", 1)[-1] in args.test

    return [s for s in specs
            if (args.all or named(s) or any(re.search(r, s.name) for r in args.regex))
            and not any(re.search(x, s.name) for x in args.exclude)]


def cmd_run(args: argparse.Namespace) -> int:
    """Validate, build, then hand over to pytest with the plugin's options."""
    import pytest

    roots = _roots(args.specs)
    specs = spec.load_all(roots)
    _check_selection(args, specs)
    chosen = _chosen(args, specs)
    build.build([(s.source, s.program) for s in chosen if s.source])
    pargs = [str(r) for r in roots] + ["-c", os.devnull, "--rootdir", str(paths.ROOT), "-q",
                                       "-p", "no:cacheprovider", "--zdtm-engine", args.engine,
                                       "--zdtm-iters", str(args.iters), "--zdtm-batch", str(args.batch)]
    pargs += [f"--zdtm-specs={r}" for r in roots[1:]]
    pargs += [f"--zdtm-test={t}" for t in args.test] + [f"--zdtm-regex={r}" for r in args.regex]
    pargs += [f"--zdtm-exclude={x}" for x in args.exclude]
    if args.flavor:
        pargs += ["--zdtm-flavor", args.flavor]
    if args.norst:
        pargs.append("--zdtm-norst")
    if args.shard:
        pargs += ["--zdtm-shard", args.shard]
    if args.keep_images:
        pargs.append("--zdtm-keep-images")
    if args.report:
        pargs += ["--zdtm-report", args.report]
    if args.jobs > 1:
        pargs += ["-n", str(args.jobs)]
    keep_going = args.all if args.keep_going is None else args.keep_going
    if not keep_going:
        pargs.append("-x")
    return int(pytest.main(pargs + args.pytest_args))


def cmd_report(args: argparse.Namespace) -> int:
    """Merge one or more report.json files and render again (into the first DIR)."""
    from harness.verdict import Result

    docs = []
    for d in args.dirs:
        try:
            docs.append(report.load(Path(d)))
        except (OSError, ValueError) as e:
            raise UsageError(f"{d}: no readable report.json ({e})") from None
    results = [Result.from_dict(r) for doc in docs for r in doc["results"]]
    doc = report.make(results, docs[0].get("started", ""))
    doc["kernel"] = docs[0]["kernel"]
    out = Path(args.dirs[0])
    report.write(out, doc)
    print(f"{out}/report.html")
    return 0


def _drop_temporary(out: Path, given: str | None) -> None:
    """Remove a report directory we made ourselves for a run that did not happen."""
    if not given:
        shutil.rmtree(out, ignore_errors=True)


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Fuzz trees through an engine (exit 1 on a failure), or compare planners."""
    import tempfile

    from harness.fuzz import report as freport

    if args.compare_planners:
        from engine.planners import UnknownPlanner, load
        from harness.fuzz.compare import compare

        names = [n for n in args.compare_planners.split(",") if n]
        try:
            for n in names:
                load(n)
        except UnknownPlanner as e:
            raise UsageError(f"--compare-planners: {e}") from None
        out = Path(args.report) if args.report else Path(tempfile.mkdtemp(prefix="zdtm-fuzz."))
        doc = compare(names, args.trees, args.seed or 0, args.max_ops, args.mutate, args.real, out)
        print(freport.write(out, doc))
        for p in doc["planners"]:
            print(f"{p['name']}: planned {p['planned']}/{doc['trees']}, impossible {p['impossible']}, "
                  f"too weak {p['too_weak']}, unknown {p['unknown']}, helpers {p['helpers']}, "
                  f"{p['seconds'] * 1000 / max(1, doc['trees']):.2f} ms per tree; "
                  f"real C/R {p['real_pass']} passed, {p['real_fail']} failed")
        return 1 if any(p["real_fail"] for p in doc["planners"]) else 0
    from harness.fuzz.driver import fuzz, save
    from harness.fuzz.run import Runner

    if args.flavor not in flavors.NAMES:
        raise UsageError(f"unknown flavor '{args.flavor}'; expected one of {', '.join(flavors.NAMES)}")
    if args.examples < 1 or args.max_ops < 0:
        raise UsageError("--examples takes a number >= 1, --max-ops >= 0")
    from engine.errors import CkptError

    out = Path(args.report) if args.report else Path(tempfile.mkdtemp(prefix="zdtm-fuzz."))
    try:
        runner = Runner(args.engine, args.flavor, out / "work", args.planner)
    except CkptError as e:  # an unknown planner
        _drop_temporary(out, args.report)
        raise UsageError(f"--planner {args.planner}: {e}") from None
    why = runner.unavailable()
    if why:
        _drop_temporary(out, args.report)
        print(f"zdtm fuzz: engine {args.engine} cannot run here: {why}", file=sys.stderr)
        return 2
    camp = fuzz(runner, args.examples, args.seed, Path(args.db) if args.db else None, args.max_ops)
    saved = None
    if camp.failure is not None:
        saved = save(camp.failure, Path(args.save) if args.save else out / "specs",
                     f"zdtm fuzz --engine {args.engine} -f {args.flavor} --seed {args.seed}")
    doc = freport.campaign_doc(camp, args.engine, args.flavor, args.planner, args.seed, saved)
    print(freport.write(out, doc))
    print(f"{camp.examples} scripts, {doc['passed']} passed, {doc['failed']} failed"
          + (f"; smallest failure ({len(camp.failure.script)} operations): {camp.failure.summary()}; "
             f"saved as {saved}" if camp.failure else ""))
    return 1 if camp.failure else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line and exit 2, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        return {"list": cmd_list, "build": cmd_build, "run": cmd_run, "report": cmd_report,
                "fuzz": cmd_fuzz}[args.cmd](args)
    except ZdtmError as e:
        print(f"zdtm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zdtm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

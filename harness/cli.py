"""`zdtm`: list, build, run and report; `run` is a thin front over the pytest plugin."""
from __future__ import annotations

import argparse
import json
import os
import re
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line and exit 2, never a traceback."""
    args = _parser().parse_args(argv)
    try:
        return {"list": cmd_list, "build": cmd_build, "run": cmd_run, "report": cmd_report}[args.cmd](args)
    except ZdtmError as e:
        print(f"zdtm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zdtm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

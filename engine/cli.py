"""`ckpt`: the engine's command line (check, dump, restore, plan, show)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import CkptError


def _pids(text: str) -> list[int]:
    try:
        pids = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected PID[,PID...]") from None
    if not pids or any(p <= 0 for p in pids):
        raise argparse.ArgumentTypeError(f"'{text}': expected positive pids")
    return pids


def _check() -> int:
    from engine import check  # (here: its probes' imports would slow every other command)

    results = check.run()
    width = max(map(len, results))
    for name, why in results.items():
        print(f"{name:<{width}}  {'ok' if why is None else 'missing: ' + why}")
    return 0 if all(v is None for v in results.values()) else 1


def _restore(directory: Path, detach: bool, planner: str | None, new_pidns: bool) -> int:
    from engine import proc, restore

    roots = restore(directory, planner, new_pidns)
    print(",".join(map(str, roots)), flush=True)
    if detach:
        return 0
    # Like a shell: the first root's exit status, 128 + signal when killed. In a new pid
    # namespace the roots are our init's children: it passes that status on as its own.
    waited = [proc.stat(roots[0]).ppid] if new_pidns else roots
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in waited]
    return statuses[0] if statuses[0] >= 0 else 128 - statuses[0]


def _plan(directory: Path, planner: str | None) -> int:
    from engine import cow, planners, vfork
    from engine.restorer import load

    ck = load(directory)
    print(planners.make_plan(cow.planned(vfork.planned(ck.table, ck.vforks), ck.forks), planner).render())
    if ck.vforks:
        print(vfork.describe(ck.vforks))
    if ck.forks:
        print(cow.describe(ck.forks))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: a user error is one line and a non-zero exit."""
    p = argparse.ArgumentParser(prog="ckpt", description="parasite-less checkpoint/restore")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="probe the kernel interfaces the engine uses")
    d = sub.add_parser("dump", help="checkpoint tasks into a directory")
    d.add_argument("-t", "--tree", type=_pids, metavar="PID[,PID...]", help="the roots of the trees to dump")
    d.add_argument("--cgroup", metavar="PATH",
                   help="dump every task of this cgroup v2 directory and its descendants, each with its whole "
                        "tree (PATH absolute, or relative to the cgroup2 mount); not with -t")
    d.add_argument("-D", "--images-dir", type=Path, required=True, metavar="DIR")
    d.add_argument("--leave-running", action="store_true")
    d.add_argument("-v", "--verbose", action="store_true")
    r = sub.add_parser("restore", help="restore a checkpoint; wait for its root unless --detach")
    r.add_argument("-D", "--images-dir", type=Path, required=True, metavar="DIR")
    r.add_argument("--detach", action="store_true", help="print the root pid(s) and exit")
    r.add_argument("--planner", metavar="NAME", help="restore planner (entry point group ckpt.planners)")
    r.add_argument("--new-pidns", action="store_true",
                   help="restore inside a new pid namespace under an init of ours; the tasks keep their pids there")
    pl = sub.add_parser("plan", help="print the restore plan of a checkpoint, validated")
    pl.add_argument("dir", type=Path)
    pl.add_argument("--planner", metavar="NAME", help="restore planner (entry point group ckpt.planners)")
    s = sub.add_parser("show", help="decode every image of a checkpoint")
    s.add_argument("dir", type=Path)
    s.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.cmd == "check":
            return _check()
        if args.cmd == "dump":
            from engine import dump

            if args.tree and args.cgroup is not None:
                raise CkptError("-t and --cgroup exclude each other: give one")
            if not args.tree and args.cgroup is None:
                raise CkptError("dump what? give -t PID[,PID...] or --cgroup PATH")
            roots = dump(args.tree or [], args.images_dir, args.leave_running, cgroup=args.cgroup)
            if args.verbose:
                print(f"dumped {','.join(map(str, roots))} into {args.images_dir}")
            return 0
        if args.cmd == "restore":
            return _restore(args.images_dir, args.detach, args.planner, args.new_pidns)
        if args.cmd == "plan":
            return _plan(args.dir, args.planner)
        from engine.show import render

        print(render(args.dir, args.json))
        return 0
    except CkptError as e:
        print(f"ckpt: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went (`ckpt show DIR | head`): nothing more to say, and nothing at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reports: report.json (machine), report.md and a self-contained report.html (humans).

The first screen of the HTML is the per-feature coverage matrix, feature x engine x flavor,
with coloured counts, so runs on different kernels and engines compare at a glance."""
from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path
from typing import Any

from harness.spec import load_features
from harness.verdict import Result, Verdict

VERDICTS = [v.value for v in Verdict]
COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "broken": "#6a1b9a", "skip": "#9e9e9e",
           "xfail": "#ef6c00", "xpass": "#0277bd"}


def _kernel() -> dict[str, str]:
    u = os.uname()
    try:
        with open("/proc/sys/kernel/tainted") as f:
            tainted = f.read().strip()
    except OSError:
        tainted = "?"
    return {"release": u.release, "version": u.version, "machine": u.machine, "tainted": tainted}


def _engine_versions(names: list[str]) -> dict[str, str]:
    from harness import engines

    out = {}
    for name in names:
        try:
            out[name] = engines.load(name).version()
        except Exception as e:  # noqa: BLE001 - a report must not fail on one engine
            out[name] = f"unknown ({e})"
    return out


def make(results: list[Result], started: str) -> dict[str, Any]:
    """The report document: run metadata, every result, and coverage counts."""
    results = sorted(results, key=lambda r: (r.test, r.flavor, r.engine))
    engine_names = sorted({r.engine for r in results})
    coverage: dict[str, dict[str, int]] = {}
    matrix: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        for f in r.features:
            c = coverage.setdefault(f, {v: 0 for v in VERDICTS})
            c[r.verdict.value] += 1
            cell = matrix.setdefault(f, {}).setdefault(f"{r.engine}/{r.flavor}", {v: 0 for v in VERDICTS})
            cell[r.verdict.value] += 1
    return {
        "kernel": _kernel(),
        "engine": ",".join(engine_names),
        "engines": _engine_versions(engine_names),
        "started": started,
        "host": platform.node(),
        "results": [r.to_dict() for r in results],
        "coverage": dict(sorted(coverage.items())),
        "matrix": dict(sorted(matrix.items())),
        "totals": {v: sum(1 for r in results if r.verdict.value == v) for v in VERDICTS},
    }


def load(outdir: Path) -> dict[str, Any]:
    """Read report.json back (for `zdtm report DIR`)."""
    with open(outdir / "report.json") as f:
        data: dict[str, Any] = json.load(f)
    return data


def write(outdir: Path, doc: dict[str, Any]) -> None:
    """Write the three renderings into outdir."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (outdir / "report.md").write_text(markdown(doc))
    (outdir / "report.html").write_text(to_html(doc))


def describe(r: Result) -> str:
    """A failure as text: verdict, step, reason, state diff, the program's last lines."""
    lines = [f"{r.test} [{r.flavor}, {r.engine}]: {r.verdict.value.upper()}"
             + (f" at {r.step}" if r.step else "") + f": {r.reason}"]
    if r.expected:
        lines.append(f"  expected failure: {r.expected}")
    if r.diff:
        lines.append("  visible state before -> after:")
        lines.extend(f"    {d}" for d in r.diff[:60])
        if len(r.diff) > 60:
            lines.append(f"    ... {len(r.diff) - 60} more lines")
    if r.output:
        lines.append("  output:")
        lines.extend(f"    | {x}" for x in r.output.splitlines())
    return "\n".join(lines)


def _columns(doc: dict[str, Any]) -> list[str]:
    return sorted({col for cells in doc["matrix"].values() for col in cells})


def _cell_text(counts: dict[str, int]) -> str:
    return " ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))


def markdown(doc: dict[str, Any]) -> str:
    """The human report in Markdown."""
    k = doc["kernel"]
    out = [f"# zdtm report: {doc['engine']} on Linux {k['release']}", "",
           f"Started {doc['started']} on {doc['host']} ({k['machine']}); taint {k['tainted']}; "
           f"engines: {', '.join(f'{n} {v}' for n, v in doc['engines'].items())}.", "",
           "Totals: " + ", ".join(f"{n} {v}" for v, n in doc["totals"].items() if n), "",
           "## Coverage (feature x engine/flavor)", ""]
    cols = _columns(doc)
    out.append("| feature | " + " | ".join(cols) + " |")
    out.append("|---" * (len(cols) + 1) + "|")
    for feat, cells in doc["matrix"].items():
        out.append(f"| {feat} | " + " | ".join(_cell_text(cells[c]) if c in cells else "" for c in cols) + " |")
    bad = [r for r in doc["results"] if r["verdict"] in ("fail", "broken", "xpass")]
    if bad:
        out += ["", "## Unexpected results", ""]
        for r in bad:
            out.append(f"- **{r['test']}** [{r['flavor']}, {r['engine']}] {r['verdict']} at {r['step']}: {r['reason']}")
            out.extend(f"  - `{d}`" for d in r["diff"][:20])
    debts = [r for r in doc["results"] if r["verdict"] == "xfail"]
    if debts:
        out += ["", f"## Expected failures ({len(debts)})", ""]
        out.extend(f"- {r['test']} [{r['flavor']}, {r['engine']}]: {r['expected']}" for r in debts)
    out += ["", "## All results", "", "| test | flavor | engine | verdict | step | reason | s |", "|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        reason = r["reason"].replace("|", "\\|")[:160]
        out.append(f"| {r['test']} | {r['flavor']} | {r['engine']} | {r['verdict']} | {r['step']} | {reason} | {r['seconds']} |")
    return "\n".join(out) + "\n"


def _badge(counts: dict[str, int]) -> str:
    return " ".join(f'<span class="b" style="background:{COLOURS[v]}">{counts[v]} {v}</span>'
                    for v in VERDICTS if counts.get(v))


def to_html(doc: dict[str, Any]) -> str:
    """A self-contained page (inline CSS, no scripts) whose first screen is the matrix."""
    e = html.escape
    k = doc["kernel"]
    try:
        features = load_features()
    except Exception:  # noqa: BLE001 - descriptions are a nicety
        features = {}
    cols = _columns(doc)
    rows = []
    for feat, cells in doc["matrix"].items():
        tds = "".join(f"<td>{_badge(cells[c]) if c in cells else ''}</td>" for c in cols)
        rows.append(f'<tr><th title="{e(features.get(feat, ""))}">{e(feat)}</th>{tds}</tr>')
    results = []
    for r in doc["results"]:
        detail = e(r["reason"]) + ("<pre>" + e("\n".join(r["diff"] + ([r["output"]] if r["output"] else []))) + "</pre>"
                                   if (r["diff"] or r["output"]) and r["verdict"] != "pass" else "")
        results.append(f'<tr><td>{e(r["test"])}</td><td>{e(r["flavor"])}</td><td>{e(r["engine"])}</td>'
                       f'<td><span class="b" style="background:{COLOURS[r["verdict"]]}">{r["verdict"]}</span></td>'
                       f'<td>{e(r["step"])}</td><td>{detail}</td><td>{r["seconds"]}</td></tr>')
    totals = " ".join(f'<span class="b" style="background:{COLOURS[v]}">{n} {v}</span>'
                      for v, n in doc["totals"].items() if n)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>zdtm report: {e(doc['engine'])} on {e(k['release'])}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}}
th{{background:#f5f5f5}} .b{{color:#fff;border-radius:3px;padding:1px 5px;margin-right:3px;white-space:nowrap}}
pre{{margin:4px 0;font-size:12px;white-space:pre-wrap}}
</style></head><body>
<h1>Coverage: {e(doc['engine'])} on Linux {e(k['release'])}</h1>
<p>{totals} &mdash; started {e(doc['started'])} on {e(doc['host'])}, taint {e(k['tainted'])}</p>
<table><tr><th>feature</th>{''.join(f'<th>{e(c)}</th>' for c in cols)}</tr>
{''.join(rows)}</table>
<h2>Results</h2>
<table><tr><th>test</th><th>flavor</th><th>engine</th><th>verdict</th><th>step</th><th>reason</th><th>s</th></tr>
{''.join(results)}</table>
</body></html>
"""

"""Fuzzing reports: fuzz.json, fuzz.md and fuzz.html in a report directory."""
from __future__ import annotations

import html
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

from harness.fuzz.compare import draw_table
from harness.fuzz.driver import Campaign
from harness.fuzz.script import simulate
from harness.fuzz.strategies import shape
from harness.fuzz.table import to_table

SHAPE_KEYS = ("tasks", "depth", "zombies", "stopped", "threads", "sessions", "groups", "dead_leaders",
              "subreapers", "clone_parent", "reparented")


def campaign_doc(camp: Campaign, engine: str, flavor: str, planner: str | None, seed: int | None,
                 saved: Path | None) -> dict[str, Any]:
    """A fuzzing run as a JSON-ready document."""
    shapes: dict[str, Counter[int]] = {k: Counter() for k in SHAPE_KEYS}
    for o in camp.outcomes:
        for k, v in shape(o.script).items():
            shapes[k][v] += 1
    doc: dict[str, Any] = {
        "kind": "fuzz", "engine": engine, "flavor": flavor, "planner": planner or "standard", "seed": seed,
        "kernel": platform.release(), "examples": camp.examples,
        "passed": sum(not o.failed for o in camp.outcomes), "failed": sum(o.failed for o in camp.outcomes),
        "seconds": round(sum(o.seconds for o in camp.outcomes), 2),
        "shapes": {k: dict(sorted(c.items())) for k, c in shapes.items()},
        "flaky": camp.flaky, "failure": None, "saved": str(saved) if saved else "",
    }
    f = camp.failure
    if f is not None:
        doc["failure"] = {"summary": f.summary(), "script": f.script.text(), "operations": len(f.script),
                          "tree": draw_table(to_table(simulate(f.script))), "diff": list(f.diff),
                          "output": f.output, "model": list(f.model)}
    return doc


def _md_fuzz(doc: dict[str, Any]) -> list[str]:
    out = [f"# zdtm fuzz: {doc['engine']} ({doc['flavor']}, planner {doc['planner']})", "",
           f"Kernel {doc['kernel']}, seed {doc['seed']}: {doc['examples']} scripts run in {doc['seconds']} s, "
           f"{doc['passed']} passed, {doc['failed']} failed (shrinking included).", ""]
    f = doc["failure"]
    if f is None:
        out += ["No failure found.", ""]
    else:
        out += ["## Smallest failing tree", "", f"{f['summary']}", "", f"Script ({f['operations']} operations):", "",
                "```", f["script"].rstrip(), "```", "", "Tree (pids as in the model: task i is 100 + i):", "",
                "```", f["tree"], "```", ""]
        if f["diff"]:
            out += ["Visible state after restore:", "", "```", *f["diff"][:40], "```", ""]
        if doc["saved"]:
            out += [f"Saved as a corpus test: `{doc['saved']}`.", ""]
    if doc["flaky"]:
        out += [f"Flaky: {doc['flaky']}", ""]
    out += ["## Shapes tried", "", "| measure | value: scripts |", "| --- | --- |"]
    for k, c in doc["shapes"].items():
        out.append(f"| {k} | " + ", ".join(f"{v}: {n}" for v, n in c.items()) + " |")
    return out


def _md_compare(doc: dict[str, Any]) -> list[str]:
    out = [f"# zdtm fuzz: planner comparison", "",
           f"{doc['trees']} trees (seed {doc['seed']}, up to {doc['max_ops']} operations, "
           f"{int(doc['mutated_share'] * 100)}% mutated tables), planned in {doc['seconds']} s; "
           f"{doc['real_trees']} of them also through real C/R.", "",
           "| planner | planned | impossible | too weak | unknown | helpers | mean ms | slowest ms | real pass | real fail |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    n = max(1, doc["trees"])
    for p in doc["planners"]:
        out.append(f"| {p['name']} | {p['planned']} | {p['impossible']} | {p['too_weak']} | {p['unknown']} | "
                   f"{p['helpers']} | {p['seconds'] * 1000 / n:.2f} | {p['slowest'] * 1000:.1f} | "
                   f"{p['real_pass']} | {p['real_fail']} |")
    out += ["", "Impossible: no plan exists (the brute-force search was exhausted). Too weak: a plan exists "
            "(the script that made the tree, or the brute-force planner's). Unknown: too big for the "
            "brute-force planner, or its bound was hit.", ""]
    for p in doc["planners"]:
        if p["examples"]:
            out += [f"## {p['name']}: trees it could not plan", ""]
            for e in p["examples"]:
                out += [f"- {e['kind']}: {e['why']}", "", "```", e["tree"], "```", ""]
    out += ["## Shapes", "", "| shape | trees |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in doc["shapes"].items()]
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The human report."""
    return "\n".join(_md_fuzz(doc) if doc["kind"] == "fuzz" else _md_compare(doc)) + "\n"


def _html(md: str) -> str:
    """The Markdown as a plain page: headings, tables, code blocks, paragraphs."""
    body, table, code = [], False, False
    for line in md.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if code else "<pre>")
            code = not code
            continue
        if code:
            body.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-", " "}:
                continue
            if not table:
                body.append("<table border=1 cellpadding=3>")
                table = True
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("</table>")
            table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if table:
        body.append("</table>")
    return "<!doctype html><meta charset=utf-8><title>zdtm fuzz</title><body>\n" + "\n".join(body) + "\n</body>\n"


def write(outdir: Path, doc: dict[str, Any]) -> Path:
    """Write fuzz.json, fuzz.md and fuzz.html; the Markdown's path."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "fuzz.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = markdown(doc)
    (outdir / "fuzz.md").write_text(md)
    (outdir / "fuzz.html").write_text(_html(md))
    return outdir / "fuzz.md"

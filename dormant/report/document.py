"""Reports on ledger runs: one self-contained HTML file (plots inlined, no network access) and a Markdown twin.

The report is generic over what the ledger records: a run's headline is the first text among its
outputs ``verdict``, ``evidence``, ``rank_summary``, ``summary``; its key numbers are the scalar
outputs; its plots are the PNG/SVG artifacts. Runs are ledger dicts as ``dormant.ledger.list_runs``
returns them (with ``invalidated``), so any command that records stages in the ledger (``hunt``)
can render its own report by passing the stage runs as ``related``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any

from dormant import ledger as _ledger
from dormant.report.jsonable import to_jsonable

HEADLINE_KEYS = ("verdict", "evidence", "rank_summary", "summary")
MAX_NUMBERS = 40
MAX_INLINE_BYTES = 8 << 20  # larger plots are linked, not inlined

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
.verdict { border-left: 6px solid #2a7; padding: .6em 1em; background: #f3fbf6; font-size: 1.15em; }
.verdict.invalid, .verdict.failed { border-color: #c33; background: #fdf2f2; }
.invalid-tag { color: #c33; font-weight: bold; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; font-size: .92em; }
tr.invalid td { color: #888; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
code, pre { font-family: ui-monospace, monospace; font-size: .88em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; white-space: pre-wrap; }
"""

# No network: every resource the page could load is denied except inline styles and data: images.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def resolve_run(run_id: str, ledger: str | Path | None = None) -> dict[str, Any]:
    """The run ``run_id`` (id or unique prefix), or the newest run for ``latest``, with ``invalidated``."""
    if run_id == "latest":
        runs = _ledger.list_runs(ledger, limit=1)
        if not runs:
            raise KeyError(f"no runs in {_ledger.ledger_path(ledger)}")
        run_id = runs[0]["id"]
    return _ledger.get_run(run_id, ledger, check_files=True)


def related_runs(run: dict[str, Any], ledger: str | Path | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The other runs on the same subject, newest first (none when the run has no subject)."""
    if not run.get("subject"):
        return []
    return [r for r in _ledger.list_runs(ledger, limit=limit, subject=run["subject"], check_files=True) if r["id"] != run["id"]]


def headline(run: dict[str, Any]) -> str:
    """One line that says what the run found (or why it has no finding)."""
    if run["status"] != "ok":
        return f"run {run['status']}" + (f": {run['error']}" if run.get("error") else "")
    outputs = run.get("outputs") or {}
    text = next((outputs[k].strip() for k in HEADLINE_KEYS if isinstance(outputs.get(k), str) and outputs[k].strip()), None)
    if isinstance(outputs.get("best"), str):  # diff: the base it picked comes first
        text = f"most likely base: {outputs['best']}" + (f". {text}" if text else "")
    return text or "finished; it recorded no verdict (see its key numbers)"


def key_numbers(run: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """Scalar outputs (and short lists of scalars) as ``(dotted key, text)`` rows, and how many values were left out."""
    rows: list[tuple[str, str]] = []
    left = 0

    def walk(prefix: str, value: Any, depth: int) -> None:
        nonlocal left
        if isinstance(value, dict) and depth < 3:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, depth + 1)
            return
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif value is None or isinstance(value, (bool, int)):
            text = json.dumps(value)
        elif isinstance(value, str) and len(value) <= 300:
            text = value
        elif isinstance(value, list) and len(value) <= 8 and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) or "(none)"
        else:
            left += 1
            return
        if len(rows) < MAX_NUMBERS:
            rows.append((prefix, text))
        else:
            left += 1

    walk("", to_jsonable(run.get("outputs") or {}), 0)
    return rows, left


def _plots(run: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(artifact path, data URI or None)`` for every PNG/SVG artifact; None when missing or too large."""
    out = []
    for a in run.get("artifacts") or []:
        p = Path(a)
        kind = {".png": "image/png", ".svg": "image/svg+xml"}.get(p.suffix.lower())
        if kind is None:
            continue
        uri = None
        if p.is_file() and p.stat().st_size <= MAX_INLINE_BYTES:
            uri = f"data:{kind};base64," + base64.b64encode(p.read_bytes()).decode()
        out.append((a, uri))
    return out


def _when(ts: float | None) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def render_html(run: dict[str, Any], related: list[dict[str, Any]], *, title: str | None = None, related_title: str | None = None) -> str:
    """The report as one HTML document that needs nothing but itself."""
    title = title or f"dormant report: {run['command']} run {run['id']}"
    invalid = bool(run.get("invalidated"))
    cls = "invalid" if invalid else ("failed" if run["status"] != "ok" else "ok")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<section id="verdict" class="verdict {cls}"><h2>Verdict</h2>',
    ]
    if invalid:
        parts.append('<p class="invalid-tag">INVALIDATED: this run rests on something that has since changed.</p>')
        parts.append("<ul>" + "".join(f"<li>{_e(x['reason'])}</li>" for x in run["invalidated"]) + "</ul>")
        parts.append(f'<p id="headline"><del>{_e(headline(run))}</del></p>')
    else:
        parts.append(f'<p id="headline">{_e(headline(run))}</p>')
    warnings = (run.get("outputs") or {}).get("warnings") or []
    if isinstance(warnings, list) and warnings:
        parts.append("<p>Warnings:</p><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>")
    parts.append(f"<p>{_e(run['command'])} run <code>{_e(run['id'])}</code>, {_e(run['status'])}, started {_e(_when(run['started_at']))}"
                 + (f", on <code>{_e(run['subject'])}</code>" if run.get("subject") else "") + ".</p></section>")

    rows, left = key_numbers(run)
    parts.append('<section id="numbers"><h2>Key numbers</h2>')
    if rows:
        parts.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>")
    else:
        parts.append("<p>No scalar outputs recorded.</p>")
    if left:
        parts.append(f"<p>{left} longer values are not shown: <code>dormant ledger show {_e(run['id'])} --json</code>.</p>")
    parts.append("</section>")

    plots = _plots(run)
    if plots:
        parts.append('<section id="plots"><h2>Plots</h2>')
        for path, uri in plots:
            if uri:
                parts.append(f'<figure><img src="{uri}" alt="{_e(Path(path).name)}"><figcaption><code>{_e(path)}</code></figcaption></figure>')
            else:
                parts.append(f"<p>Plot <code>{_e(path)}</code> is missing or too large to inline.</p>")
        parts.append("</section>")

    if related:
        parts.append(f'<section id="related"><h2>{_e(related_title or "Other runs on the same subject")}</h2><table>'
                     "<tr><th>run</th><th>command</th><th>started</th><th>status</th><th>finding</th></tr>")
        for r in related:
            bad = bool(r.get("invalidated"))
            wrap = (lambda s: f"<del>{s}</del>") if bad else (lambda s: s)
            note = ("<br><span class=\"invalid-tag\">INVALIDATED</span>: " + "; ".join(_e(x["reason"]) for x in r["invalidated"])) if bad else ""
            rid = "<code>" + _e(r["id"]) + "</code>"
            parts.append(f'<tr class="{"invalid" if bad else "valid"}"><td>{wrap(rid)}</td><td>{wrap(_e(r["command"]))}</td>'
                         f"<td>{_e(_when(r['started_at']))}</td><td>{_e(r['status'])}</td><td>{wrap(_e(headline(r)))}{note}</td></tr>")
        parts.append("</table></section>")

    record = {k: run.get(k) for k in ("args", "inputs", "assumptions", "decided")}
    parts.append(f'<section id="record"><h2>Run record</h2><pre>{_e(json.dumps(to_jsonable(record), indent=1))}</pre></section>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(run: dict[str, Any], related: list[dict[str, Any]], *, title: str | None = None, related_title: str | None = None) -> str:
    """The Markdown twin of ``render_html``; plots are linked by path rather than inlined."""
    title = title or f"dormant report: {run['command']} run {run['id']}"
    lines = [f"# {title}", "", "## Verdict", ""]
    if run.get("invalidated"):
        lines.append("**INVALIDATED**: this run rests on something that has since changed.")
        lines += [f"- {_md(x['reason'])}" for x in run["invalidated"]]
        lines += ["", f"~~{_md(headline(run))}~~"]
    else:
        lines.append(f"**{_md(headline(run))}**")
    warnings = (run.get("outputs") or {}).get("warnings") or []
    if isinstance(warnings, list) and warnings:
        lines += ["", "Warnings:"] + [f"- {_md(w)}" for w in warnings]
    lines += ["", f"{run['command']} run `{run['id']}`, {run['status']}, started {_when(run['started_at'])}"
              + (f", on `{run['subject']}`" if run.get("subject") else "") + ".", "", "## Key numbers", ""]
    rows, left = key_numbers(run)
    if rows:
        lines += ["| output | value |", "|---|---|"] + [f"| {_md(k)} | {_md(v)} |" for k, v in rows]
    else:
        lines.append("No scalar outputs recorded.")
    if left:
        lines += ["", f"{left} longer values are not shown: `dormant ledger show {run['id']} --json`."]
    plots = _plots(run)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).name}]({Path(p).resolve().as_uri()})" for p, _ in plots]
    if related:
        lines += ["", f"## {related_title or 'Other runs on the same subject'}", "", "| run | command | started | status | finding |", "|---|---|---|---|---|"]
        for r in related:
            s = (lambda t: f"~~{t}~~") if r.get("invalidated") else (lambda t: t)
            note = (" INVALIDATED: " + "; ".join(_md(x["reason"]) for x in r["invalidated"])) if r.get("invalidated") else ""
            lines.append(f"| {s('`' + r['id'] + '`')} | {s(_md(r['command']))} | {_when(r['started_at'])} | {r['status']} | {s(_md(headline(r)))}{note} |")
    record = {k: run.get(k) for k in ("args", "inputs", "assumptions", "decided")}
    lines += ["", "## Run record", "", "```json", json.dumps(to_jsonable(record), indent=1), "```", ""]
    return "\n".join(lines)


def write_report(run: dict[str, Any], related: list[dict[str, Any]], out_dir: str | Path, *, title: str | None = None,
                 related_title: str | None = None, stem: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.html`` and ``<stem>.md`` into ``out_dir``; returns both paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or f"report_{run['command'].replace(' ', '-')}_{run['id']}"
    html_path, md_path = folder / f"{stem}.html", folder / f"{stem}.md"
    html_path.write_text(render_html(run, related, title=title, related_title=related_title), encoding="utf-8")
    md_path.write_text(render_markdown(run, related, title=title, related_title=related_title), encoding="utf-8")
    return html_path, md_path

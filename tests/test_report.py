"""`dormant report`: a self-contained HTML report (checked in headless Chromium, without network) and its Markdown twin."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dormant import ledger

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _find_browser():
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium; installed with apt-get when missing and running as root (as CI does), else the test is skipped."""
    found = _find_browser()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and cannot be installed here (not root, or no apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True, capture_output=True, timeout=900, env=env)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", b"") or b"")[-300:].decode(errors="replace").strip()
        pytest.skip(f"installing Chromium with apt-get failed: {exc} {detail}".strip())
    found = _find_browser()
    if not found:
        pytest.skip("apt-get install chromium succeeded but no chromium binary is on PATH")
    return found


def _chromium(browser, tmp_path, *args):
    """Run headless Chromium with no network: in a fresh network namespace when ``unshare -n`` works."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *args]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


# Injected into a copy of the report before its CSP <meta>: after load, write what the browser rendered into the DOM.
_PROBE = """<script>
window.addEventListener("load", function () {
  var v = document.getElementById("verdict"), r = v.getBoundingClientRect(), s = getComputedStyle(v);
  var imgs = Array.prototype.map.call(document.images, function (i) { return [i.complete, i.naturalWidth, i.naturalHeight]; });
  var p = document.createElement("pre"); p.id = "probe";
  p.textContent = JSON.stringify({verdict: v.innerText, visible: r.width > 0 && r.height > 0 && s.display !== "none" && s.visibility !== "hidden", imgs: imgs});
  document.body.appendChild(p);
});
</script>"""


@pytest.fixture(scope="module")
def investigated(tmp_path_factory, tiny_investigation):
    """A ledger with real runs on a tiny fine-tune: diff (wrong base only), delta on it, then diff with the true base."""
    return tiny_investigation(tmp_path_factory.mktemp("report"))


def test_report_html_and_markdown_on_a_diff_with_invalidated_runs(investigated):
    dormant, root = investigated["dormant"], investigated["root"]
    out = json.loads(dormant("report", "latest", "-o", root / "rep", "--json"))
    runs = ledger.list_runs(investigated["ledger"])
    latest, delta, first = runs
    assert out["run"] == latest["id"] and out["related"] == [delta["id"], first["id"]] and out["invalidated"] == []
    assert out["headline"].startswith(f"most likely base: {investigated['base']}")
    html = open(out["html"], encoding="utf-8").read()
    md = open(out["markdown"], encoding="utf-8").read()
    # self-contained: every image is a data URI, nothing refers to the network
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) and "url(" not in html
    pngs = [a for a in latest["artifacts"] if a.endswith(".png")]
    assert len(pngs) == 2 and html.count('<img src="data:image/png;base64,') == 2
    # verdict first, then the numbers; the invalidated runs struck out with their reason
    assert html.index('id="verdict"') < html.index('id="numbers"') < html.index('id="plots"') < html.index('id="related"')
    assert html.count('<tr class="invalid">') == 2 and html.count("<del><code>") == 2
    assert f"newer run {latest['id']} (diff) decided base=" in html
    assert md.startswith(f"# dormant report: diff run {latest['id']}") and f"**most likely base: {investigated['base']}" in md
    assert md.count(f"~~`{delta['id']}`~~") == 1 and md.count(f"~~`{first['id']}`~~") == 1 and "INVALIDATED: base changed" in md
    assert md.count("![heatmap_") == 2
    # a report on the invalidated delta run says so before anything else
    old = json.loads(dormant("report", delta["id"], "-o", root / "rep", "--json"))
    assert old["invalidated"] and old["invalidated"][0]["by"] == latest["id"]
    text = open(old["html"], encoding="utf-8").read()
    assert text.index("INVALIDATED: this run rests on something that has since changed.") < text.index('id="numbers"')
    bad = subprocess.run([sys.executable, "-m", "dormant.cli.main", "report", "zzz", "--ledger", str(investigated["ledger"])], capture_output=True, text=True)
    assert bad.returncode == 2 and "no run" in bad.stderr


def test_report_renders_in_headless_chromium_without_network(investigated, browser, tmp_path):
    dormant, root = investigated["dormant"], investigated["root"]
    out = json.loads(dormant("report", "latest", "-o", root / "rep", "--json"))
    page = tmp_path / "page.html"
    html = open(out["html"], encoding="utf-8").read()
    page.write_text(html.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    got = _chromium(browser, tmp_path, "--dump-dom", page.as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', got.stdout, re.S)
    assert m, got.stdout[-2000:]
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["visible"] and f"most likely base: {investigated['base']}" in probe["verdict"]
    assert len(probe["imgs"]) == 2 and all(done and w > 0 and h > 0 for done, w, h in probe["imgs"])
    shot = tmp_path / "shot.png"
    got = _chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", Path(out["html"]).resolve().as_uri())
    assert got.returncode == 0, got.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 1600)
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50  # text and plots, not a blank page


def test_report_is_generic_over_recorded_runs(tmp_path):
    """Any command's run: its verdict output leads, an SVG plot is inlined, a missing plot is said to be missing."""
    from dormant.report.document import related_runs, resolve_run, write_report

    db = tmp_path / "l.sqlite"
    svg = tmp_path / "widths.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>')
    net = tmp_path / "net.npz"
    net.write_bytes(b"\0" * 100)
    with ledger.record_run("net solve", {}, ledger=db) as run:
        run.add_input("network", net, subject=True)
        run.outputs.update(verdict="md5; target 0f00; preimage 'owl'", found=True, stages={"identify": {"seconds": 1.5}})
        run.artifacts += [str(svg), str(tmp_path / "gone.png"), str(tmp_path / "export.aiger")]
    with pytest.raises(RuntimeError):
        with ledger.record_run("net invert", {}, ledger=db) as failed:
            failed.add_input("network", net, subject=True)
            raise RuntimeError("out of candidates")
    got = resolve_run(run.id, db)
    related = related_runs(got, db)
    assert [r["id"] for r in related] == [failed.id]
    html_path, md_path = write_report(got, related, tmp_path / "rep")
    html = html_path.read_text()
    assert html.index("md5; target 0f00; preimage &#x27;owl&#x27;") < html.index('id="numbers"')
    assert "<th>stages.identify.seconds</th><td>1.5</td>" in html and "<th>found</th><td>true</td>" in html
    assert html.count('<img src="data:image/svg+xml;base64,') == 1 and "gone.png</code> is missing or too large to inline" in html
    assert "export.aiger" not in html.split('id="plots"')[1].split("</section>")[0]  # not a plot
    assert "run failed: RuntimeError: out of candidates" in html
    md = md_path.read_text()
    assert "**md5; target 0f00; preimage 'owl'**" in md and "| stages.identify.seconds | 1.5 |" in md
    assert resolve_run("latest", db)["id"] == failed.id
    with pytest.raises(KeyError, match="no runs"):
        resolve_run("latest", tmp_path / "empty.sqlite")

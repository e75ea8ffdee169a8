"""The HTML report: one self-contained page, checked as text and in a real headless Chromium.

The browser is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages ended by NUL, commands on fd 3, replies and events on fd 4), so the test needs no
WebDriver and no pip package, only the browser `make install` puts on the machine.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from results_factory import make_info, make_optimize_result, make_results
from skips import REQUIRES_CHROMIUM

from hone.report.html import render_html, write_html

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PLOTS = ("plot-latency", "plot-pareto", "plot-profile", "plot-batch")
REPLY_TIMEOUT_S = 30.0
PRUNED = {"tvm-tuned": "over the time budget: 300 s expected, 40 s left"}


# --- the page as text ---------------------------------------------------------------------

class _Page(HTMLParser):
    """Rows of the page's tables (cell texts), every src/href, and the ids of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.ids: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href") and v]
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture
def synthetic():
    """Every status (a crash, a timeout, a wrong answer...), a recipe the plan left out, a warning."""
    result = make_optimize_result(pruned=dict(PRUNED), warnings=["quantized without a calibration set"])
    result.run.run_id, result.run.created_at = 7, "2025-06-01T12:00:00+00:00"
    return result


def test_the_page_fetches_nothing(synthetic):
    text = render_html(synthetic)
    page = _parse(text)
    assert page.links, "the figures reference their own definitions"
    assert all(link.startswith("#") for link in page.links), [x for x in page.links if not x.startswith("#")]
    assert not re.search(r"url\(\s*['\"]?(?!#)", text)  # CSS urls: only in-document references
    assert not re.search(r"<(link|iframe|object|embed)\b", text) and "<script src" not in text
    assert "default-src 'none'" in text  # the browser itself refuses any load the page did not inline
    assert len(page.ids) == len(set(page.ids)), "ids of the inlined figures collide"


def test_failed_candidates_and_pruned_recipes_show_their_reasons(synthetic):
    page = _parse(render_html(synthetic))
    header, *rows = page.tables["candidates"]
    why, recipe, status = header.index("why"), header.index("recipe"), header.index("status")
    assert len(rows) == len(synthetic.results)
    for r in synthetic.results:
        row = next(x for x in rows if x[recipe].endswith(r.recipe.label) and r.input_set in x)
        if not r.ok:
            assert row[status].startswith(r.status.value) and r.reason in row[why], (r.recipe.label, row)
    winner = [x for x in rows if x[why] == "the winner"]
    assert winner and all(x[recipe].endswith(synthetic.selection.best.label) for x in winner)
    assert [row for row in page.tables["pruned"][1:]] == [[label, why] for label, why in PRUNED.items()]


def test_the_verdict_comes_first(synthetic):
    text = render_html(synthetic)
    best = synthetic.selection.ranking[0]
    verdict = text[text.index('id="verdict"'):text.index('id="candidates"')]
    assert f"Winner: {best.recipe.label}" in verdict and f"{best.speedup:.2f}x eager fp32" in verdict
    assert f"{best.low:.2f}-{best.high:.2f}x" in verdict
    assert "Runner-up:" in verdict and "pays off after" in verdict
    assert "quantized without a calibration set" in verdict
    assert synthetic.run.hardware["cpu_name"] in verdict and synthetic.run.created_at in verdict
    assert text.index('id="verdict"') < text.index('id="candidates"') < text.index('id="plots"')


def test_missing_figures_say_what_is_missing():
    """One input set, no profile, no memory figure: the page renders and says what it lacks."""
    results = [dataclasses.replace(r, measurement=dataclasses.replace(r.measurement, peak_rss_bytes=None))
               if r.measurement else r for r in make_results() if r.input_set == "bs1"]  # fmt: skip
    text = html.unescape(render_html(make_optimize_result(results, input_sets={"bs1": ["input_ids: int64[1, 128]"]})))
    assert "this run kept no profile" in text and "hone profile MODEL --plot" in text
    assert "needs one recipe measured at several batch sizes; this run has batch size 1" in text
    assert "no peak memory was measured in this run" in text
    assert text.count("<svg") == 2  # latency and Pareto still drawn


def test_without_matplotlib_every_figure_says_so(synthetic, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without hone[plot] sees
    text = render_html(synthetic)
    assert "<svg" not in text and html.unescape(text).count("pip install 'hone[plot]'") == len(PLOTS)
    assert "Winner: inductor" in text  # the rest of the report does not need it


def test_write_html_replaces_the_file_atomically(synthetic, tmp_path):
    target = tmp_path / "out" / "report.html"
    assert write_html(synthetic, target) == target
    first = target.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>") and first.rstrip().endswith("</html>")
    write_html(synthetic, target, status="interrupted")
    assert "run 7 is interrupted" in target.read_text(encoding="utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary left behind


def test_hone_report_html_writes_the_page(tmp_path, capsys, monkeypatch):
    import importlib

    from hone.cli import app as cli_app
    from hone.store import Store

    # Only this command: the others' imports are not what this test is about, and cost time.
    monkeypatch.setattr(cli_app, "_register_commands", lambda: importlib.import_module("hone.cli.report"))
    db = tmp_path / "hone.db"
    with Store(db) as store:
        run_id = store.start_run(make_info(pruned=dict(PRUNED)), "k")
        for r in make_results():
            store.record(run_id, r)
        store.finish_run(run_id)
    out = tmp_path / "report.html"
    assert cli_app.main(["report", "--db", str(db), "--html", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    page = _parse(out.read_text(encoding="utf-8"))
    assert len(page.tables["candidates"]) - 1 == len(make_results()) and "tvm-tuned" in page.tables["pruned"][1]
    # Beside --json, stdout stays one JSON document and the path goes to stderr.
    assert cli_app.main(["report", "--db", str(db), "--html", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["run"]["run_id"] == run_id and str(out) in printed.err


# --- the page in a browser ----------------------------------------------------------------

def _browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.skip(REQUIRES_CHROMIUM)
    return found


def _protocol_fds(to_browser: int, from_browser: int):
    """In the child, before exec: the pipe ends on fds 3 and 4, where the browser reads and
    writes the protocol. Via copies at 10 and above, since either end may itself be 3 or 4.
    (close_fds=False only lets inheritable fds through: 3 and 4; Python opens every other
    one close-on-exec.)"""
    import fcntl

    def move() -> None:
        reads, writes = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser))
        os.dup2(reads, 3)
        os.dup2(writes, 4)

    return move


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, binary: str, profile_dir: Path):
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--window-size=1280,1000",
                 f"--user-data-dir={profile_dir}", "about:blank"]  # fmt: skip
        self.process = subprocess.Popen(
            [binary, *flags], preexec_fn=_protocol_fds(to_browser, from_browser), close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []
        self.session = None
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited: {self.process.stderr.read().decode(errors='replace')[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, since: int) -> None:
        """Until `event` arrives, counting only events from index `since` on."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not any(e.get("method") == event for e in self.events[since:]):
            self.events.append(self._message(deadline))

    def open(self, path: Path) -> None:
        since = len(self.events)
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired", since)

    def js(self, expression: str):
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user's would land."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                      " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page caused."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self):
        from PIL import Image  # matplotlib's own dependency, there wherever the figures are

        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass  # it may close the pipe before it answers
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)  # its own session: the browser and its helpers only
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self.process.stderr.close()


@pytest.fixture
def browser(tmp_path):
    chromium = Chromium(_browser(), tmp_path / "chromium-profile")
    yield chromium
    chromium.close()


def _column(browser: Chromium, header: str) -> list[str]:
    """The data-sort values of a column of the candidate table, in the order shown."""
    return browser.js(f"""(() => {{
        const heads = Array.from(document.querySelectorAll('#candidates th')).map(h => h.textContent.trim());
        const i = heads.indexOf({json.dumps(header)});
        return Array.from(document.querySelectorAll('#candidates tbody tr'))
            .map(r => r.cells[i].getAttribute('data-sort'));
    }})()""")


def _check_sorting(browser: Chromium, header: str) -> None:
    before = _column(browser, header)
    selector = f"#candidates th:nth-child({_column_index(browser, header) + 1})"
    browser.click(selector)
    ascending = _column(browser, header)
    figures = [float(v) for v in ascending if v]
    assert len(set(figures)) > 1, f"the {header} column has nothing to sort: {before}"
    assert figures == sorted(figures) and all(not v for v in ascending[len(figures):]), ascending
    browser.click(selector)
    descending = _column(browser, header)
    assert [float(v) for v in descending if v] == sorted(figures, reverse=True), descending
    assert browser.js(f"document.querySelector('{selector}').getAttribute('aria-sort')") == "descending"


def _column_index(browser: Chromium, header: str) -> int:
    heads = browser.js("Array.from(document.querySelectorAll('#candidates th')).map(h => h.textContent.trim())")
    return heads.index(header)


def _check_page(browser: Chromium, path: Path, rows: int, drawn: tuple[str, ...]) -> None:
    browser.open(path)
    assert browser.errors() == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requests()), browser.requests()
    assert browser.js("document.querySelectorAll('#candidates tbody tr').length") == rows
    for key in PLOTS:
        assert browser.js(f"!!document.getElementById('{key}')"), key
        size = browser.js(f"(() => {{ const s = document.querySelector('#{key} svg');"
                          " if (!s) return null; const r = s.getBoundingClientRect(); return [r.width, r.height]; })()")
        if key in drawn:
            assert size is not None and min(size) > 0, (key, size)
        else:
            assert browser.js(f"document.querySelector('#{key} .missing') !== null"), key
    _check_sorting(browser, "p50")
    image = browser.screenshot()
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 1, "the screenshot is a single colour"
    assert browser.errors() == []  # sorting raised nothing either


def test_synthetic_run_in_chromium(synthetic, browser, tmp_path):
    path = write_html(synthetic, tmp_path / "synthetic.html")
    # No profile in this run: its figure is the line saying so.
    _check_page(browser, path, len(synthetic.results), ("plot-latency", "plot-pareto", "plot-batch"))


@pytest.mark.slow
def test_real_run_reported_from_the_store_in_chromium(browser, tmp_path, capsys, monkeypatch):
    import hone
    from hone.cli.app import main

    monkeypatch.setenv("HONE_NO_PROGRESS", "1")
    db = tmp_path / "hone.db"
    from in_process_executor import InProcessExecutor

    result = hone.optimize("digits-cnn", store=db, progress=False, measure_time_s=0.3, include=["torchscript-trace"],
                           executor=InProcessExecutor())  # the report, not the workers, is under test
    assert result.run.profile is not None and len(result.run.input_sets) > 1
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(db), "--html", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    _check_page(browser, out, len(result.results), PLOTS)
    page = browser.js("document.body.innerText")
    for r in result.results:
        assert r.recipe.label in page

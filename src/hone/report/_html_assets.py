"""The HTML report's inline style and script: the page fetches nothing, so both live here.

The Content-Security-Policy makes that a rule the browser enforces rather than a habit: it
allows inline style, inline script and data: images, and refuses every other load.
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1400px; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #555; margin: 0 0 1rem; }
.verdict { border-left: 5px solid #2e7d32; background: #f1f8f1; padding: .8rem 1rem; margin: 1rem 0; }
.verdict.none { border-color: #c62828; background: #fdf0f0; }
.verdict .headline { font-size: 1.2rem; font-weight: 600; margin: 0 0 .4rem; }
.verdict p { margin: .25rem 0; }
.warnings { border-left: 5px solid #ef6c00; background: #fff6ec; padding: .5rem 1rem .5rem 2rem; }
.notes { color: #444; }
dl.machine { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0; }
dl.machine dt { color: #555; }
dl.machine dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
th { background: #f5f5f7; cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.acc { text-align: left; }
td.why { min-width: 18rem; max-width: 36rem; overflow-wrap: anywhere; }
td.recipe { white-space: nowrap; }
td pre { white-space: pre-wrap; font-size: 12px; max-height: 20rem; overflow: auto; }
.scroll { overflow-x: auto; }
tr.winner td { background: #f1f8f1; font-weight: 600; }
td.status.ok { color: #2e7d32; }
td.status.wrong_answer, td.status.crashed { color: #c62828; }
td.status.timeout, td.status.oom { color: #ef6c00; }
td.status.unsupported { color: #777; }
figure.plot { margin: 1rem 0 2rem; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
.missing { color: #8a5a00; font-style: italic; }
details { margin: .5rem 0; }
code { background: #f5f5f7; padding: 0 .2rem; }
"""

# Click (or Enter on) a header to sort by it; again to reverse. Cells without a figure sort
# last either way, so a failed candidate never tops a latency column.
SORT_JS = """
(function () {
  function key(row, i) {
    var cell = row.cells[i];
    return cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort') : cell.textContent.trim();
  }
  function sortBy(table, th, i) {
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var numeric = th.getAttribute('data-type') === 'number';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, i), y = key(b, i);
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, i) {
      th.addEventListener('click', function () { sortBy(table, th, i); });
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') { sortBy(table, th, i); } });
    });
  });
})();
"""

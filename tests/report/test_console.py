"""The console report: every candidate shown, speedups from the measured times, reasons kept."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from results_factory import make_optimize_result, make_results

from hone.report.console import fmt_time, render, render_text
from hone.search.result import Status


@pytest.fixture
def result():
    r = make_optimize_result()
    r.run.run_id, r.run.created_at = 7, "2025-06-01T12:00:00+00:00"
    return r


def _rows(text: str, label: str) -> list[str]:
    return [line for line in text.splitlines() if f" {label} " in line and "│" in line]


def test_every_candidate_and_status_is_shown(result):
    text = render_text(result)
    for r in result.results:
        assert _rows(text, r.recipe.label), r.recipe.label
    for status in Status:
        assert status.value in text
    # two input sets, each candidate once per set, in the RunInfo's order
    assert len(_rows(text, "openvino")) == 2
    assert text.index("bs1 ") < text.index("bs8 ")


def test_speedup_from_the_synthetic_times(result):
    text = render_text(result)
    inductor = _rows(text, "inductor")  # eager 10/100 ms vs inductor 5/50 ms
    assert len(inductor) == 2 and all("2.00x" in row for row in inductor)
    assert all("1.25x" in row for row in _rows(text, "ort-int8"))
    assert all("1.00x" in row for row in _rows(text, "eager"))
    assert "5.00 ms" in inductor[0] and "50.0 ms" in inductor[1]
    assert "200.0/s" in inductor[0] and "160.0/s" in inductor[1]  # batch 1 / 5 ms, batch 8 / 50 ms
    assert all("2.00x" not in row for row in _rows(text, "bf16"))  # wrong answers get no speedup


def test_winner_marked_and_explained(result):
    text = render_text(result)
    marked = [line for line in text.splitlines() if "★" in line]
    assert len(marked) == 2 and all("inductor" in line for line in marked)
    assert "best: inductor: 2.00x eager fp32" in text
    assert "runner-up: ort-int8: 1.25x" in text
    assert "not selected:" in text and "  tvm: timeout at bs1: exceeded the 600 s timeout" in text
    assert "noise: ort-int8 at bs8: IQR 8% of median" in text


def test_header(result):
    text = render_text(result)
    assert "hone run 7" in text and "model: minilm" in text
    assert "device: cpu, threads: 2, hardware: AMD EPYC 9R14 96-Core Processor" in text
    assert "inputs bs8: input_ids: int64[8, 128], attention_mask: int64[8, 128]" in text  # brackets kept


def test_accuracy_column(result):
    text = render_text(result)
    assert "top1 0.9780 Δ-0.0030" in _rows(text, "ort-int8")[0]
    assert "max err 2e-07" in _rows(text, "inductor")[0]
    assert "max err 3.1e-01 (atol 2e-02)" in _rows(text, "bf16")[0]
    assert "max abs err 3.1e-01 > atol 1.6e-02" in text  # the verdict's own words, below the table


def test_long_reason_cut_in_table_but_full_below(result):
    text = render_text(result)
    row = _rows(text, "torchscript")[0]
    assert "…" in row and "modeling_bert.py:412" not in row
    assert "modeling_bert.py:412" in text
    assert max(len(line) for line in text.splitlines()) <= 140


def test_nothing_passed():
    failed = [r for r in make_results() if not r.ok]
    text = render_text(make_optimize_result(failed))
    assert "best: none" in text and "nothing to recommend" in text
    assert "★" not in text and "x │" not in text


def test_no_baseline_means_no_speedup():
    no_eager = [r for r in make_results() if r.recipe.label != "eager"]
    text = render_text(make_optimize_result(no_eager))
    assert "2.00x" not in text and "no eager fp32 baseline" in text


def test_no_results():
    text = render_text(make_optimize_result([]))
    assert "no candidate results were recorded" in text


def test_table_method_is_the_text_report(result):
    assert result.table() == render_text(result)


def test_render_colours_statuses(result):
    buf = io.StringIO()
    render(result, Console(file=buf, width=160, force_terminal=True, color_system="standard"))
    out = buf.getvalue()
    assert "\x1b[32mok" in out and "\x1b[31mwrong_answer" in out and "\x1b[33mtimeout" in out


def test_narrow_console_keeps_the_deciding_columns(result):
    buf = io.StringIO()
    render(result, Console(file=buf, width=80, color_system=None))
    out = buf.getvalue()
    assert "p90" not in out and "2.00x" in out and "5.00 ms" in out and "inductor" in out
    assert "throughput" in render_text(result)


@pytest.mark.parametrize(
    "seconds, text",
    [(85.3e-6, "85.3 µs"), (4.271e-3, "4.27 ms"), (42.71e-3, "42.7 ms"), (0.4271, "427 ms"),
     (1.234, "1.23 s"), (float("nan"), "-"), (None, "-")],
)  # fmt: skip
def test_fmt_time(seconds, text):
    assert fmt_time(seconds) == text


def test_one_time_cost_pays_off_after_calls_with_the_compilers_notes(result):
    import re

    for r in result.results:
        if r.recipe.label == "inductor":
            r.summary = ["graph breaks 1 (first: model.py:12: Failed to trace builtin operator: print)"]
            # The report reads the runner's summary, never its info keys.
            r.runner_info.update(graph_break_count=7, tuning_s=99.0)
    text = render_text(result)
    assert "one-time cost and when it pays off against eager (bs8):" in text
    # bs8: (12 + 3) - (0.5 + 0.05) s = 14.45 s more than eager; 100 ms - 50 ms saved per call.
    line = next(line for line in text.splitlines() if line.strip().startswith("inductor: 14.4 s"))
    assert re.search(r"pays off after 2(89|90) calls \(50\.0 ms saved per call\)", line)
    flat = " ".join(text.split())  # the line wraps at the console's width
    assert "graph breaks 1 (first: model.py:12: Failed to trace builtin operator: print)" in flat
    assert "graph breaks 7" not in flat and "tuning 99" not in flat


def test_the_baseline_is_the_flagged_recipe_whatever_its_label():
    import dataclasses

    from results_factory import EAGER

    control = dataclasses.replace(EAGER, label="reference")
    results = [dataclasses.replace(r, recipe=control) if r.recipe.key == EAGER.key else r for r in make_results()]
    text = render_text(make_optimize_result(results))
    assert all("2.00x" in row for row in _rows(text, "inductor"))
    assert all("1.00x" in row for row in _rows(text, "reference"))


def test_the_footer_counts_builds_for_candidates(result):
    assert "2 builds for 4 candidates" in render_text(result)  # eager and inductor: one build for both sets
    assert "builds for" not in render_text(make_optimize_result([r for r in make_results() if r.build is None]))

"""Op counting: FLOPs and bytes per aten call, views move nothing, composites as eager runs them."""

from __future__ import annotations

import torch

from hone.profiler.count import NO_TRAFFIC_OPS, call_indices, count_ops, touched_bytes
from hone.profiler.join import join
from hone.profiler.timing import OpEvent, profile_ops

F32 = 4  # bytes per float32


def _only(calls, name):
    found = [c for c in calls if c.name == name]
    assert len(found) == 1, [c.name for c in calls]
    return found[0]


def test_linear_flops_and_bytes():
    m, k, n = 8, 64, 32
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n)
    calls = count_ops(linear, torch.randn(m, k))
    addmm = _only(calls, "aten::addmm")
    assert addmm.flops == 2 * m * n * k
    # input + weight + bias + output, each read or written once
    assert addmm.bytes == (m * k + k * n + n + m * n) * F32
    assert addmm.dtype == "float32"
    assert addmm.shapes == "[32], [8, 64], [64, 32]"
    assert addmm.out_shape == (m, n) and addmm.out_bytes == m * n * F32


def test_view_ops_move_no_bytes():
    x = torch.randn(4, 16)
    calls = count_ops(lambda t: t.view(8, 8).transpose(0, 1).unsqueeze(0).permute(2, 0, 1).squeeze(1), x)
    assert calls, "the counter saw nothing"
    assert {c.name for c in calls} <= NO_TRAFFIC_OPS
    assert all(c.bytes == 0 and c.flops == 0 for c in calls)


def test_broadcast_operand_counts_its_distinct_elements_once():
    rows, cols = 128, 64
    x, bias = torch.randn(rows, cols), torch.randn(cols)
    add = _only(count_ops(lambda a: a + bias.expand(rows, cols), x), "aten::add")
    assert add.bytes == (2 * rows * cols + cols) * F32
    assert touched_bytes(bias.expand(rows, cols)) == cols * F32


def test_composites_are_counted_as_eager_runs_them():
    model = torch.nn.Sequential(torch.nn.LayerNorm(16), torch.nn.Dropout(0.1)).eval()
    names = [c.name for c in count_ops(model, torch.randn(2, 16))]
    # layer_norm runs native_layer_norm; eval dropout returns its input (no clone, as in C++)
    assert names == ["aten::native_layer_norm"]


def test_cpu_attention_has_flops():
    q = k = v = torch.randn(2, 4, 8, 16)
    calls = count_ops(lambda a: torch.nn.functional.scaled_dot_product_attention(a, k, v), q)
    attention = [c for c in calls if "scaled_dot_product" in c.name]
    assert attention and attention[0].flops == 2 * (2 * 2 * 4 * 8 * 8 * 16)  # QK^T and PV


def test_call_indices_number_each_op_separately():
    calls = count_ops(lambda t: (t + 1) * 2 + 3, torch.randn(3))
    assert [c.name for c in calls] == ["aten::add", "aten::mul", "aten::add"]
    assert call_indices(calls) == [0, 0, 1]


def test_profiler_events_pair_with_counted_calls():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).eval()
    x = torch.randn(4, 32)
    calls = count_ops(model, x)
    iterations = profile_ops(model, (x,), {c.name for c in calls}, iterations=2)
    assert len(iterations) == 2
    # internal calls of a kernel (aten::empty inside aten::addmm) are not listed on their own
    assert [e.name for e in iterations[0]] == [c.name for c in calls]
    joined = join(calls, iterations)
    assert joined.unmatched_calls == 0 and joined.unmatched_events == 0 and not joined.notes()
    assert all(t.time_s > 0 for t in joined.calls if t.call.name == "aten::addmm")


def test_join_survives_mismatched_sequences():
    calls = count_ops(lambda t: (t + 1) * 2, torch.randn(3))
    events = [[OpEvent("aten::add", 1e-5), OpEvent("aten::add", 2e-5), OpEvent("aten::sub", 1e-5)]]
    joined = join(calls, events)
    assert [t.time_s for t in joined.calls] == [1e-5, 0.0]
    assert joined.unmatched_calls == 1 and joined.unmatched_events == 2
    assert len(joined.notes()) == 2 and "aten::mul x1" in joined.notes()[0]
    assert join(calls, []).unmatched_calls == 2  # no profile at all: still no crash


def test_gathers_count_the_rows_they_read_not_the_table():
    table = torch.nn.Embedding(1000, 64)
    ids = torch.tensor([[1, 2, 3]])
    lookup = _only(count_ops(table, ids), "aten::embedding")
    rows = 3 * 64 * F32
    assert lookup.bytes == ids.nbytes + 2 * rows  # indices, rows read, rows written

"""`hone optimize model.onnx`: an ONNX file as the workload. Its inputs come from the graph,
only ONNX-consuming recipes are composed, the baseline is ONNX Runtime without graph
optimizations, and external data that points out of the model's folder is refused before any
runtime opens the file."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hone.errors import InputError, UnsafeModel
from hone.models import load_model
from hone.models._synthetic_inputs import DEFAULT_DYNAMIC_DIM

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

# The formats a recipe of an ONNX file may hand its steps: nothing converts it back to torch.
NOT_TORCH = {"onnx", "openvino"}


class TokenClassifier(torch.nn.Module):
    """Token ids and a mask of a dynamic batch and sequence (what --input-shape is for), pooled
    by attention over the tokens (a Softmax in the graph)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.score = torch.nn.Linear(16, 1)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids)
        scores = self.score(hidden).squeeze(-1).masked_fill(attention_mask == 0, float("-inf"))
        return self.head((torch.softmax(scores, dim=-1).unsqueeze(-1) * hidden).sum(1))


def _export(model: torch.nn.Module, inputs: tuple, names: list[str], path: Path, dynamic: dict) -> Path:
    torch.onnx.export(model.eval(), inputs, str(path), input_names=names, output_names=["logits"], dynamo=True,
                      dynamic_shapes=dynamic)
    return path


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory) -> Path:
    from tiny_models import TinyMLP

    torch.manual_seed(0)
    batch = torch.export.Dim("batch")
    return _export(TinyMLP(), (torch.randn(2, 32),), ["x"], tmp_path_factory.mktemp("mlp") / "mlp.onnx",
                   {"x": {0: batch}})


@pytest.fixture(scope="module")
def token_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    ids, mask = torch.randint(0, 50, (2, 7)), torch.ones(2, 7, dtype=torch.int64)
    return _export(TokenClassifier(), (ids, mask), ["input_ids", "attention_mask"],
                   tmp_path_factory.mktemp("tokens") / "tokens.onnx",
                   {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})


def test_an_onnx_file_loads_with_the_graphs_inputs_and_its_baseline_pickles(mlp_onnx):
    workload = load_model(str(mlp_onnx), batch_sizes=(1, 4))
    assert workload.source_format == "onnx"
    assert [s.label for s in workload.input_sets] == ["bs1", "bs4"]
    assert [str(t) for t in workload.input_sets[1].specs()] == ["x: float32[4, 32]"]
    assert "warnings" not in workload.provenance  # only the batch was dynamic, and the batch sizes were given
    assert workload.provenance["format"] == "onnx" and workload.provenance["declared_inputs"] == ["x[batch, 32]"]
    assert "graph optimizations disabled" in workload.provenance["baseline"]
    x = workload.input_sets[1].tensors["x"]
    out = workload.module(x=x)["logits"]
    # A spawn worker receives the module pickled: a path, not a session.
    for clone in (pickle.loads(pickle.dumps(workload.module)), copy.deepcopy(workload.module)):
        assert torch.equal(clone(x=x)["logits"], out)


def test_only_onnx_consuming_recipes_are_composed_and_the_baseline_is_ort_unoptimized(mlp_onnx, hardware):
    from hone.api import list_recipes
    from hone.registry import PASSES, RUNTIMES

    planned = list_recipes(str(mlp_onnx))
    by_label = {p.recipe.label: p.recipe for p in planned}
    baseline = [r for r in by_label.values() if r.baseline]
    assert [(r.label, r.runtime.config.graph_optimization_level) for r in baseline] == [("onnxruntime-disable", "disable")]
    assert {"onnxruntime", "ort-int8-dynamic", "ort-int8-static"} <= set(by_label)
    for recipe in by_label.values():
        fmt = "onnx"
        for step in recipe.passes:
            cls = PASSES.get(step.name)
            assert fmt in cls.consumes, (recipe.label, step.name)
            fmt = cls.produces
            assert fmt in NOT_TORCH, (recipe.label, step.name, fmt)
        assert fmt in RUNTIMES.get(recipe.runtime.name).consumes
    assert not {"eager", "inductor", "aoti", "pt2e-int8", "torchscript-trace"} & set(by_label)
    with pytest.raises(InputError, match="nothing converts onnx"):
        list_recipes(str(mlp_onnx), stacks=["inductor"])
    assert "ort-fusions" not in by_label  # no attention in an MLP's graph


def test_ort_fusions_are_offered_where_the_graph_holds_attention(token_onnx):
    from hone.api import list_recipes

    assert "ort-fusions" in {p.recipe.label for p in list_recipes(str(token_onnx))}  # its Softmax


def test_a_dynamic_dimension_gets_a_default_and_a_warning_without_input_shape(token_onnx):
    workload = load_model(str(token_onnx))
    ids, mask = (workload.input_sets[0].tensors[n] for n in ("input_ids", "attention_mask"))
    assert [s.label for s in workload.input_sets] == ["bs1"]  # the batch: 1 unless asked
    assert ids.shape == mask.shape == (1, DEFAULT_DYNAMIC_DIM)  # one symbol ("seq"): one size for both
    assert ids.dtype == mask.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < 50 and bool((mask == 1).all())  # valid ids, a full mask
    assert workload.provenance["defaulted_dims"] == {"input_ids": {"1": DEFAULT_DYNAMIC_DIM}}
    (warning,) = workload.provenance["warnings"]
    assert "default size" in warning and "seq" in warning and "--input-shape input_ids=" in warning
    workload.module(**workload.input_sets[0].tensors)  # the graph takes them


def test_input_shape_sets_a_dynamic_dimension_and_the_batch_sizes_vary_dim_0(token_onnx):
    workload = load_model(str(token_onnx), input_shapes=["input_ids=2x16"], batch_sizes=(1, 3))
    assert [[str(t) for t in s.specs()] for s in workload.input_sets] == [
        ["input_ids: int64[1, 16]", "attention_mask: int64[1, 16]"],
        ["input_ids: int64[3, 16]", "attention_mask: int64[3, 16]"],
    ]
    assert "warnings" not in workload.provenance and "defaulted_dims" not in workload.provenance
    only_shape = load_model(str(token_onnx), input_shapes={"attention_mask": (2, 9)})
    assert [str(t) for t in only_shape.input_sets[0].specs()] == ["input_ids: int64[2, 9]", "attention_mask: int64[2, 9]"]


@pytest.mark.parametrize("shape, message", [
    ("tokens=1x16", "the graph's inputs are"),
    ("input_ids=1x2x3", "3 dimensions, the graph declares input_ids"),
])
def test_an_input_shape_the_graph_cannot_take_is_an_input_error(token_onnx, shape, message):
    with pytest.raises(InputError, match=message):
        load_model(str(token_onnx), input_shapes=[shape])


def test_an_onnx_file_optimizes_end_to_end_and_nothing_is_written_beside_it(token_onnx, tmp_path):
    import hone

    pytest.importorskip("openvino")
    before = sorted(p.name for p in token_onnx.parent.iterdir())
    result = hone.optimize(str(token_onnx), recipes=["onnxruntime", "openvino"], batch_sizes=(1, 2),
                           measure_time_s=0.3, store=tmp_path / "hone.db", progress=False)
    by = {(r.recipe.label, r.input_set): r for r in result.results}
    assert set(by) == {(label, s) for label in ("onnxruntime-disable", "onnxruntime", "openvino") for s in ("bs1", "bs2")}
    for (label, input_set), r in by.items():
        assert r.status.value == "ok", (label, input_set, r.reason)
    assert by[("onnxruntime-disable", "bs1")].recipe.baseline
    assert by[("onnxruntime", "bs1")].runner_info["graph_optimization_level"] == "all"
    assert result.selection.best is not None
    # The loader's assumption is said with the run, and what it loaded is recorded.
    assert any("default size" in w for w in result.run.warnings)
    assert result.run.provenance["format"] == "onnx" and result.run.provenance["defaulted_dims"]
    assert sorted(p.name for p in token_onnx.parent.iterdir()) == before  # every step wrote into its own folder


# --- external data: refused when it leads out of the model's folder ---


def _with_external_data(source: Path, folder: Path, location: str, data_file: Path) -> Path:
    """A copy of `source` in `folder` whose weights live in `data_file`, named in the graph as
    `location`. The data is right, so only where it lives can make loading fail."""
    from onnx import numpy_helper

    model = onnx.load(str(source))
    folder.mkdir(parents=True, exist_ok=True)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    with open(data_file, "wb") as f:
        for tensor in model.graph.initializer:
            data = numpy_helper.to_array(tensor).tobytes()
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            del tensor.external_data[:]
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            f.write(data)
            offset += len(data)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


def _unsafe_layouts(source: Path, root: Path) -> dict[str, Path]:
    outside = root / "elsewhere" / "weights.bin"
    layouts = {
        "dotdot": _with_external_data(source, root / "dotdot" / "model", "../weights.bin", root / "dotdot" / "weights.bin"),
        "absolute": _with_external_data(source, root / "absolute", str(outside), outside),
    }
    linked = _with_external_data(source, root / "link", "weights.bin", outside)
    (root / "link" / "weights.bin").symlink_to(outside)  # an innocent name, a file elsewhere
    layouts["symlink"] = linked
    return layouts


@pytest.mark.parametrize("case, reason", [("dotdot", "'..'"), ("absolute", "absolute path"), ("symlink", "symlink")])
def test_external_data_outside_the_models_folder_is_refused(mlp_onnx, tmp_path, case, reason):
    path = _unsafe_layouts(mlp_onnx, tmp_path)[case]
    with pytest.raises(UnsafeModel, match=reason) as err:
        load_model(str(path))
    assert err.value.hint and "folder" in err.value.hint


def test_external_data_inside_the_folder_loads_and_runs(mlp_onnx, tmp_path):
    """The control: the same weights, kept in a subfolder of the model's folder."""
    path = _with_external_data(mlp_onnx, tmp_path / "ok", "data/weights.bin", tmp_path / "ok" / "data" / "weights.bin")
    workload = load_model(str(path))
    assert workload.provenance["external_data"] == ["data/weights.bin"]
    reference = load_model(str(mlp_onnx))
    x = workload.input_sets[0].tensors["x"]
    assert torch.equal(workload.module(x=x)["logits"], reference.module(x=x)["logits"])


def test_a_missing_external_data_file_is_an_input_error_not_a_refusal(mlp_onnx, tmp_path):
    path = _with_external_data(mlp_onnx, tmp_path / "gone", "weights.bin", tmp_path / "gone" / "weights.bin")
    (tmp_path / "gone" / "weights.bin").unlink()
    with pytest.raises(InputError, match="no such file") as err:
        load_model(str(path))
    assert not isinstance(err.value, UnsafeModel)


def test_unsafe_external_data_is_refused_before_any_runtime_is_even_imported(mlp_onnx, tmp_path):
    """In a fresh interpreter: every unsafe layout is refused with no ONNX runtime imported;
    then the safe model runs, which does import ONNX Runtime (so the probe can see it)."""
    layouts = _unsafe_layouts(mlp_onnx, tmp_path)
    script = textwrap.dedent(f"""
        import sys
        from hone.errors import UnsafeModel
        from hone.models import load_model
        for path in {[str(p) for p in layouts.values()]!r}:
            try:
                load_model(path)
            except UnsafeModel:
                print("refused")
        print("runtimes imported:", sorted(m for m in ("onnxruntime", "openvino") if m in sys.modules))
        workload = load_model({str(mlp_onnx)!r})
        workload.module(**workload.input_sets[0].tensors)
        print("after a safe run:", "onnxruntime" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines.count("refused") == 3
    assert "runtimes imported: []" in lines and "after a safe run: True" in lines

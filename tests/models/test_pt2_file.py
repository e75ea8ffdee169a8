"""`program.pt2` (torch.export.save): inputs from the program, batch sizes where the batch is
dynamic, a picklable module, pickles inside the archive refused, and an optimize run on it."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import subprocess
import sys
import zipfile

import pytest
import torch

import hone
from hone.errors import InputError, UnsafeModel
from hone.models import load_model, normalize_outputs
from hone.models.pt2_file import DEFAULT_DYNAMIC_SIZE

BATCH = torch.export.Dim("batch")


class MaskedLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y": self.fc(x) * mask, "total": x.sum(-1)}


class Embedder(torch.nn.Module):
    """Token ids of any length; takes its input by keyword."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids).mean(dim=1)


def _save(tmp_path, program, name="program.pt2"):
    path = tmp_path / name
    torch.export.save(program, str(path))
    return path


def _masked_program(dynamic=True):
    generator = torch.Generator().manual_seed(0)
    args = (torch.randn(3, 8, generator=generator), torch.rand(3, 4, generator=generator))
    shapes = {"x": {0: BATCH}, "mask": {0: BATCH}} if dynamic else None
    return torch.export.export(MaskedLinear().eval(), args, dynamic_shapes=shapes)


def test_saved_example_inputs_and_a_dynamic_batch(tmp_path):
    program = _masked_program()
    path = _save(tmp_path, program)
    workload = load_model(str(path))
    assert [s.label for s in workload.input_sets] == ["bs1", "bs8"]
    assert workload.input_names == ["x", "mask"]
    x8 = workload.input_set("bs8").tensors["x"]
    saved_x = program.example_inputs[0][0]
    assert x8.shape == (8, 8) and torch.equal(x8[:3], saved_x) and torch.equal(x8[3:6], saved_x)  # rows cycled
    outputs = normalize_outputs(workload.module(**workload.input_set("bs8").tensors))
    expected = MaskedLinear().eval()(**workload.input_set("bs8").tensors)
    torch.testing.assert_close(outputs["y"], expected["y"])
    assert workload.provenance["format"] == "pt2" and workload.provenance["batch"] == "dynamic"
    assert workload.provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "warnings" not in workload.provenance
    sized = load_model(str(path), batch_sizes=(2, 5))
    assert [s.batch_size for s in sized.input_sets] == [2, 5]
    assert [s.label for s in load_model(str(path), input_shapes=["x=4x8", "mask=4x4"]).input_sets] == ["bs4"]


def test_the_module_pickles_and_copies_like_any_module(tmp_path):
    workload = load_model(str(_save(tmp_path, _masked_program())))
    inputs = workload.input_set("bs8").tensors
    module = workload.module.eval()  # ep.module().eval() itself raises; hone calls it everywhere
    with torch.no_grad():
        module.program.fc.weight.mul_(2)  # a changed weight travels with the pickle
        again = torch.load(io.BytesIO(_pickled(module)), weights_only=False)  # how workers receive it
        torch.testing.assert_close(again(**inputs)["y"], module(**inputs)["y"])
        copied = copy.deepcopy(module)
        torch.testing.assert_close(copied(*inputs.values())["y"], module(**inputs)["y"])


def _pickled(module):
    buffer = io.BytesIO()
    torch.save(module, buffer)
    return buffer.getvalue()


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def test_a_reexport_keeps_the_layers_so_pt2e_quantizes_them(tmp_path):
    pytest.importorskip("torchao")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from hone.models.workload import FlatIO
    from hone.passes.torch.pt2e_int8 import x86_quantizer

    program = torch.export.export(Encoder().eval(), (torch.randn(2, 5, 8),), dynamic_shapes={"x": {0: BATCH}})
    workload = load_model(str(_save(tmp_path, program)))
    x = workload.input_set("bs8").tensors["x"]
    graph = torch.export.export(FlatIO(workload.module, ["x"], ["output"]), (x,)).module()
    linears = [n for n in graph.graph.nodes if n.target == torch.ops.aten.linear.default]
    # The paths hone names layers by (FlatIO's module, then the program's own modules), and their types.
    assert [list(n.meta["nn_module_stack"].values())[-1] for n in linears] == [
        ("module.program.block.up", "torch.nn.modules.linear.Linear"),
        ("module.program.block.down", "torch.nn.modules.linear.Linear"),
    ]
    prepared = prepare_pt2e(graph, x86_quantizer(()))
    prepared(x)
    converted = convert_pt2e(prepared)
    assert any("quantize_per" in str(n.target) for n in converted.graph.nodes)


def test_a_transformers_program_loads_in_a_fresh_process(tmp_path):
    # Its outputs are a transformers ModelOutput, which torch.export.load resolves only once
    # transformers registered it: a worker and a new `hone optimize` have not imported it yet.
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     vocab_size=100, max_position_embeddings=32)
    ids = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    program = torch.export.export(transformers.BertModel(config).eval(), (), {"input_ids": ids},
                                  dynamic_shapes={"input_ids": {0: BATCH}})
    path = _save(tmp_path, program)
    code = ("import sys; from hone.models import load_model, normalize_outputs; w = load_model(sys.argv[1]); "
            "print(sorted(normalize_outputs(w.module(**w.input_sets[0].tensors))))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['last_hidden_state', 'pooler_output']"


def test_static_batch_takes_no_batch_sizes(tmp_path):
    path = _save(tmp_path, _masked_program(dynamic=False))
    workload = load_model(str(path))
    assert [s.label for s in workload.input_sets] == ["bs3"] and workload.provenance["batch"] == "static (3)"
    with pytest.raises(InputError, match="static batch") as err:
        load_model(str(path), batch_sizes=(1, 8))
    assert "Dim('batch')" in err.value.hint


def test_batch_outside_the_programs_range(tmp_path):
    program = torch.export.export(MaskedLinear().eval(), (torch.randn(3, 8), torch.rand(3, 4)),
                                  dynamic_shapes={"x": {0: torch.export.Dim("b", max=4)}, "mask": {0: torch.export.Dim("b", max=4)}})
    path = _save(tmp_path, program)
    assert [s.batch_size for s in load_model(str(path)).input_sets] == [1]  # 8 is outside [0, 4]
    with pytest.raises(InputError, match="outside the program's batch range"):
        load_model(str(path), batch_sizes=(2, 8))


def test_inputs_from_the_signature_when_no_examples_were_saved(tmp_path):
    seq = torch.export.Dim("seq")
    program = torch.export.export(Embedder(), (), {"input_ids": torch.randint(0, 50, (2, 7))},
                                  dynamic_shapes={"input_ids": {0: BATCH, 1: seq}})
    program.example_inputs = None
    path = _save(tmp_path, program)
    workload = load_model(str(path), batch_sizes=(2,))
    ids = workload.input_set("bs2").tensors["input_ids"]
    assert ids.dtype == torch.int64 and ids.shape == (2, DEFAULT_DYNAMIC_SIZE) and set(ids.unique().tolist()) <= {0, 1}
    assert workload.provenance["defaulted_dims"] == {"input_ids[1]": DEFAULT_DYNAMIC_SIZE}
    assert any("--input-shape" in w for w in workload.provenance["warnings"])
    assert workload.module(input_ids=ids).shape == (2, 8)
    given = load_model(str(path), input_shapes={"input_ids": (3, 5)})
    assert given.input_set("bs3").tensors["input_ids"].shape == (3, 5) and "defaulted_dims" not in given.provenance
    with pytest.raises(InputError, match="input_ids"):
        load_model(str(path), input_shapes={"input_ids": (3, 5, 1)})
    with pytest.raises(InputError, match=r"names \['pixels'\]"):
        load_model(str(path), input_shapes={"pixels": (1, 3)})


def test_pickled_entries_in_the_archive_are_refused_unrun(tmp_path):
    sentinel = tmp_path / "ran"
    path = _save(tmp_path, _masked_program())
    # Replace the saved example inputs (a torch.save pickle torch.export.load would fall back to
    # unpickling in full) with one whose unpickling writes the sentinel.
    evil = io.BytesIO()
    torch.save(_WritesOnUnpickle(str(sentinel)), evil)
    doctored = tmp_path / "doctored.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(doctored, "w") as dst:
        for item in src.infolist():
            data = evil.getvalue() if "sample_inputs/" in item.filename else src.read(item.filename)
            dst.writestr(item, data)
    with pytest.raises(UnsafeModel, match="pickled objects"):
        load_model(str(doctored))
    assert not sentinel.exists()
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") is None  # the guard is put back


class _WritesOnUnpickle:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_files_that_are_not_programs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_model(str(tmp_path / "missing.pt2"))
    (tmp_path / "text.pt2").write_text("not a zip")
    with pytest.raises(InputError, match="not a torch.export archive"):
        load_model(str(tmp_path / "text.pt2"))


@pytest.mark.slow
def test_optimize_a_pt2(tmp_path):
    path = _save(tmp_path, _masked_program())
    result = hone.optimize(str(path), recipes=["torchscript", "onnxruntime", "pt2e-int8"], batch_sizes=(1, 4),
                           store=tmp_path / "runs.db", progress=False, measure_time_s=0.2)
    statuses = {(r.recipe.label, r.input_set): r.status.value for r in result.results}
    assert {label for label, _ in statuses} == {"eager", "torchscript-trace", "onnxruntime", "pt2e-int8"}
    for (label, _), status in statuses.items():  # int8 is judged by its error: built and run is what counts here
        assert status in (("ok", "wrong_answer") if label == "pt2e-int8" else ("ok",)), \
            [(r.recipe.label, r.reason) for r in result.results]
    assert all(r.verdict.compute_dtype == "int8" for r in result.results if r.recipe.label == "pt2e-int8")
    assert result.run.provenance["format"] == "pt2"

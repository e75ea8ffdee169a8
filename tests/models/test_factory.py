"""path/to/file.py:factory: user files, their errors, and the worker's re-import path."""

import subprocess
import sys
import textwrap

import pytest
import torch

from hone.errors import InputError
from hone.models import EvalSet, load_model
from hone.models.factory import import_user_files, module_name_for

GOOD = """
import torch
from torch import nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x, scale):
        return self.fc2(torch.relu(self.fc1(x))) * scale


def make_model():
    torch.manual_seed(0)
    return TwoLayer().train(), (torch.randn(5, 4), torch.ones(5, 1))


def with_eval():
    from hone.models import EvalSet
    model, inputs = make_model()
    samples = {"x": torch.randn(20, 4), "scale": torch.ones(20, 1)}
    return model, inputs, EvalSet(samples=samples, metric="top1", labels=torch.zeros(20, dtype=torch.long))


def boom():
    raise ValueError("boom")


def not_a_pair():
    return TwoLayer()


def not_a_module():
    return "model", torch.randn(2, 4)


def bad_inputs():
    return TwoLayer(), "text"
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "my-model.py"
    path.write_text(GOOD)
    return path


def test_loads_named_inputs(model_file):
    workload = load_model(f"{model_file}:make_model")
    assert workload.name == "my-model.py:make_model"
    assert workload.source == f"{model_file}:make_model"
    assert not workload.module.training  # eval() even though the factory returned train mode
    assert [s.label for s in workload.input_sets] == ["bs5"]
    assert workload.input_names == ["x", "scale"]  # forward()'s parameter names
    assert workload.eval is None
    name = module_name_for(model_file)
    assert name.startswith("hone_user_my_model_") and workload.user_files == {name: str(model_file.resolve())}
    assert name in sys.modules
    assert workload.module(**workload.input_sets[0].tensors).shape == (5, 3)


def test_optional_eval_set(model_file):
    workload = load_model(f"{model_file}:with_eval")
    assert isinstance(workload.eval, EvalSet) and len(workload.eval) == 20


def test_same_file_twice_reuses_the_module(model_file):
    a = load_model(f"{model_file}:make_model")
    b = load_model(f"{model_file}:make_model")
    assert type(a.module) is type(b.module)  # both still pickle by reference


def test_pickles_into_a_worker_that_imports_user_files(model_file, tmp_path):
    workload = load_model(f"{model_file}:make_model")
    saved = tmp_path / "workload.pt"
    torch.save(workload, saved)
    expected = workload.module(**workload.input_sets[0].tensors)
    torch.save(expected, tmp_path / "expected.pt")
    # what a spawned worker does: import the user's files, then unpickle
    worker = textwrap.dedent(
        f"""
        import pickle, sys, torch
        from hone.models.factory import import_user_files
        try:
            torch.load({str(saved)!r}, weights_only=False)
            sys.exit("unpickled without the user's file: the test proves nothing")
        except (AttributeError, ModuleNotFoundError, pickle.UnpicklingError):
            pass
        import_user_files({workload.user_files!r})
        w = torch.load({str(saved)!r}, weights_only=False)
        out = w.module(**w.input_sets[0].tensors)
        torch.testing.assert_close(out, torch.load({str(tmp_path / "expected.pt")!r}))
        print("ok", type(w.module).__module__)
        """
    )
    proc = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", next(iter(workload.user_files))]


def test_import_user_files_missing_file(tmp_path):
    with pytest.raises(InputError, match="no longer exists"):
        import_user_files({"hone_user_gone_00000000": str(tmp_path / "gone.py")})


@pytest.mark.parametrize(
    "function, message",
    [
        ("boom", r"factory boom in .*my-model\.py raised ValueError: boom"),
        ("nope", r"has no function 'nope'"),
        ("not_a_pair", r"factory not_a_pair .* must return \(model, example_inputs\).*not a TwoLayer"),
        ("not_a_module", r"its model is a str, not a torch.nn.Module"),
        ("bad_inputs", r"factory bad_inputs .*example inputs must be"),
    ],
)
def test_factory_errors(model_file, function, message):
    with pytest.raises(InputError, match=message) as err:
        load_model(f"{model_file}:{function}")
    assert "\n" not in str(err.value)


def test_no_such_function_lists_the_defined_ones(model_file):
    with pytest.raises(InputError) as err:
        load_model(f"{model_file}:nope")
    assert "make_model" in str(err.value)


def test_import_failure_names_the_exception(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\nraise RuntimeError('cannot build here')\n")
    with pytest.raises(InputError, match=r"importing .*broken\.py failed: RuntimeError: cannot build here"):
        load_model(f"{path}:factory")
    assert module_name_for(path) not in sys.modules  # a half-imported module is not left behind


def test_syntax_error_in_file(tmp_path):
    path = tmp_path / "syntax.py"
    path.write_text("def factory(:\n")
    with pytest.raises(InputError, match="SyntaxError"):
        load_model(f"{path}:factory")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_model(f"{tmp_path / 'absent.py'}:factory")


def test_no_function_part(model_file):
    with pytest.raises(InputError, match="no :function part"):
        load_model(str(model_file))


def test_not_a_python_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("")
    with pytest.raises(InputError, match="not a .py file"):
        load_model(f"{path}:factory")


def test_batch_sizes_do_not_apply(model_file):
    with pytest.raises(InputError, match="batch sizes do not apply"):
        load_model(f"{model_file}:make_model", batch_sizes=(1, 8))

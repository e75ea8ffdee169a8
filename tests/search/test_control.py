"""The run stops before it can mislead: a NaN reference before any worker starts, an eager
control that fails its own reference before any other candidate runs."""

from __future__ import annotations

import pytest
import torch

import hone
from hone.cli.app import main
from hone.errors import HarnessError, InputError
from hone.search.control import check_control
from hone.search.result import CandidateResult, Status
from hone.store import Store
from hone.validate.verdict import MetricCheck, OutputCheck, Verdict
from plugins_for_tests import PerturbedEagerRuntime, WrongRuntime
from results_factory import EAGER
from tiny_models import tiny_mlp


class NanModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).log()  # log of negative logits: NaN


def test_a_nan_reference_stops_the_run_before_any_worker_starts(monkeypatch):
    from hone.search.executor import SubprocessExecutor

    started = []
    monkeypatch.setattr(SubprocessExecutor, "run", lambda *a, **k: started.append(a) or pytest.fail("a worker started"))
    torch.manual_seed(0)
    with pytest.raises(InputError) as info:
        hone.optimize(NanModel().eval(), torch.randn(8, 4), store=False, progress=False)
    message = str(info.value)
    assert "output 'output' has" in message and "NaN/Inf values (of 24)" in message
    assert "nan" not in message.replace("NaN", "")  # no NaN in any tolerance or figure
    assert started == []


def test_the_cli_says_it_in_one_line_with_exit_code_2(tmp_path, capsys):
    factory = tmp_path / "nan_model.py"
    factory.write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.sqrt(x)\n"
        "def make():\n"
        "    return M(), torch.tensor([[1.0, -1.0, 4.0]])\n"
    )
    assert main(["optimize", f"{factory}:make", "--no-store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 NaN/Inf values (of 3)" in err[0]


def _rejected(verdict: Verdict) -> CandidateResult:
    return CandidateResult(EAGER, "bs8", Status.WRONG_ANSWER, verdict.reason, verdict)


def test_a_rejected_control_names_the_check_and_the_output():
    tensor = OutputCheck("logits", 1e-3, 1e-3, 0.99, 1e-5, 1.3e-6, 0, False)
    with pytest.raises(HarnessError, match="tensor check on output 'logits'") as info:
        check_control([_rejected(Verdict(False, "output logits: max abs err 0.001", "float32", (tensor,)))])
    assert info.value.exit_code == 3 and "input set bs8" in str(info.value)
    passed = OutputCheck("logits", 0.0, 0.0, 1.0, 1e-5, 1.3e-6, 0, True)
    metric = MetricCheck("cer", 0.0, 0.293, 0.01, False)
    with pytest.raises(HarnessError, match="task metric cer on the eval set"):
        check_control([_rejected(Verdict(False, "cer 0.0000 vs fp32 0.2930", "float32", (passed,), metric))])
    check_control([CandidateResult(EAGER, "bs8", Status.OK, "fine")])  # a passing control is silent


@pytest.mark.slow
def test_a_perturbed_eager_control_stops_the_run_and_nothing_is_selected(tmp_path):
    model, x = tiny_mlp()
    db = tmp_path / "runs.db"
    with pytest.raises(HarnessError, match="eager fp32 control failed.*tensor check on output 'output'"):
        hone.optimize(model, x, recipes=[PerturbedEagerRuntime.recipe(), WrongRuntime.recipe()], store=db,
                      progress=False, profile_first=False, measure_time_s=0.3)
    with Store(db) as store:
        run = store.load_run()
        assert store.run_status(run.run.run_id) == "harness_error"
        assert [r.recipe.label for r in run.results] == ["eager"]  # the control only: nothing else ran
        assert run.selection.best is None
        assert any("harness error" in w for w in run.run.warnings)

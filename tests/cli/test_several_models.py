"""`hone optimize a b c`: each model its own run, table and export subfolder, then a closing line
per model; a model that fails is reported and the others still finish (local executor here;
side by side on Ray: tests/search/test_ray_executor.py)."""

from __future__ import annotations

import pytest

from hone.cli.app import main

FACTORIES = (
    "import torch\nfrom tiny_models import TinyMLP\n\n"
    "def small():\n    torch.manual_seed(0)\n    return TinyMLP(hidden=16).eval(), torch.randn(2, 32)\n\n"
    "def wide():\n    torch.manual_seed(1)\n    return TinyMLP(hidden=128).eval(), torch.randn(4, 32)\n"
)


def test_list_recipes_takes_one_model(capsys):
    rc = main(["optimize", "digits-cnn", "minilm", "--list-recipes"])
    assert rc == 2 and "--list-recipes takes one model" in capsys.readouterr().err


def test_an_unknown_executor_is_refused_before_any_work(capsys):
    rc = main(["optimize", "digits-cnn", "--executor", "dask", "--no-store"])
    assert rc == 2 and "unknown executor 'dask'" in capsys.readouterr().err


@pytest.mark.slow
def test_several_models_each_get_their_run_table_and_export_and_a_failure_stays_theirs(tmp_path, capsys):
    factories = tmp_path / "models.py"
    factories.write_text(FACTORIES)
    small, wide, missing = f"{factories}:small", f"{factories}:wide", f"{tmp_path / 'nope.py'}:model"
    rc = main(["optimize", small, missing, wide, "--only", "eager", "--no-profile", "--threads", "1",
               "--measure-time", "0.2", "--fallback-attempts", "0", "--export", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 2, err  # the missing model's exit code; the others finished
    assert f"== {small} ==" in out and f"== {wide} ==" in out and f"== {missing} ==" not in out
    closing = out.strip().splitlines()[-3:]
    assert closing[0].startswith(f"{small}: best: eager") and "run 1" in closing[0]
    assert closing[1].startswith(f"{missing}: error: ")
    assert closing[2].startswith(f"{wide}: best: eager") and "run 2" in closing[2]
    exported = sorted(p.parent.name for p in (tmp_path / "out").glob("*/manifest.json"))
    assert len(exported) == 2 and all(name.endswith(("small", "wide")) for name in exported)

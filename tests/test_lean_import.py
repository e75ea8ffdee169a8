"""`import hone` imports no backend and touches no CUDA; every module imports without the
optional packages; the CLI's help and doctor work with only torch installed."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import hone
from hone._optional import EXTRA_OF, import_name

# The optional packages are the extras pyproject.toml lists (the one place they live), by
# import name; sentence_transformers is what the MiniLM package may pull in.
PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
EXTRAS = {e: reqs for e, reqs in PYPROJECT["project"]["optional-dependencies"].items() if e not in ("all", "test")}
OPTIONAL = sorted({import_name(r.split(";")[0].split("<")[0].split(">")[0].split("=")[0]) for reqs in EXTRAS.values()
                   for r in reqs} | {"sentence_transformers"})
BACKENDS = [*OPTIONAL, "torch"]


def test_the_install_hints_come_from_the_extras_in_pyproject():
    expected = {import_name(r.split("<")[0]): extra for extra, reqs in EXTRAS.items() for r in reqs}
    assert EXTRA_OF == expected
    assert EXTRA_OF["sklearn"] == "models" and EXTRA_OF["tvm"] == "tvm"

# A meta-path finder that makes the optional packages unimportable, as on a torch-only install.
BLOCK = f"""
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
import importlib.util
_real = importlib.util.find_spec
def _find_spec(name, package=None):
    if name.split('.')[0] in {OPTIONAL!r}:
        return None
    return _real(name, package)
importlib.util.find_spec = _find_spec
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_hone_loads_no_backend_and_no_torch():
    code = f"import sys, hone; print([m for m in {BACKENDS!r} if m in sys.modules])"
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_api_modules_do_not_initialise_cuda():
    code = (
        "import hone, hone.api, hone.search.sweep, hone.registry as r, torch\n"
        "r.RUNTIMES.names(); r.PASSES.names()\n"
        "print(torch.cuda.is_initialized())"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(hone.__path__, prefix="hone."))


def test_every_module_imports_without_optional_packages():
    modules = _all_modules()
    assert "hone.runtimes.onnxruntime" in modules and "hone.cli.doctor" in modules
    code = BLOCK + f"\nimport importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint('ok')"
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_cli_help_and_doctor_work_with_only_torch():
    code = BLOCK + (
        "\nimport sys\nfrom hone.cli.app import main\n"
        "rc = main(['doctor', '--json', '--no-peaks'])\n"
        "sys.exit(rc)"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    text = json.dumps(report)
    assert "onnxruntime is not installed" in text  # the reason names the package and the install hint
    help_out = _run(BLOCK + "\nfrom hone.cli.app import main\nimport sys\nsys.exit(main(['--help']))")
    assert help_out.returncode == 0 and "optimize" in help_out.stdout

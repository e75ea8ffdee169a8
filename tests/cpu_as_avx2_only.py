"""pytest plugin (opt-in): hone's probe reports an AVX2-only x86 CPU (no AVX-512, VNNI, AMX,
bf16), like an AMD EPYC Zen 3, whatever this machine has.

    python -m pytest -p cpu_as_avx2_only

Every recipe is then planned as it would be there (7-bit int8, gates, skips on bf16 units), while
the kernels stay this machine's: it checks what the planning and the tests' bounds do on such a
CPU, not the kernels. For the kernels too, run under an emulated CPU (qemu-user, Debian's
`qemu-user`; qemu passes the host's /proc/cpuinfo through, hence this plugin as well):

    TORCHINDUCTOR_CPP_MARCH=znver3 qemu-x86_64 -cpu EPYC-Milan-v1 .venv/bin/python -m pytest \\
        -p cpu_as_avx2_only tests/runtimes/test_ort_quantization.py

(tens of times slower; workers a test spawns run natively).
"""

from __future__ import annotations

import importlib

_DROPPED_PREFIXES = ("avx512", "amx")
_DROPPED = {"avx_vnni", "avx_vnni_int8", "avx_ne_convert", "avx_ifma"}


def pytest_configure(config) -> None:
    probe = importlib.import_module("hone.hardware.probe")  # the module, not hone.hardware.probe()
    original = probe._cpu_name_and_flags

    def avx2_only():
        name, flags = original()
        kept = frozenset(f for f in flags if not f.startswith(_DROPPED_PREFIXES) and f not in _DROPPED)
        return f"{name} (probed as AVX2-only)", kept

    probe._cpu_name_and_flags = avx2_only

"""`hone doctor`: this machine (ISA, cores, memory, GPUs), its measured peaks, and which
runtimes and passes can run here, with the reason for each one that cannot."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from hone.cli.app import app
from hone.hardware import Hardware, probe
from hone.registry import PASSES, RUNTIMES, Registry

YES, NO = "yes", "no"


def _machine_devices(hw: Hardware) -> list[str]:
    return ["cpu"] + (["cuda"] if hw.has_cuda else [])


def _availability(registry: Registry, label: str, hw: Hardware) -> tuple[list[dict[str, Any]], str | None]:
    """One entry per plugin: per device this machine has, None (available) or the reason."""
    try:
        classes = list(registry)
    except Exception as exc:  # noqa: BLE001 - a broken plugin module must not hide the machine report
        return [], f"could not list {label}: {type(exc).__name__}: {exc}"
    entries = []
    machine = _machine_devices(hw)
    for cls in classes:
        devices = {}
        for device in [d for d in cls.devices if d in machine]:
            try:
                devices[device] = cls.available(hw, device)
            except Exception as exc:  # noqa: BLE001 - a buggy check is a reason, not a crash
                devices[device] = f"availability check failed: {type(exc).__name__}: {exc}"
        if not devices:  # e.g. a CUDA-only runtime on a CPU machine
            devices = {cls.devices[0] if cls.devices else "?": f"no {'/'.join(cls.devices)} device here"}
        entries.append({"name": cls.name, "description": cls.description, "devices": devices})
    return entries, None


def _capabilities(hw: Hardware) -> dict[str, bool]:
    return {
        "avx2": hw.has_avx2,
        "avx512": hw.has_avx512,
        "vnni": hw.has_vnni,
        "bf16": hw.has_bf16,
        "amx": hw.has_amx,
        "cuda": hw.has_cuda,
    }


def _peaks_source(hw: Hardware, no_peaks: bool) -> str:
    if hw.peaks is not None:
        return "cached" if hw.peaks.from_cache else "measured now"
    return "skipped (--no-peaks)" if no_peaks else "measurement failed"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _render(report: dict[str, Any], hw: Hardware) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    machine = Table(title="Machine", show_header=False, title_justify="left")
    machine.add_row("CPU", escape(hw.cpu_name))
    machine.add_row("arch", hw.arch)
    machine.add_row(
        "cores",
        f"{hw.physical_cores} physical / {hw.logical_cores} logical / {hw.usable_cores} usable "
        f"(default threads {hw.default_threads})",
    )
    flags = "  ".join(f"{name} {YES if on else NO}" for name, on in report["capabilities"].items() if name != "cuda")
    machine.add_row("ISA", flags)
    machine.add_row("memory", _gib(hw.memory_bytes))
    if hw.gpus:
        for i, gpu in enumerate(hw.gpus):
            cap = f"{gpu.capability[0]}.{gpu.capability[1]}"
            machine.add_row(f"GPU {i}", f"{escape(gpu.name)}, compute capability {cap}, {_gib(gpu.memory_bytes)}")
    else:
        machine.add_row("GPU", "no CUDA device")
    machine.add_row("torch", hw.torch_version)
    machine.add_row("fingerprint", hw.fingerprint)
    console.print(machine)

    peaks = Table(title=f"Measured peaks ({report['peaks_source']})", show_header=False, title_justify="left")
    p = hw.peaks
    if p is not None:
        peaks.add_row("fp32 GEMM", f"{p.fp32_gflops:,.1f} GFLOP/s")
        peaks.add_row("bf16 GEMM", f"{p.bf16_gflops:,.1f} GFLOP/s" if p.bf16_gflops else "n/a (no bf16 instructions)")
        int8 = f"{p.int8_gops:,.1f} GOP/s ({escape(p.int8_kernel)})" if p.int8_kernel else f"{p.int8_gops:,.1f} GOP/s"
        peaks.add_row("int8 GEMM", int8 if p.int8_gops else "n/a (no int8 GEMM kernel in this torch)")
        if p.int8_gops and hw.int8_dot_saturates:
            peaks.add_row("", "no VNNI: int8 recipes use 7-bit weights or activations (16-bit saturation)")
        peaks.add_row("memory bandwidth", f"{p.bandwidth_gbs:,.1f} GB/s")
        peaks.add_row("threads", str(p.threads))
        peaks.add_row("measured at", p.measured_at or "?")
    else:
        peaks.add_row("peaks", report["peaks_source"])
    console.print(peaks)

    for kind in ("runtimes", "passes"):
        table = Table(title=kind.capitalize(), title_justify="left")
        for column in ("name", "device", "status", "description"):
            table.add_column(column)
        for entry in report[kind]:
            for device, reason in entry["devices"].items():
                # escape: reasons hold install hints like `hone[onnx]`, which rich reads as markup
                status = "[green]available[/green]" if reason is None else f"[yellow]{escape(reason)}[/yellow]"
                table.add_row(escape(entry["name"]), device, status, escape(entry["description"]))
        if report["errors"].get(kind):
            console.print(f"[red]{escape(report['errors'][kind])}[/red]")
        elif not report[kind]:
            console.print(f"{kind}: none registered")
        else:
            console.print(table)


@app.command()
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print hardware and plugin availability as JSON."),
    refresh: bool = typer.Option(False, "--refresh", help="Re-measure the peaks even when cached."),
    no_peaks: bool = typer.Option(False, "--no-peaks", help="Do not measure peaks (cached ones are still shown)."),
) -> None:
    """This machine: hardware, measured peaks, which runtimes and passes work here."""
    hw = probe(measure_peaks=not no_peaks, refresh=refresh)
    runtimes, runtimes_error = _availability(RUNTIMES, "runtimes", hw)
    passes, passes_error = _availability(PASSES, "passes", hw)
    report = {
        "hardware": hw.to_dict(),
        "capabilities": _capabilities(hw),
        "default_threads": hw.default_threads,
        "peaks_source": _peaks_source(hw, no_peaks),
        "runtimes": runtimes,
        "passes": passes,
        "errors": {k: v for k, v in (("runtimes", runtimes_error), ("passes", passes_error)) if v},
    }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _render(report, hw)

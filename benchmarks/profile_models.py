"""Profile the reference models and print a BENCHMARKS.md section; roofline plots go to docs/img/.

    python benchmarks/profile_models.py > section.md

Models: MiniLM (bs8), digits-cnn (bs64), hf:resnet-50 (bs1), and GPT-2 one-token decode at
batch 1 and 64 (the classification must move from memory/overhead towards compute).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import torch

import hone
from hone.profiler.plot import plot_roofline

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def gpt2_decode(batch: int):
    """GPT-2 (124M, random weights) one new token per sequence: input_ids of shape (B, 1)."""
    from transformers import AutoModel, GPT2Config

    torch.manual_seed(0)
    config = GPT2Config(use_cache=False)
    model = AutoModel.from_config(config).eval()
    return model, {"input_ids": torch.randint(0, config.vocab_size, (batch, 1))}


def section(title: str, profile, plot_name: str) -> str:
    shares = ", ".join(f"{k} {v:.0%}" for k, v in profile.shares.items())
    paths = plot_roofline(profile, IMG / plot_name)
    lines = [
        f"#### {title}",
        "",
        f"verdict **{profile.verdict}-bound** ({shares} of wall time); forward {profile.wall_s * 1e3:.2f} ms, "
        f"op time {profile.op_time_s * 1e3:.2f} ms, {profile.threads} threads",
        "",
        "| op type | calls | share | GFLOP | MB | FLOP/B | GFLOP/s | GB/s | % peak | class | unit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for op in profile.ops[:6]:
        lines.append(
            f"| {op.name} | {op.calls} | {op.time_s / profile.wall_s:.1%} | {op.flops / 1e9:.2f} | {op.bytes / 1e6:.1f} | "
            f"{op.intensity:.1f} | {op.flops_per_s / 1e9:.1f} | {op.bytes_per_s / 1e9:.1f} | "
            f"{op.pct_of_peak:.0%} | {op.bound} | {op.unit or '-'} |"
            if op.intensity is not None and op.pct_of_peak is not None
            else f"| {op.name} | {op.calls} | {op.time_s / profile.wall_s:.1%} | - | {op.bytes / 1e6:.1f} | - | - | - | - | {op.bound} | {op.unit or '-'} |"
        )
    if profile.scaling:
        points = ", ".join(f"bs{p.batch_size} {p.latency_s * 1e3:.2f} ms" for p in profile.scaling)
        lines += ["", f"latency by batch: {points}"]
    lines += ["", "advice: " + "; ".join(f"{a.rank}. {a.recipe}" for a in profile.advice[:4])]
    lines += ["", f"![roofline]({paths[0].relative_to(IMG.parent)})", ""]
    return "\n".join(lines)


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    hw = hone.probe_hardware()
    peaks = hw.peaks
    out = [
        f"### `hone profile` on {hw.cpu_name} ({datetime.date.today().isoformat()})",
        "",
        f"- command: `python benchmarks/profile_models.py`; torch {torch.__version__}",
        f"- measured peaks (`hone doctor`): fp32 {peaks.fp32_gflops:.0f} GFLOP/s, bf16 {peaks.bf16_gflops:.0f} GFLOP/s, "
        f"int8 {peaks.int8_gops:.0f} GOP/s, bandwidth {peaks.bandwidth_gbs:.1f} GB/s ({peaks.threads} threads)",
        "",
    ]
    out.append(section("MiniLM, batch 8 x 128 tokens", hone.profile("minilm", input_set="bs8"), "roofline-minilm"))
    out.append(section("digits-cnn, batch 64", hone.profile("digits-cnn", input_set="bs64"), "roofline-digits-cnn"))
    out.append(section("hf:resnet-50, batch 1", hone.profile("hf:resnet-50", batch_sizes=(1,), scaling_max_batch=8), "roofline-resnet50"))
    for batch in (1, 64):
        model, inputs = gpt2_decode(batch)
        found = hone.profile(model, inputs, scaling_max_batch=1)
        out.append(section(f"GPT-2 one-token decode, batch {batch}", found, f"roofline-gpt2-decode-bs{batch}"))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())

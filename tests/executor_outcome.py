"""What a sweep's results must not change with where its jobs ran (test_executor, test_ray_executor)."""

from __future__ import annotations

import torch

from tiny_models import TinyMLP


def tiny_workload():
    """TinyMLP at two input sets: one build can serve both, or be rebuilt, depending on the runtime."""
    from hone.models.workload import InputSet, Workload

    torch.manual_seed(0)
    return Workload("tiny", TinyMLP().eval(), [InputSet("bs2", {"x": torch.randn(2, 32)}),
                                               InputSet("bs8", {"x": torch.randn(8, 32)})])


def outcome(results):
    """Per (recipe, input set): status, the build that served it, the checks, whether it was timed."""
    return {
        (r.recipe.label, r.input_set): (
            r.status, r.build and (r.build["index"], r.build["built_for"], r.build["reused"]),
            r.verdict and [(c.name, c.max_abs_err, c.passed) for c in r.verdict.outputs],
            r.measurement is not None,
        )
        for r in results
    }

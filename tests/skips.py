"""The one wording of each skip reason (tests import these; conftest.py re-exports them)."""

REQUIRES_CUDA = "requires CUDA"
REQUIRES_NO_CUDA = "requires a machine without CUDA"
REQUIRES_BF16_CPU = "requires a CPU with bf16 units"
REQUIRES_TORCHAO = "requires torchao"
REQUIRES_TORCH_TENSORRT = "requires torch_tensorrt"
REQUIRES_TENSORRT = "requires tensorrt"
REQUIRES_MODELOPT = "requires nvidia-modelopt"

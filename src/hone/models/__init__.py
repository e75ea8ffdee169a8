"""Models: parse a spec, load it, and describe it as a Workload (module + named inputs + eval set).

Importing this package imports torch only; each loader imports transformers or scikit-learn
when it runs.
"""

from hone.models.factory import FactoryResult
from hone.models.spec import BUILTINS, load_model
from hone.models.workload import EvalSet, FlatIO, InputSet, TensorSpec, TrainSet, Workload, name_inputs, normalize_outputs

__all__ = [
    "BUILTINS",
    "EvalSet",
    "FactoryResult",
    "FlatIO",
    "InputSet",
    "TensorSpec",
    "TrainSet",
    "Workload",
    "load_model",
    "name_inputs",
    "normalize_outputs",
]

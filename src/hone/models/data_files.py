"""Calibration and eval data from files: `--calibration calib.npz`, `--eval eval.safetensors`.

A data file holds one array per model input, named like the input (the workload's input
names), samples stacked on dim 0; an eval file may add the class labels under `labels`
(unless a model input is itself named `labels`). `.npz` is read with allow_pickle=False and
`.safetensors` with the safetensors library: a data file never runs code. Every check runs
here, while the model loads, so a bad file is one InputError before the reference, a worker
or the store. Where the data came from (name, sha256, sample count) goes into the workload's
provenance, which the run records.

Without a metric an eval file is judged by `top1` when it has labels (class indices against
the first output's argmax) and otherwise by `embedding_cosine` (the first output against fp32's,
for any output shape); a classifier without labels is better judged with `top1_agreement`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from hone.errors import InputError
from hone.models.workload import EvalSet, Inputs, Workload, check_eval_set, check_samples

LABELS_KEY = "labels"
SUFFIXES = (".npz", ".safetensors")
METRIC_WITH_LABELS = "top1"
METRIC_WITHOUT_LABELS = "embedding_cosine"
LAYOUT_HINT = (f"save one array per model input, named like the input, samples stacked on dim 0 "
               f"(eval labels under {LABELS_KEY!r}), e.g. numpy.savez(path, x=samples, {LABELS_KEY}=labels)")
HASH_CHUNK_BYTES = 1 << 20
ZIP_MAGIC = b"PK"  # an .npz is a zip archive of .npy files
NPY_MAGIC = b"\x93NUMPY"


@dataclasses.dataclass(frozen=True)
class DataFile:
    """The arrays of one data file, checked against the model's inputs."""

    path: Path
    sha256: str
    samples: Inputs
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def provenance(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "samples": len(self)}


def is_data_path(value: Any) -> bool:
    """A path given where data (tensors or an EvalSet) could go."""
    return isinstance(value, (str, os.PathLike))


def attach_calibration_file(workload: Workload, path: str | os.PathLike) -> None:
    """Calibrate `workload` on the file's samples (a `labels` array there is ignored, so a
    training split saved with its labels serves as is)."""
    data = read_data_file(path, workload, "calibration file")
    workload.calibration = data.samples
    workload.calibration_description = f"{len(data)} samples from {data.path.name}"
    workload.provenance["calibration_file"] = data.provenance
    _refuse_eval_as_calibration(workload)


def attach_eval_file(workload: Workload, path: str | os.PathLike, metric: Any = None) -> None:
    """Judge `workload` on the file's samples with `metric` (a built-in name or a MetricFn;
    None: top1 with labels, embedding_cosine without)."""
    if metric is not None:
        _check_metric(metric)
    data = read_data_file(path, workload, "eval file")
    chosen = metric if metric is not None else METRIC_WITH_LABELS if data.labels is not None else METRIC_WITHOUT_LABELS
    eval_set = EvalSet(
        samples=data.samples,
        metric=chosen,
        labels=data.labels,
        description=f"{_metric_name(chosen)} on {len(data)} samples from {data.path.name}"
                    + (" and their labels" if data.labels is not None else ""),
    )
    check_eval_set(f"eval file {data.path.name}", eval_set, workload.input_sets[0].tensors)
    workload.eval = eval_set
    workload.provenance["eval_file"] = data.provenance
    _refuse_eval_as_calibration(workload)


def attach_metric(workload: Workload, metric: Any) -> None:
    """Judge the workload's own eval set (a built-in's, a factory's, an EvalSet given) by
    `metric` instead of the one it came with."""
    _check_metric(metric)
    if workload.eval is None:
        raise InputError(f"metric {_metric_name(metric)!r} given, but {workload.name} has no eval set to judge it on",
                         hint="give eval data too (--eval FILE)")
    replaced = workload.eval.metric_name
    workload.eval = dataclasses.replace(
        workload.eval, metric=metric,
        description=f"{_metric_name(metric)} (given instead of {replaced}) on the eval set's {len(workload.eval)} samples",
    )


def read_data_file(path: str | os.PathLike, workload: Workload, what: str) -> DataFile:
    """The file's arrays as tensors, with each name, shape, dtype and value checked against the
    workload's inputs; `labels` split off unless an input has that name."""
    path = Path(path).expanduser()
    where = f"{what} {path.name}"
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{where}: not an .npz or .safetensors file", hint=LAYOUT_HINT)
    if not path.is_file():
        raise InputError(f"{where}: no such file ({path})")
    if path.stat().st_size == 0:
        raise InputError(f"{where}: the file is empty", hint=LAYOUT_HINT)
    arrays = _read_safetensors(path, where) if path.suffix.lower() == ".safetensors" else _read_npz(path, where)
    if not arrays:
        raise InputError(f"{where}: the file holds no arrays", hint=LAYOUT_HINT)
    names = workload.input_names
    labels = arrays.pop(LABELS_KEY) if LABELS_KEY in arrays and LABELS_KEY not in names else None
    missing, extra = [n for n in names if n not in arrays], sorted(set(arrays) - set(names))
    if missing or extra:
        parts = ([f"no array {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"unexpected array {', '.join(map(repr, extra))}"] if extra else [])
        raise InputError(f"{where}: {'; '.join(parts)}; the model's inputs are {', '.join(names)}", hint=LAYOUT_HINT)
    samples = {name: arrays[name] for name in names}  # in the inputs' order
    check_samples(where, samples, workload.input_sets[0].tensors)
    if labels is not None and labels.is_floating_point() and not bool(torch.isfinite(labels).all()):
        raise InputError(f"{where}: {LABELS_KEY!r} holds NaN/Inf values")
    return DataFile(path, _sha256(path), samples, labels)


def _read_npz(path: Path, where: str) -> dict[str, torch.Tensor]:
    import zipfile

    import numpy as np

    with path.open("rb") as f:
        magic = f.read(len(NPY_MAGIC))
    # By its header, before np.load: on anything else numpy's error speaks of unpickling.
    if magic.startswith(NPY_MAGIC):
        raise InputError(f"{where}: a single .npy array, not an .npz archive of named arrays", hint=LAYOUT_HINT)
    if not magic.startswith(ZIP_MAGIC):
        raise InputError(f"{where}: not an .npz archive (no zip header)", hint=LAYOUT_HINT)
    try:
        archive = np.load(path, allow_pickle=False)  # never pickle: a data file must not run code
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: not a readable .npz archive ({_first_line(exc)})", hint=LAYOUT_HINT) from exc
    arrays: dict[str, torch.Tensor] = {}
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
                if not isinstance(array, np.ndarray):  # a zip member that is no .npy: its raw bytes
                    raise ValueError("not a .npy array")
                if not array.dtype.isnative:  # torch takes native byte order only: convert, not refuse
                    array = array.astype(array.dtype.newbyteorder("="))
                arrays[name] = torch.from_numpy(np.ascontiguousarray(array))
            except (ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
                raise InputError(f"{where}: array {name!r} cannot be read as a tensor ({_first_line(exc)})",
                                 hint="numeric or bool arrays only (no object or string arrays)") from exc
    return arrays


def _read_safetensors(path: Path, where: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from hone.models._safetensors_safety import check_safetensors

    try:
        check_safetensors(path)
        return dict(load_file(str(path)))
    except InputError as exc:
        raise InputError(f"{where}: not a readable .safetensors file ({exc.message.removeprefix(f'{path}: ')})",
                         hint=LAYOUT_HINT) from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{where}: not a readable .safetensors file ({_first_line(exc)})", hint=LAYOUT_HINT) from exc


def _refuse_eval_as_calibration(workload: Workload) -> None:
    """Calibrating on the data that judges accuracy would hide exactly the error the gate is
    there to catch (see Workload.calibration)."""
    calibration, evaluation = workload.provenance.get("calibration_file"), workload.provenance.get("eval_file")
    if calibration and evaluation and calibration["sha256"] == evaluation["sha256"]:
        raise InputError(f"calibration file {Path(calibration['path']).name} and eval file "
                         f"{Path(evaluation['path']).name} hold the same data",
                         hint="calibrate on other samples than those that judge accuracy (e.g. a training split)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_metric(metric: Any) -> None:
    from hone.validate.metrics import resolve

    resolve(metric)  # an unknown name is an InputError listing the built-in ones


def _metric_name(metric: Any) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

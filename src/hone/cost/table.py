"""The price table: cloud instances and their on-demand price per hour, dated, with sources.

The shipped table (`prices.json` beside this module) is a starting point, not a price feed: each
row says where its figure was published and as of when. A user's own table (`--price-table
FILE`) has the same schema; every problem in it is one InputError naming the file and the row.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

from hone.errors import InputError

SCHEMA = "hone.prices/1"
DEFAULT_TABLE = Path(__file__).with_name("prices.json")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# (field, type, required): what a row must hold.
_FIELDS = (
    ("name", str, True), ("usd_per_hour", float, True), ("vcpus", int, True), ("cpu_vendor", str, True),
    ("as_of", str, True), ("source", str, True), ("provider", str, False), ("cores", int, False),
    ("memory_gib", float, False), ("cpu", str, False), ("arch", str, False), ("gpu", str, False),
    ("gpu_count", int, False), ("region", str, False), ("note", str, False),
)  # fmt: skip
VENDORS = ("amd", "intel", "arm")


@dataclasses.dataclass(frozen=True)
class Instance:
    name: str
    usd_per_hour: float  # the whole instance
    vcpus: int
    cpu_vendor: str  # amd | intel | arm
    as_of: str  # YYYY-MM-DD: when the price was read at its source
    source: str
    provider: str = ""
    cores: int = 0  # physical cores; 0: not given
    memory_gib: float = 0.0
    cpu: str = ""
    arch: str = ""  # x86_64 | aarch64 ("" : from the vendor)
    gpu: str | None = None
    gpu_count: int = 0
    region: str = ""
    note: str = ""

    @property
    def isa(self) -> str:
        """x86_64 or aarch64: what a machine must run to be priced as this instance."""
        return self.arch or ("aarch64" if self.cpu_vendor == "arm" else "x86_64")

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.usd_per_hour / self.gpu_count if self.gpu_count else self.usd_per_hour


@dataclasses.dataclass(frozen=True)
class PriceTable:
    path: str  # where it was read from, for every message about it
    instances: tuple[Instance, ...]
    note: str = ""

    def get(self, name: str) -> Instance:
        for row in self.instances:
            if row.name == name:
                return row
        raise InputError(f"no instance {name!r} in the price table {self.path}",
                         hint=f"it has {', '.join(r.name for r in self.instances)}")


def read_json(where: Path, what: str) -> Any:
    """A JSON table file, or one InputError naming it (`what`: "price table", "targets table")."""
    try:
        return json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {where} cannot be read: {exc}") from None
    except ValueError as exc:
        raise InputError(f"{what} {where} is not valid JSON: {exc}") from None


def load_table(path: str | Path | None = None) -> PriceTable:
    """The table at `path` (default: the shipped one), validated."""
    where = Path(path) if path is not None else DEFAULT_TABLE
    return parse_table(read_json(where, "price table"), str(where))


def parse_table(data: Any, path: str) -> PriceTable:
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise InputError(f"price table {path}: expected an object with an 'instances' list",
                         hint=f"see {DEFAULT_TABLE} for the schema ({SCHEMA})")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise InputError(f"price table {path}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    rows = tuple(_row(raw, i, path) for i, raw in enumerate(data["instances"], start=1))
    if not rows:
        raise InputError(f"price table {path} has no instances")
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        if row.name in seen:
            raise InputError(f"price table {path}: row {i} ({row.name}): the name appears twice")
        seen.add(row.name)
    return PriceTable(path, rows, str(data.get("note", "")))


def _row(raw: Any, index: int, path: str) -> Instance:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"price table {path}: row {index}" + (f" ({name})" if isinstance(name, str) else "")
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected an object, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for field, kind, required in _FIELDS:
        value = raw.get(field)
        if value is None:
            if required:
                raise InputError(f"{where}: '{field}' is missing")
            continue
        values[field] = _typed(value, kind, f"{where}: '{field}'")
    if not math.isfinite(values["usd_per_hour"]) or values["usd_per_hour"] < 0:
        raise InputError(f"{where}: 'usd_per_hour' must be a finite number >= 0, got {raw['usd_per_hour']!r}")
    for field in ("vcpus", "cores", "gpu_count"):
        if field in values and values[field] < (1 if field == "vcpus" else 0):
            raise InputError(f"{where}: '{field}' must be {'>= 1' if field == 'vcpus' else '>= 0'}, got {values[field]}")
    if values["cpu_vendor"] not in VENDORS:
        raise InputError(f"{where}: 'cpu_vendor' must be one of {', '.join(VENDORS)}, got {values['cpu_vendor']!r}")
    if not _DATE.match(values["as_of"]):
        raise InputError(f"{where}: 'as_of' must be a date YYYY-MM-DD, got {values['as_of']!r}")
    if values.get("gpu") and not values.get("gpu_count"):
        raise InputError(f"{where}: a row with a 'gpu' needs 'gpu_count' >= 1")
    return Instance(**values)


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise InputError(f"{where} must be {'a number' if kind is float else 'an integer' if kind is int else 'text'}, "
                     f"got {value!r}")


def machine_vendor(hardware: dict[str, Any]) -> str:
    """amd | intel | arm | "" from a probed machine (Hardware.to_dict())."""
    arch = str(hardware.get("arch", "")).lower()
    if arch in ("aarch64", "arm64") or arch.startswith("arm"):
        return "arm"
    name = str(hardware.get("cpu_name", "")).lower()
    if "amd" in name or "epyc" in name or "ryzen" in name:
        return "amd"
    if "intel" in name or "xeon" in name:
        return "intel"
    return ""


def _generation_differs(row: Instance, flags: set[str]) -> bool:
    """A tie-break between sizes alike: a machine with AMX is priced as an AMX row (Sapphire
    Rapids), one with SVE2 as Graviton4, and the reverse."""
    cpu = row.cpu.lower()
    if row.cpu_vendor == "intel":
        return ("amx" in cpu) != ("amx_tile" in flags)
    if row.cpu_vendor == "arm":
        return ("neoverse v2" in cpu) != ("sve2" in flags)
    return False


def closest(table: PriceTable, hardware: dict[str, Any]) -> tuple[Instance, str] | None:
    """The CPU instance most like this machine and why: same ISA, then the same vendor, then the
    nearest vCPU count, then the nearest physical core count, then the same generation's
    features (AMX, SVE2), then the cheapest. None when the table holds no CPU instance of this ISA."""
    arch = str(hardware.get("arch", "")).lower()
    isa = "aarch64" if arch in ("aarch64", "arm64") or arch.startswith("arm") else "x86_64"
    vendor = machine_vendor(hardware)
    vcpus = int(hardware.get("usable_cores") or hardware.get("logical_cores") or 1)
    cores = int(hardware.get("usable_physical_cores") or hardware.get("physical_cores") or vcpus)
    rows = [r for r in table.instances if not r.gpu_count and r.isa == isa]
    if not rows:
        return None
    flags = {str(f) for f in hardware.get("flags") or ()}
    best = min(rows, key=lambda r: (r.cpu_vendor != vendor, abs(r.vcpus - vcpus), abs((r.cores or r.vcpus) - cores),
                                    _generation_differs(r, flags), r.usd_per_hour, r.name))
    who = {"amd": "AMD", "intel": "Intel", "arm": "Arm"}.get(vendor, "unknown vendor")
    kind = "Arm" if isa == "aarch64" else "x86"
    why = f"closest match: {who} {kind}, {vcpus} vCPU{'s' if vcpus != 1 else ''}"
    if best.cpu_vendor != vendor:
        why += f"; no {who} row, so {best.cpu_vendor}"
    if best.vcpus != vcpus:
        why += f"; the nearest size has {best.vcpus} vCPUs"
    return best, why

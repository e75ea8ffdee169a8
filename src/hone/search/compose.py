"""The composer: recipes are built from what each step declares, never written by hand.

Every pass and runtime declares the artifact formats it consumes (and a pass the one it
produces), its stage, the compute dtypes it takes, the traits it keeps, and its variants: the
configs worth trying here, each with a tag, a cost and the findings it addresses
(plugin.Variant). From these the composer

- checks a chain (`mismatch`): each step takes what the one before gives, passes of one format
  come in stage order (one per stage), every trait a step needs was given, and no trait a
  step gave is dropped by a later one (channels_last is lost in an ONNX export);
- derives a chain's label, cost, compute dtype and origin from its steps (`recipe_of`);
- fills in converters between formats (`bridge`): "ort-int8-static" is onnx_export ->
  ort_quantize_static -> onnxruntime without anyone writing it down;
- parses a user's stack ("channels-last+inductor") into a checked recipe (`parse`);
- enumerates the default plan (`default_stacks`): every runtime variant alone, every pass
  variant on the default runtime for what it produces, and every pass variant stacked onto
  each runtime variant that takes its output (bounded by the variants' `alone`/`stack` flags
  and by the checks above). Longer stacks, and variants marked neither, are composed on request.

Chains start from the workload's source format (`Workload.source_format`): a torch module's
"torch", or a model file's own ("onnx", "torchscript"), from which only the steps that take it
(and what converters reach from it) compose. The baseline is that format's default runtime in
its variant declared `baseline` (else its first).

A new pass or runtime is one file with its declarations: it then composes with every step that
accepts its format, and no plugin names another's config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from hone.errors import InputError
from hone.plugin import STAGES, Claim, Plugin, Variant
from hone.registry import PASSES, RUNTIMES
from hone.search.recipe import Recipe, Step

if TYPE_CHECKING:
    from hone.hardware import Hardware
    from hone.models.workload import Workload

SOURCE_FORMAT = "torch"  # what chains start from by default: the user's module (FlatIO)
CONVERT = "convert"


@dataclasses.dataclass(frozen=True)
class Link:
    """One step of a chain: a plugin class with one of its variants."""

    plugin: type[Plugin]
    variant: Variant
    first: bool = False  # the plugin's first (default) variant for the format it is given

    @property
    def is_runtime(self) -> bool:
        return _is_runtime(self.plugin)

    @property
    def tag(self) -> str:
        return self.variant.tag

    @property
    def step(self) -> Step:
        return Step(self.plugin.name, self.variant.config)

    def describe(self) -> str:
        return self.variant.tag or self.plugin.name


@dataclasses.dataclass(frozen=True)
class Stack:
    """A composed, checked chain and the recipe derived from it."""

    links: tuple[Link, ...]
    recipe: Recipe

    def claims(self) -> Iterator[tuple[str, Claim, Link]]:
        """(finding, claim, the step making it) for every claim of every step."""
        for link in self.links:
            for finding, claim in link.variant.addresses.items():
                yield finding, claim, link

    @property
    def pays_for(self) -> set[str]:
        """The findings under which every step of it can pay (the intersection)."""
        found = {"overhead", "memory", "compute"}
        for link in self.links:
            found &= set(link.variant.pays_for)
        return found


def _is_runtime(plugin: type[Plugin]) -> bool:
    from hone.runtimes.base import Runtime

    return issubclass(plugin, Runtime)


class Composer:
    """The declarations of every registered plugin for one workload, machine and device."""

    def __init__(self, workload: "Workload | None", hw: "Hardware | None", device: str):
        self.workload, self.hw, self.device = workload, hw, device
        # What every chain starts from: a model file that is not a Python module (an ONNX
        # graph) has only the steps that take its format, and nothing converts it to torch.
        self.source = workload.source_format if workload is not None else SOURCE_FORMAT
        self._variants: dict[tuple[str, str, str], list[Variant]] = {}

    # -- declarations -------------------------------------------------------------------------

    def variants(self, plugin: type[Plugin], fmt: str) -> list[Variant]:
        key = ("runtime" if _is_runtime(plugin) else "pass", plugin.name, fmt)
        if key not in self._variants:
            self._variants[key] = list(plugin.variants(self.workload, self.hw, self.device, fmt))
        return self._variants[key]

    def links(self, plugin: type[Plugin], fmt: str) -> list[Link]:
        return [Link(plugin, v, i == 0) for i, v in enumerate(self.variants(plugin, fmt))]

    @staticmethod
    def produces(link: Link, fmt: str) -> str:
        return fmt if link.is_runtime else link.plugin.produces  # type: ignore[attr-defined]

    def bridge(self, source: str, target: str) -> list[Link] | None:
        """The shortest run of converters (their default variants) from `source` to `target`
        format; [] when they are the same; None when no converter leads there."""
        if source == target:
            return []
        frontier: list[tuple[str, list[Link]]] = [(source, [])]
        seen = {source}
        while frontier:
            fmt, path = frontier.pop(0)
            for cls in PASSES:
                if cls.stage != CONVERT or fmt not in cls.consumes or cls.produces in seen:
                    continue
                found = self.links(cls, fmt)
                if not found:
                    continue
                step = path + [found[0]]
                if cls.produces == target:
                    return step
                seen.add(cls.produces)
                frontier.append((cls.produces, step))
        return None

    def default_runtime(self, fmt: str) -> Link | None:
        """The runtime declared default for `fmt`, with its first variant."""
        for cls in RUNTIMES:
            if fmt in cls.default_for:
                found = self.links(cls, fmt)
                if found:
                    return found[0]
        return None

    # -- chains -------------------------------------------------------------------------------

    def complete(self, passes: list[Link], runtime: Link | None = None) -> list[Link] | None:
        """`passes` with converters filled in where formats differ, then `runtime` (default:
        the default runtime for the last format); None when no converter bridges a gap."""
        chain: list[Link] = []
        fmt = self.source
        for link in passes:
            if fmt not in link.plugin.consumes:
                gap = self._bridge_to(fmt, link.plugin.consumes)
                if gap is None:
                    return None
                chain += gap
                fmt = self.produces(gap[-1], fmt)
            chain.append(link)
            fmt = self.produces(link, fmt)
        if runtime is None:
            runtime = self.default_runtime(fmt)
            if runtime is None:
                return None
        elif fmt not in runtime.plugin.consumes:
            gap = self._bridge_to(fmt, runtime.plugin.consumes)
            if gap is None:
                return None
            chain += gap
        return chain + [runtime]

    def _bridge_to(self, fmt: str, targets: Iterable[str]) -> list[Link] | None:
        for target in targets:
            gap = self.bridge(fmt, target)
            if gap is not None:
                return gap
        return None

    def format_before(self, chain: list[Link]) -> str:
        """The format the last link of `chain` is handed."""
        fmt = self.source
        for link in chain[:-1]:
            fmt = self.produces(link, fmt)
        return fmt

    def stack(self, chain: list[Link]) -> Stack:
        """A checked chain as a Stack; InputError naming the mismatch when it does not compose."""
        reason = mismatch(chain, self.source)
        if reason:
            label = "+".join(link.describe() for link in chain if link.tag or not link.is_runtime)
            raise InputError(f"{label} does not compose: {reason}")
        return self._stack_of(chain)

    def entry(self, plugin: type[Plugin]) -> tuple[str, list[Link]] | None:
        """The first format `plugin` consumes that converters reach from the source, and those
        converters: where it runs when nothing else is named in front of it."""
        for fmt in plugin.consumes:
            prefix = self.bridge(self.source, fmt)
            if prefix is not None:
                return fmt, prefix
        return None

    def anchored(self, plugin: type[Plugin]) -> list[Stack]:
        """A runtime's variants alone (from the source format, bridged), or a pass's variants
        each on the default runtime for what it produces."""
        entry = self.entry(plugin)
        if entry is None or (not _is_runtime(plugin) and plugin.stage == CONVERT):
            return []  # a converter alone is its format's runtime alone
        fmt, prefix = entry
        if _is_runtime(plugin):
            return [s for link in self.links(plugin, fmt) if link.variant.alone for s in self._checked(prefix + [link])]
        chains = (self.complete(prefix + [link]) for link in self.links(plugin, fmt) if link.variant.alone)
        return [s for chain in chains if chain is not None for s in self._checked(chain)]

    def stacked(self, plugin: type[Plugin]) -> list[Stack]:
        """Each variant of a pass on every runtime variant (other than its default runtime's
        first) that takes its output and is marked for stacking."""
        entry = self.entry(plugin)
        if entry is None or _is_runtime(plugin) or plugin.stage == CONVERT:
            return []
        fmt, prefix = entry
        out = plugin.produces  # type: ignore[attr-defined]
        home = self.default_runtime(out)
        runtimes = [r for cls in RUNTIMES if out in cls.consumes for r in self.links(cls, out)
                    if r.variant.stack and not (home and r.step == home.step)]
        found: list[Stack] = []
        for link in (x for x in self.links(plugin, fmt) if x.variant.stack):
            for runtime in runtimes:
                chain = self.complete(prefix + [link], runtime)
                if chain is not None:
                    found += self._checked(chain)
        return found

    def _checked(self, chain: list[Link]) -> list[Stack]:
        """[the chain's Stack], or [] when it does not compose (enumeration skips those)."""
        return [] if mismatch(chain, self.source) else [self._stack_of(chain)]

    def _stack_of(self, chain: list[Link]) -> Stack:
        baseline = self.baseline()
        is_baseline = len(chain) == 1 and baseline is not None and chain[0].step == baseline.step
        return Stack(tuple(chain), recipe_of(chain, self.format_before(chain), baseline=is_baseline))

    def baseline(self) -> Link | None:
        """The source format's default runtime in its variant marked `baseline`, else its first:
        the model as its user runs it today, which every speedup is measured against (eager for
        a torch module, ONNX Runtime without graph optimizations for an ONNX file)."""
        runtime = self.default_runtime(self.source)
        if runtime is None:
            return None
        return next((link for link in self.links(runtime.plugin, self.source) if link.variant.baseline), runtime)

    def default_stacks(self) -> list[Stack]:
        """The default plan's chains: the baseline first, then every runtime alone, every pass
        on its default runtime, then the two-step stacks; one per recipe key."""
        baseline = self.baseline()
        stacks: list[Stack] = self._checked([baseline]) if baseline is not None else []
        for cls in RUNTIMES:
            stacks += self.anchored(cls)
        for cls in PASSES:
            stacks += self.anchored(cls)
        for cls in PASSES:
            stacks += self.stacked(cls)
        unique: dict[str, Stack] = {}
        for s in stacks:
            unique.setdefault(s.recipe.key, s)
        ordered = sorted(unique.values(), key=lambda s: not s.recipe.baseline)  # stable: baseline first
        return ordered

    # -- a user's stack -----------------------------------------------------------------------

    def parse(self, text: str) -> Stack:
        """"channels-last+inductor", "pt2e-int8+aoti", "ort-int8-static": each part is a
        variant's tag (or a plugin's name, for its default variant); converters are filled in
        and a missing runtime is the default one for the last format. InputError with one line
        naming the step and the mismatch when it cannot compose."""
        parts = [p.strip() for p in text.split("+")]
        if not text.strip() or any(not p for p in parts):
            raise InputError(f"empty step in recipe {text!r}", hint="steps are joined by '+', e.g. channels-last+inductor")
        chain: list[Link] = []
        fmt = self.source
        for i, part in enumerate(parts):
            link, gap = self._resolve(part, fmt, text)
            chain += gap + [link]
            fmt = self.produces(gap[-1], fmt) if gap else fmt
            fmt = self.produces(link, fmt)
            if link.is_runtime and i != len(parts) - 1:
                raise InputError(f"in {text!r}, {part} is a runtime: it must come last")
        if not chain[-1].is_runtime:
            runtime = self.default_runtime(fmt)
            if runtime is None:
                raise InputError(f"{text!r} ends with {fmt} and no runtime runs {fmt} by default",
                                 hint="name a runtime last")
            chain.append(runtime)
        return self.stack(chain)

    def _resolve(self, part: str, fmt: str, text: str) -> tuple[Link, list[Link]]:
        """The link named `part`, given `fmt`, and the converters needed before it."""
        candidates: list[tuple[type[Plugin], str]] = []  # (plugin, the format it would be handed)
        for cls in [*PASSES, *RUNTIMES]:
            for consumed in cls.consumes:
                candidates.append((cls, consumed))
        known: set[str] = set()
        mismatched: str | None = None
        for cls, consumed in candidates:
            for link in self.links(cls, consumed):
                known.add(link.tag or cls.name)
                if part not in (link.tag, cls.name if link.first else None):
                    continue
                if consumed == fmt:
                    return link, []
                gap = self.bridge(fmt, consumed)
                if gap is not None:
                    return link, gap
                mismatched = f"{part} takes {' or '.join(cls.consumes)}, and nothing converts {fmt} to that"
        if mismatched:
            raise InputError(f"{text!r} does not compose: {mismatched}")
        raise InputError(f"no step named {part!r} on {self.device} here",
                         hint=f"known: {', '.join(sorted(t for t in known if t))}")


def mismatch(chain: list[Link], source: str = SOURCE_FORMAT) -> str | None:
    """Why `chain`, started from a `source` model, does not compose, in one line naming the
    step; None when it does."""
    if not chain or not chain[-1].is_runtime:
        return "a recipe ends with a runtime"
    if any(link.is_runtime for link in chain[:-1]):
        return "only the last step may be a runtime"
    fmt, dtype = source, "float32"
    given: dict[str, str] = {}  # trait -> the step that gave it
    last_stage, previous = -1, "the model"
    for link in chain:
        name = link.describe()
        cls = link.plugin
        if fmt not in cls.consumes:
            return f"{name} takes {' or '.join(cls.consumes)}, but {previous} gives {fmt}"
        if not link.is_runtime:
            stage = STAGES.index(cls.stage)  # type: ignore[attr-defined]
            if stage <= last_stage:
                return f"{name} ({cls.stage}) cannot follow {previous} ({STAGES[last_stage]}) on a {fmt} model"
        if "*" not in cls.accepts_dtypes and dtype not in cls.accepts_dtypes:
            return f"{name} takes {' or '.join(cls.accepts_dtypes)} models, but {previous} computes in {dtype}"
        missing = link.variant.needs - set(given)
        if missing:
            return f"{name} needs {', '.join(sorted(missing))}, which no earlier step gives"
        if "*" not in cls.keeps:
            for trait, giver in given.items():
                if trait not in cls.keeps:
                    return f"{name} drops {trait}, so {giver} would do nothing"
        if not link.is_runtime:
            produced = cls.produces  # type: ignore[attr-defined]
            last_stage = -1 if produced != fmt else stage
            fmt = produced
        for trait in link.variant.gives:
            given[trait] = name
        dtype = link.variant.compute_dtype or dtype
        previous = name
    return None


def recipe_of(chain: list[Link], runtime_fmt: str, baseline: bool = False) -> Recipe:
    """The recipe a checked chain stands for. Label: the passes' tags joined by "+", then the
    runtime's tag unless it is the default runtime for its format in its first variant (so
    "pt2e-int8" runs on Inductor, "pt2e-int8+aoti" on AOTInductor). Cost: the steps' sum.
    `baseline`: it is the Composer's baseline chain (marked, never found by its label)."""
    passes, runtime = chain[:-1], chain[-1]
    tags = [link.tag for link in passes if link.tag]
    # The runtime goes unnamed only where it is what the last named step's output runs on by
    # default, with no converter after that step: "prune-l1-30" is on eager, so the same
    # pruning exported to ONNX Runtime is "prune-l1-30+onnxruntime", not a second "prune-l1-30".
    last_named = max((i for i, link in enumerate(passes) if link.tag), default=None)
    converted_after = last_named is not None and any(
        link.plugin.stage == CONVERT for link in passes[last_named + 1:])  # type: ignore[attr-defined]
    implied = (bool(tags) and not converted_after and runtime.first
               and runtime_fmt in runtime.plugin.default_for)  # type: ignore[attr-defined]
    label = "+".join(tags + ([] if implied else [runtime.tag or runtime.plugin.name]))
    origins = [link.variant.origin for link in passes if link.variant.origin]
    if not implied and runtime.variant.origin:
        origins.append(runtime.variant.origin)
    dtype = "float32"
    for link in chain:
        dtype = link.variant.compute_dtype or dtype
    return Recipe(
        label=label,
        passes=tuple(link.step for link in passes),
        runtime=runtime.step,
        origin="; ".join(origins),
        compute_dtype=dtype,
        cost=round(sum(link.variant.cost for link in chain), 3),
        baseline=baseline,
    )


def anchored(plugin: type[Plugin], workload: "Workload | None", hw: "Hardware | None", device: str) -> list[Recipe]:
    """Plugin.propose: the recipes this plugin anchors (see Composer.anchored)."""
    return [s.recipe for s in Composer(workload, hw, device).anchored(plugin)]


def parse(text: str, workload: "Workload | None", hw: "Hardware | None", device: str) -> Recipe:
    return Composer(workload, hw, device).parse(text).recipe

"""Zoo manifests: load and validate `zoo/*.yaml` into ModelSpec objects.

The format is mmsegmentation's metafile.yaml (Collections and Models, with Name, In Collection,
Metadata, Results, Weights, ...) plus two sections of segbench's own: `Build` (how to construct
the model) and `Test` (how to feed it). A metafile from mmsegmentation loads once `Build` is
added. Validation is strict: every problem is one line naming the file, the model and the field.
This module never imports torch, so `render` and `plot` can read manifests cheaply.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segbench.errors import SegbenchError, located

CITYSCAPES_SIZE = (1024, 2048)  # (H, W)
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale, as mmsegmentation's configs
IMAGENET_STD = (58.395, 57.12, 57.375)


# --------------------------------------------------------------------------- schema
# A schema maps a field name to (expected type(s), required). A nested dict schema validates a
# mapping; `ANY_MAPPING` accepts any mapping of str keys (free-form metadata).

ANY_MAPPING = "any mapping"
Number = (int, float)

_COLLECTION_SCHEMA: dict[str, tuple[Any, bool]] = {
    "Name": (str, True),
    "License": (str, False),
    "Metadata": (ANY_MAPPING, False),
    "Paper": (ANY_MAPPING, False),
    "README": (str, False),
    "Frameworks": (list, False),
    "Code": (ANY_MAPPING, False),
}

_METADATA_SCHEMA: dict[str, tuple[Any, bool]] = {
    "Training Data": ((str, list), False),
    "Batch Size": (int, False),
    "Architecture": (list, False),
    "Training Resources": (str, False),
    "Memory (GB)": (Number, False),
    "inference time (ms/im)": (list, False),  # mmsegmentation 0.x metafiles
    # segbench's additions
    "Crop Size": (list, False),  # [H, W]
    "Schedule": (str, False),
    "EMA": (bool, False),
}

_RESULT_SCHEMA: dict[str, tuple[Any, bool]] = {
    "Task": (str, False),
    "Dataset": (str, True),
    "Metrics": (ANY_MAPPING, True),
    "Source": (str, False),  # segbench: where the reported numbers were published
}

_BUILD_SCHEMA: dict[str, tuple[Any, bool]] = {
    "architecture": (str, False),
    "callable": (str, False),
    "kwargs": (ANY_MAPPING, False),
}

_TEST_SCHEMA: dict[str, tuple[Any, bool]] = {
    "size": (list, False),
    "mode": (str, False),
    "crop": (list, False),
    "stride": (list, False),
    "align_corners": (bool, False),
    "mean": (list, False),
    "std": (list, False),
}

_MODEL_SCHEMA: dict[str, tuple[Any, bool]] = {
    "Name": (str, True),
    "In Collection": (str, True),
    "Metadata": (_METADATA_SCHEMA, False),
    "Results": ((list, dict), False),
    "Config": (str, False),
    "Weights": ((str, type(None)), False),
    "Training log": (str, False),
    "Paper": (ANY_MAPPING, False),
    "Code": (str, False),
    "Framework": (str, False),
    "Alias": ((str, list), False),
    # segbench's sections
    "Weights SHA256": (str, False),
    "Weights Adapter": (str, False),  # a key adapter of segbench.checkpoint, for other codebases' files
    "Build": (_BUILD_SCHEMA, True),
    "Test": (_TEST_SCHEMA, False),
}

_TOP_SCHEMA: dict[str, tuple[Any, bool]] = {"Collections": (list, False), "Models": (list, True)}


def _type_name(expected: Any) -> str:
    if expected is ANY_MAPPING or isinstance(expected, dict):
        return "a mapping"
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
             dict: "a mapping", type(None): "null"}  # fmt: skip
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _is_instance(value: Any, expected: Any) -> bool:
    if expected is ANY_MAPPING or isinstance(expected, dict):
        return isinstance(value, dict)
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False  # YAML `yes` must not pass as a number
    return isinstance(value, types)


def _check_mapping(mapping: Any, schema: dict[str, tuple[Any, bool]], where: str, prefix: str, model: str | None):
    """Raise on unknown keys (with a suggestion), missing required keys and wrong types."""
    if not isinstance(mapping, dict):
        raise SegbenchError(f"{located(where, model, prefix or None)}: expected a mapping, got {type(mapping).__name__}")
    for key in mapping:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(schema)})"
            raise SegbenchError(f"{located(where, model, prefix + str(key))}: unknown field{hint}")
    for key, (expected, required) in schema.items():
        if key not in mapping:
            if required:
                raise SegbenchError(f"{located(where, model, prefix + key)}: missing required field")
            continue
        value = mapping[key]
        if not _is_instance(value, expected):
            raise SegbenchError(
                f"{located(where, model, prefix + key)}: expected {_type_name(expected)}, got {value!r}"
            )
        if isinstance(expected, dict):
            _check_mapping(value, expected, where, f"{prefix}{key}.", model)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ReportedResult:
    """Numbers the model's authors published, with where they published them."""

    dataset: str
    miou: float | None
    miou_ms_flip: float | None
    source: str


@dataclass(frozen=True)
class TestSpec:
    """How the model is fed at test time. Sizes are (H, W)."""

    size: tuple[int, int] = CITYSCAPES_SIZE
    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    align_corners: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "mode": self.mode,
            "crop": list(self.crop) if self.crop else None,
            "stride": list(self.stride) if self.stride else None,
            "align_corners": self.align_corners,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class BuildSpec:
    architecture: str | None
    callable: str | None
    kwargs: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "callable": self.callable, "kwargs": dict(self.kwargs)}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # the manifest's file stem, e.g. "deeplabv3"
    collection: str  # mmsegmentation's "In Collection", e.g. "DeepLabV3"
    file: str
    build: BuildSpec
    test: TestSpec
    architecture_tags: tuple[str, ...] = ()
    crop_size: tuple[int, int] | None = None
    batch_size: int | None = None
    schedule: str | None = None
    ema: bool | None = None
    train_memory_gb: float | None = None
    training_resources: str | None = None
    config: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    weights_adapter: str | None = None
    reported: tuple[ReportedResult, ...] = field(default=())

    @property
    def backbone(self) -> str:
        """The backbone tag (first architecture tag, mmsegmentation's convention: 'R-50-D8')."""
        return self.architecture_tags[0] if self.architecture_tags else ""

    def reported_on(self, dataset: str = "Cityscapes") -> ReportedResult | None:
        return next((r for r in self.reported if r.dataset == dataset), None)

    def spec_hash(self) -> str:
        """Identity of what gets measured: build, test settings and weights — not reported numbers."""
        payload = {"build": self.build.as_dict(), "test": self.test.as_dict(), "weights": self.weights}
        if self.weights_adapter:
            payload["weights_adapter"] = self.weights_adapter
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _pair(value: Any, where: str, model: str, field_name: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_instance(v, int) and v > 0 for v in value)):
        raise SegbenchError(f"{located(where, model, field_name)}: expected [H, W] with two positive integers, got {value!r}")
    return int(value[0]), int(value[1])


def _triple(value: Any, where: str, model: str, field_name: str) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3 and all(_is_instance(v, Number) for v in value)):
        raise SegbenchError(f"{located(where, model, field_name)}: expected three numbers (R, G, B), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _test_spec(raw: dict[str, Any], where: str, model: str) -> TestSpec:
    mode = raw.get("mode", "whole")
    if mode not in ("whole", "slide"):
        raise SegbenchError(f"{located(where, model, 'Test.mode')}: expected 'whole' or 'slide', got {mode!r}")
    crop = _pair(raw["crop"], where, model, "Test.crop") if "crop" in raw else None
    stride = _pair(raw["stride"], where, model, "Test.stride") if "stride" in raw else None
    if mode == "slide" and (crop is None or stride is None):
        missing = "Test.crop" if crop is None else "Test.stride"
        raise SegbenchError(f"{located(where, model, missing)}: slide mode needs both crop and stride")
    if mode == "whole" and (crop or stride):
        raise SegbenchError(f"{located(where, model, 'Test.crop')}: crop and stride apply to slide mode only")
    std = _triple(raw["std"], where, model, "Test.std") if "std" in raw else IMAGENET_STD
    if any(s <= 0 for s in std):
        raise SegbenchError(f"{located(where, model, 'Test.std')}: every std must be positive, got {list(std)}")
    return TestSpec(
        size=_pair(raw["size"], where, model, "Test.size") if "size" in raw else CITYSCAPES_SIZE,
        mode=mode,
        crop=crop,
        stride=stride,
        align_corners=raw.get("align_corners", False),
        mean=_triple(raw["mean"], where, model, "Test.mean") if "mean" in raw else IMAGENET_MEAN,
        std=std,
    )


def _build_spec(raw: dict[str, Any], where: str, model: str) -> BuildSpec:
    arch, target = raw.get("architecture"), raw.get("callable")
    if (arch is None) == (target is None):
        raise SegbenchError(f"{located(where, model, 'Build')}: give exactly one of 'architecture' or 'callable'")
    if target is not None and (target.count(":") != 1 or not all(target.split(":"))):
        raise SegbenchError(
            f"{located(where, model, 'Build.callable')}: expected 'package.module:function', got {target!r}"
        )
    return BuildSpec(architecture=arch, callable=target, kwargs=dict(raw.get("kwargs", {})))


def _reported(raw: Any, where: str, model: str) -> tuple[ReportedResult, ...]:
    entries = raw if isinstance(raw, list) else [raw]
    out = []
    for i, entry in enumerate(entries):
        prefix = f"Results[{i}]." if isinstance(raw, list) else "Results."
        _check_mapping(entry, _RESULT_SCHEMA, where, prefix, model)
        metrics = entry["Metrics"]
        for key, value in metrics.items():
            if not _is_instance(value, Number):
                raise SegbenchError(f"{located(where, model, prefix + 'Metrics.' + key)}: expected a number, got {value!r}")
        out.append(
            ReportedResult(
                dataset=entry["Dataset"],
                miou=metrics.get("mIoU"),
                miou_ms_flip=metrics.get("mIoU(ms+flip)"),
                source=entry.get("Source", ""),
            )
        )
    return tuple(out)


def _model_spec(raw: Any, where: str, family: str, collections: set[str], index: int) -> ModelSpec:
    name = raw.get("Name") if isinstance(raw, dict) else None
    label = name if isinstance(name, str) else f"Models[{index}]"
    _check_mapping(raw, _MODEL_SCHEMA, where, "", label)
    if collections and raw["In Collection"] not in collections:
        raise SegbenchError(
            f"{located(where, name, 'In Collection')}: {raw['In Collection']!r} is not among this file's "
            f"Collections ({', '.join(sorted(collections))})"
        )
    meta = raw.get("Metadata", {})
    tags = meta.get("Architecture", [])
    if not all(isinstance(t, str) for t in tags):
        raise SegbenchError(f"{located(where, name, 'Metadata.Architecture')}: expected a list of strings, got {tags!r}")
    sha = raw.get("Weights SHA256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise SegbenchError(f"{located(where, name, 'Weights SHA256')}: expected 64 hex digits, got {sha!r}")
    return ModelSpec(
        name=name,
        family=family,
        collection=raw["In Collection"],
        file=where,
        build=_build_spec(raw["Build"], where, name),
        test=_test_spec(raw.get("Test", {}), where, name),
        architecture_tags=tuple(tags),
        crop_size=_pair(meta["Crop Size"], where, name, "Metadata.Crop Size") if "Crop Size" in meta else None,
        batch_size=meta.get("Batch Size"),
        schedule=meta.get("Schedule"),
        ema=meta.get("EMA"),
        train_memory_gb=meta.get("Memory (GB)"),
        training_resources=meta.get("Training Resources"),
        config=raw.get("Config"),
        weights=raw.get("Weights"),
        weights_sha256=sha.lower() if sha else None,
        weights_adapter=raw.get("Weights Adapter"),
        reported=_reported(raw["Results"], where, name) if "Results" in raw else (),
    )


def safe_load_yaml(text: str) -> Any:
    """yaml.safe_load, with libyaml's C safe loader where PyYAML has it (about 10× faster on a zoo).

    Both construct plain data only (no Python objects), so untrusted files stay data.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_manifest(path: str | Path) -> list[ModelSpec]:
    """Load one manifest file; the family is the file's stem."""
    path = Path(path)
    where = str(path)
    try:
        data = safe_load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SegbenchError(f"{where}: cannot read manifest: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SegbenchError(f"{where}: invalid YAML{at}: {getattr(exc, 'problem', exc)}") from exc
    _check_mapping(data, _TOP_SCHEMA, where, "", None)
    collections = set()
    for i, coll in enumerate(data.get("Collections", [])):
        _check_mapping(coll, _COLLECTION_SCHEMA, where, f"Collections[{i}].", None)
        collections.add(coll["Name"])
    specs, seen = [], set()
    for i, raw in enumerate(data["Models"]):
        spec = _model_spec(raw, where, path.stem, collections, i)
        if spec.name in seen:
            raise SegbenchError(f"{located(where, spec.name, 'Name')}: duplicate model name in this file")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def load_zoo(zoo_dir: str | Path) -> list[ModelSpec]:
    """Every model of every `*.yaml` under zoo_dir, names unique across files."""
    zoo_dir = Path(zoo_dir)
    files = sorted(zoo_dir.glob("*.yaml"))
    if not files:
        raise SegbenchError(f"{zoo_dir}: no manifests (*.yaml) found")
    specs: list[ModelSpec] = []
    origin: dict[str, str] = {}
    for path in files:
        for spec in load_manifest(path):
            if spec.name in origin:
                raise SegbenchError(
                    f"{located(spec.file, spec.name, 'Name')}: duplicate model name, also in {origin[spec.name]}"
                )
            origin[spec.name] = spec.file
            specs.append(spec)
    return specs


def select_models(specs: list[ModelSpec], patterns: list[str]) -> list[ModelSpec]:
    """Models matching any pattern: 'all', a family or collection name, an exact name or a glob.

    Keeps the zoo's order; a pattern that matches nothing is an error, never a silent no-op.
    """
    chosen: dict[str, ModelSpec] = {}
    for pattern in patterns:
        if pattern == "all":
            hits = specs
        else:
            lowered = pattern.lower()
            hits = [
                s
                for s in specs
                if fnmatch.fnmatchcase(s.name, pattern) or s.family.lower() == lowered or s.collection.lower() == lowered
            ]
        if not hits:
            close = difflib.get_close_matches(pattern, [s.name for s in specs] + sorted({s.family for s in specs}), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else " (see `segbench list`)"
            raise SegbenchError(f"--models: no model matches {pattern!r}{hint}")
        for s in hits:
            chosen[s.name] = s
    return [s for s in specs if s.name in chosen]

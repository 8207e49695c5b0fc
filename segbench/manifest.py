"""Zoo manifests: load and validate `zoo/*.yaml` into ModelSpec objects.

The format is mmsegmentation's metafile.yaml (Collections and Models, with Name, In Collection,
Metadata, Results, Weights, ...) plus two sections of segbench's own: `Build` (how to construct
the model) and `Test` (how to feed it). A metafile from mmsegmentation loads once `Build` is
added. Validation is strict: every problem is one line naming the file, the model and the field.
A manifest stays data: plain JSON-like values only, bounded in size and depth with YAML aliases
expanded, and model names that are safe file names everywhere.
This module never imports torch, so `render` and `plot` can read manifests cheaply.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import yaml

from segbench.errors import SegbenchError, located, one_line
from segbench.protocols import PROTOCOLS
from segbench.records import MEASURED_DATASET

CITYSCAPES_SIZE = (1024, 2048)  # (H, W)
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale, as mmsegmentation's configs
IMAGENET_STD = (58.395, 57.12, 57.375)
BUILTIN_WEIGHTS = "builtin"  # `Weights: builtin`: the Build.callable loads trained weights itself

MAX_NAME_LENGTH = 200
"""A model name is a file name (`<name>.failed.json`, and `.<that>.XXXXXXXX.tmp` while written): 200 leaves over 25
bytes of the 255-byte limit free for suffixes."""
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+-]*[A-Za-z0-9_+-])?")  # no trailing dot: Windows drops it
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{port}{i}" for port in ("COM", "LPT") for i in range(1, 10))}

MAX_EXPANDED_SIZE = 2_000_000
"""Values plus characters of a manifest with its YAML aliases expanded. The largest zoo file holds 49k, all of
mmsegmentation's metafiles together 690k; an alias bomb of a few hundred bytes holds billions (and would hang hashing and
recording it)."""
MAX_DEPTH = 50
"""Nesting levels of a manifest, aliases expanded (zoo files nest 6): unbounded nesting breaks json's recursion when a spec
is hashed and recorded."""

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 80, 80


def _shown(value: Any) -> str:
    """repr() of a value from a file, cut short: an error line stays one short line whatever the file holds."""
    return one_line(_SHORT.repr(value), 100)


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
    "inference time (ms/im)": (list, False),  # mmsegmentation 0.x metafiles: read as a Published Speed
    # segbench's additions
    "Crop Size": (list, False),  # [H, W]
    "Schedule": (str, False),
    "EMA": (bool, False),
    "Published Speed": (list, False),  # of _PUBLISHED_SPEED_SCHEMA mappings
}

_PUBLISHED_SPEED_SCHEMA: dict[str, tuple[Any, bool]] = {
    "FPS": (Number, False),  # exactly one of FPS and ms/image, as the source gives it
    "ms/image": (Number, False),
    "GPU": (str, True),
    "Backend": (str, True),
    "Precision": (str, True),
    "Input": (list, True),  # [H, W]
    "Protocol": (str, True),
    "Source": (str, True),
}
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "mixed", "unspecified")
UNSPECIFIED_PROTOCOL = "unspecified"
"""A published speed whose source does not say enough to name the protocol it was timed under."""

_MMSEG_0X_TIME_SCHEMA: dict[str, tuple[Any, bool]] = {
    "value": (Number, True),
    "hardware": (str, True),
    "backend": (str, True),
    "batch size": (int, False),
    "mode": (str, True),
    "resolution": (str, False),
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
            close = difflib.get_close_matches(key[:100], list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(schema)})"
            raise SegbenchError(f"{located(where, model, prefix + one_line(key, 80))}: unknown field{hint}")
    for key, (expected, required) in schema.items():
        if key not in mapping:
            if required:
                raise SegbenchError(f"{located(where, model, prefix + key)}: missing required field")
            continue
        value = mapping[key]
        if not _is_instance(value, expected):
            raise SegbenchError(
                f"{located(where, model, prefix + key)}: expected {_type_name(expected)}, got {_shown(value)}"
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
class PublishedSpeed:
    """A speed its authors or a model zoo published, with what it was measured on and how: the page sets it beside a
    measurement only when the protocol and input agree, and says what differs otherwise."""

    fps: float | None  # exactly one of fps and ms_per_image: the figure as the source gives it
    ms_per_image: float | None
    gpu: str
    backend: str
    precision: str
    input_size: tuple[int, int]  # (H, W)
    protocol: str  # a name of segbench.protocols.PROTOCOLS, or UNSPECIFIED_PROTOCOL
    source: str

    @property
    def images_per_second(self) -> float:
        return self.fps if self.fps is not None else 1000.0 / self.ms_per_image

    @property
    def latency_ms(self) -> float:
        return self.ms_per_image if self.ms_per_image is not None else 1000.0 / self.fps


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
    published_speeds: tuple[PublishedSpeed, ...] = field(default=())

    @property
    def backbone(self) -> str:
        """The backbone tag (first architecture tag, mmsegmentation's convention: 'R-50-D8')."""
        return self.architecture_tags[0] if self.architecture_tags else ""

    @property
    def builtin_weights(self) -> bool:
        """The builder loads trained weights itself (`Weights: builtin`): nothing to download, and its mIoU is real."""
        return self.weights == BUILTIN_WEIGHTS

    def reported_on(self, dataset: str = MEASURED_DATASET) -> ReportedResult | None:
        return next((r for r in self.reported if r.dataset == dataset), None)

    @property
    def headline_result(self) -> ReportedResult | None:
        """The reported result that the list, the page and the plots show: Cityscapes where the entry
        reports one (segbench measures Cityscapes), else its first (an ADE20K-only model's)."""
        return self.reported_on(MEASURED_DATASET) or (self.reported[0] if self.reported else None)

    @property
    def params_count_norm_statistics(self) -> bool:
        """PaddleSeg's entries: its published Params(M) count BatchNorm statistics, so the page does too."""
        reported = self.headline_result
        return bool(reported and reported.source.startswith("PaddleSeg"))

    def spec_hash(self) -> str:
        """Identity of what gets measured: build, test settings and weights — not reported numbers."""
        payload = {"build": self.build.as_dict(), "test": self.test.as_dict(), "weights": self.weights}
        if self.weights_adapter:
            payload["weights_adapter"] = self.weights_adapter
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _pair(value: Any, where: str, model: str, field_name: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_instance(v, int) and v > 0 for v in value)):
        raise SegbenchError(f"{located(where, model, field_name)}: expected [H, W] with two positive integers, got {_shown(value)}")
    return int(value[0]), int(value[1])


def _triple(value: Any, where: str, model: str, field_name: str) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3 and all(_is_instance(v, Number) for v in value)):
        raise SegbenchError(f"{located(where, model, field_name)}: expected three numbers (R, G, B), got {_shown(value)}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _test_spec(raw: dict[str, Any], where: str, model: str) -> TestSpec:
    mode = raw.get("mode", "whole")
    if mode not in ("whole", "slide"):
        raise SegbenchError(f"{located(where, model, 'Test.mode')}: expected 'whole' or 'slide', got {_shown(mode)}")
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
    module, _, attr = (target or "").partition(":")
    if target is not None and not all(part.isidentifier() for part in (*module.split("."), *attr.split("."))):
        raise SegbenchError(
            f"{located(where, model, 'Build.callable')}: expected 'package.module:function', got {_shown(target)}"
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
                raise SegbenchError(
                    f"{located(where, model, prefix + 'Metrics.' + one_line(key, 40))}: expected a number, got {_shown(value)}"
                )
        out.append(
            ReportedResult(
                dataset=entry["Dataset"],
                miou=metrics.get("mIoU"),
                miou_ms_flip=metrics.get("mIoU(ms+flip)"),
                source=entry.get("Source", ""),
            )
        )
    return tuple(out)


SPEED_RANGE = (1e-6, 1e9)
"""Bounds of a published FPS or ms/image: any real figure lies far inside, and both it and 1000 / it stay finite floats."""


def _positive(value: Any, where: str, model: str, field_name: str) -> float:
    low, high = SPEED_RANGE
    if not low <= value <= high:
        raise SegbenchError(f"{located(where, model, field_name)}: expected a positive number ({low:g} to {high:g}), got {_shown(value)}")
    return float(value)


def _published_speeds(meta: dict[str, Any], test: TestSpec, where: str, model: str) -> tuple[PublishedSpeed, ...]:
    """Metadata.Published Speed as given, then mmsegmentation 0.x's `inference time (ms/im)` read as one: timed by
    its tools/benchmark.py (protocol mmseg) on the test pipeline, so at the test size (its `resolution` is the crop)."""
    speeds = []
    for i, raw in enumerate(meta.get("Published Speed", [])):
        prefix = f"Metadata.Published Speed[{i}]"
        if not isinstance(raw, dict):
            raise SegbenchError(f"{located(where, model, prefix)}: expected a mapping, got {_shown(raw)}")
        _check_mapping(raw, _PUBLISHED_SPEED_SCHEMA, where, prefix + ".", model)
        if ("FPS" in raw) == ("ms/image" in raw):
            raise SegbenchError(f"{located(where, model, prefix)}: give exactly one of 'FPS' and 'ms/image'")
        for key in ("GPU", "Backend", "Source"):
            if not raw[key].strip():
                raise SegbenchError(f"{located(where, model, f'{prefix}.{key}')}: empty; say what the source says")
        if raw["Precision"] not in PRECISIONS:
            raise SegbenchError(
                f"{located(where, model, prefix + '.Precision')}: expected one of {', '.join(PRECISIONS)}, got {_shown(raw['Precision'])}"
            )
        if raw["Protocol"] not in (*PROTOCOLS, UNSPECIFIED_PROTOCOL):
            raise SegbenchError(
                f"{located(where, model, prefix + '.Protocol')}: expected one of {', '.join(PROTOCOLS)} or "
                f"{UNSPECIFIED_PROTOCOL} (when the source does not say how it timed), got {_shown(raw['Protocol'])}"
            )
        speeds.append(PublishedSpeed(
            fps=_positive(raw["FPS"], where, model, prefix + ".FPS") if "FPS" in raw else None,
            ms_per_image=_positive(raw["ms/image"], where, model, prefix + ".ms/image") if "ms/image" in raw else None,
            gpu=raw["GPU"], backend=raw["Backend"], precision=raw["Precision"],
            input_size=_pair(raw["Input"], where, model, prefix + ".Input"), protocol=raw["Protocol"], source=raw["Source"],
        ))  # fmt: skip
    for i, raw in enumerate(meta.get("inference time (ms/im)", [])):
        prefix = f"Metadata.inference time (ms/im)[{i}]"
        if not isinstance(raw, dict):
            raise SegbenchError(f"{located(where, model, prefix)}: expected a mapping, got {_shown(raw)}")
        _check_mapping(raw, _MMSEG_0X_TIME_SCHEMA, where, prefix + ".", model)
        if raw.get("batch size", 1) != 1:
            raise SegbenchError(f"{located(where, model, prefix + '.batch size')}: segbench compares batch-1 speeds, got {_shown(raw['batch size'])}")
        precision = {"amp": "mixed"}.get(raw["mode"].lower(), raw["mode"].lower())
        if precision not in PRECISIONS:
            raise SegbenchError(f"{located(where, model, prefix + '.mode')}: expected FP32, FP16 or AMP, got {_shown(raw['mode'])}")
        speeds.append(PublishedSpeed(
            fps=None, ms_per_image=_positive(raw["value"], where, model, prefix + ".value"), gpu=raw["hardware"],
            backend=raw["backend"], precision=precision, input_size=test.size, protocol="mmseg",
            source="mmsegmentation 0.x metafile, inference time (ms/im)",
        ))  # fmt: skip
    return tuple(speeds)


def _name_problem(name: str) -> str | None:
    """Why `name` cannot name a record file on Linux, macOS and Windows (or leaves the results folder); None if it can."""
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters"
    if not _NAME.fullmatch(name):
        return "use letters, digits and . _ + - only, starting with a letter or digit and not ending with '.'"
    if name.split(".")[0].upper() in _WINDOWS_DEVICES:
        return "a device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    return None


def _is_web_url(text: str) -> bool:
    """An http(s) URL with a host: what a manifest's Weights may name, so that a zoo from elsewhere cannot have `bench
    --weights` read (or copy into the cache) a file of this machine, as a path or a file:// URL would."""
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed host, such as an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _model_label(raw: Any, index: int) -> str:
    """How errors name a model entry: its Name where that is a valid name, else its position."""
    name = raw.get("Name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and _name_problem(name) is None else f"Models[{index}]"


def _model_spec(raw: Any, where: str, family: str, collections: set[str], index: int) -> ModelSpec:
    name = raw.get("Name") if isinstance(raw, dict) else None
    if isinstance(name, str) and (problem := _name_problem(name)):
        raise SegbenchError(
            f"{located(where, f'Models[{index}]', 'Name')}: {_shown(name)} cannot be a model name, which names its "
            f"record file: {problem}"
        )
    _check_mapping(raw, _MODEL_SCHEMA, where, "", _model_label(raw, index))
    if collections and raw["In Collection"] not in collections:
        raise SegbenchError(
            f"{located(where, name, 'In Collection')}: {_shown(raw['In Collection'])} is not among this file's "
            f"Collections ({', '.join(map(_shown, sorted(collections)))})"
        )
    meta = raw.get("Metadata", {})
    tags = meta.get("Architecture", [])
    if not all(isinstance(t, str) for t in tags):
        raise SegbenchError(f"{located(where, name, 'Metadata.Architecture')}: expected a list of strings, got {_shown(tags)}")
    sha = raw.get("Weights SHA256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise SegbenchError(f"{located(where, name, 'Weights SHA256')}: expected 64 hex digits, got {_shown(sha)}")
    weights = raw.get("Weights")
    if weights not in (None, BUILTIN_WEIGHTS) and not _is_web_url(weights):
        raise SegbenchError(
            f"{located(where, name, 'Weights')}: expected an http(s) URL, 'builtin' or null, got {_shown(weights)}: a "
            "manifest may not name a file on this machine; to load a local checkpoint, give it yourself with --checkpoint"
        )
    if weights == BUILTIN_WEIGHTS:
        if "callable" not in raw["Build"]:
            raise SegbenchError(
                f"{located(where, name, 'Weights')}: 'builtin' says a Build.callable loads its own trained weights; "
                "a segbench architecture has none: give a URL or null"
            )
        if sha is not None:
            raise SegbenchError(f"{located(where, name, 'Weights SHA256')}: nothing to check: the builder loads its own weights")
    test = _test_spec(raw.get("Test", {}), where, name)
    return ModelSpec(
        name=name,
        family=family,
        collection=raw["In Collection"],
        file=where,
        build=_build_spec(raw["Build"], where, name),
        test=test,
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
        published_speeds=_published_speeds(meta, test, where, name),
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


def _locate(document: Any, path: tuple) -> tuple[str | None, str | None]:
    """(model, field) of a path into a manifest: an entry of Models is named by its model."""
    model = None
    if len(path) >= 2 and path[0] == "Models" and isinstance(path[1], int):
        model, path = _model_label(document["Models"][path[1]], path[1]), path[2:]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{one_line(p, 40)}" for p in path).lstrip(".")
    return model, field or None


def _check_plain_data(document: Any, where: str) -> None:
    """Refuse, before anything reads it, what a record cannot hold or a hash cannot afford.

    That is: numbers that are not finite, keys that are not text, YAML's dates, bytes and sets, an alias that refers to
    itself, nesting deeper than MAX_DEPTH and an expanded size over MAX_EXPANDED_SIZE (an alias bomb). A list or mapping
    that aliases share is sized once, so the check is linear in the file, not in what it expands to.
    """
    sized: dict[int, tuple[int, int]] = {}  # id of a list or mapping -> (expanded size, height)
    open_ids: set[int] = set()  # lists and mappings being walked: meeting one again is a cycle

    def fail(path: tuple, problem: str) -> NoReturn:
        model, field = _locate(document, path)
        raise SegbenchError(f"{located(where, model, field)}: {problem}")

    def walk(value: Any, path: tuple) -> tuple[int, int]:
        if isinstance(value, str):
            if len(value) >= MAX_EXPANDED_SIZE:
                fail(path, f"text of {len(value):,} characters, over the {MAX_EXPANDED_SIZE:,} a file may hold")
            return 1 + len(value), 0
        if isinstance(value, float) and not math.isfinite(value):
            fail(path, f"expected a finite number, got {value}")
        if value is None or isinstance(value, (bool, int, float)):
            return 1, 0
        if not isinstance(value, (list, dict)):
            fail(path, f"expected text, a number, true/false, null, a list or a mapping, got {type(value).__name__} "
                       f"{_shown(value)} (quote it if it is meant as text)")  # fmt: skip
        if id(value) in open_ids:
            fail(path, "refers to itself (a recursive YAML alias)")
        if len(path) > MAX_DEPTH:
            fail(path, f"nested deeper than {MAX_DEPTH} levels")
        if id(value) not in sized:
            open_ids.add(id(value))
            size, height = 1, 0
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                if isinstance(value, dict) and not isinstance(key, str):
                    fail(path, f"keys must be text, got {_shown(key)} (quote it)")
                item_size, item_height = walk(item, (*path, key))
                size, height = size + item_size + (1 + len(key) if isinstance(key, str) else 0), max(height, item_height + 1)
            open_ids.discard(id(value))
            if size > MAX_EXPANDED_SIZE:
                fail(path, f"expands to more than {MAX_EXPANDED_SIZE:,} values and characters (YAML aliases?); "
                           "write the value out or shrink it")  # fmt: skip
            sized[id(value)] = size, height
        size, height = sized[id(value)]
        if len(path) + height > MAX_DEPTH:
            fail(path, f"nested deeper than {MAX_DEPTH} levels (YAML aliases?)")
        return size, height

    walk(document, ())


def check_unique(spec: ModelSpec, seen: dict[str, ModelSpec]) -> None:
    """Add spec to `seen`, or raise when its name is taken: ignoring case, as file names on macOS and Windows do."""
    other = seen.setdefault(spec.name.lower(), spec)
    if other is not spec:
        case = "" if other.name == spec.name else f" (ignoring case, as macOS and Windows file names do: {other.name!r})"
        elsewhere = " in this file" if other.file == spec.file else f", also in {other.file}"
        raise SegbenchError(f"{located(spec.file, spec.name, 'Name')}: duplicate model name{case}{elsewhere}")


def load_yaml_data(path: Path, kind: str) -> Any:
    """A YAML file that segbench did not write (a manifest, a preset) as plain data: UTF-8, safe-loaded and bounded by
    _check_plain_data; every problem one line naming the file."""
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SegbenchError(f"{where}: cannot read {kind}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SegbenchError(
            f"{where}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the {kind} as UTF-8"
        ) from exc
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SegbenchError(f"{where}: invalid YAML{at}: {one_line(getattr(exc, 'problem', None) or exc)}") from exc
    except (ValueError, RecursionError) as exc:  # a value PyYAML fails to build: an integer of 5000 digits, `!!float x`
        raise SegbenchError(f"{where}: invalid YAML: {one_line(exc)}") from exc
    _check_plain_data(data, where)
    return data


def load_manifest(path: str | Path) -> list[ModelSpec]:
    """Load one manifest file; the family is the file's stem."""
    path = Path(path)
    where = str(path)
    data = load_yaml_data(path, "manifest")
    _check_mapping(data, _TOP_SCHEMA, where, "", None)
    collections = set()
    for i, coll in enumerate(data.get("Collections", [])):
        _check_mapping(coll, _COLLECTION_SCHEMA, where, f"Collections[{i}].", None)
        collections.add(coll["Name"])
    specs: list[ModelSpec] = []
    seen: dict[str, ModelSpec] = {}
    for i, raw in enumerate(data["Models"]):
        spec = _model_spec(raw, where, path.stem, collections, i)
        check_unique(spec, seen)
        specs.append(spec)
    return specs


def _mentions(path: Path, text: str) -> bool:
    """Whether the file holds `text`, ignoring case as model names are compared (check_unique)."""
    try:
        return text.lower().encode() in path.read_bytes().lower()
    except OSError:
        return True  # load_manifest says why it cannot be read


def load_zoo(zoo_dir: str | Path, mentioning: str | None = None) -> list[ModelSpec]:
    """Every model of every `*.yaml` under zoo_dir, names unique across files.

    With `mentioning`, only the manifests whose text contains it: one model's name reads the one
    file that holds it (and any other that repeats the name) rather than the whole zoo."""
    zoo_dir = Path(zoo_dir)
    files = sorted(zoo_dir.glob("*.yaml"))
    if not files:
        raise SegbenchError(f"{zoo_dir}: no manifests (*.yaml) found")
    if mentioning is not None:
        files = [path for path in files if _mentions(path, mentioning)]
    specs: list[ModelSpec] = []
    seen: dict[str, ModelSpec] = {}
    for path in files:
        for spec in load_manifest(path):
            check_unique(spec, seen)
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

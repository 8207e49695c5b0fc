"""Property-based tests of the record readers (render, plot, compare, resume) on generated files.

Each file under results/ is a generated document: a random JSON tree, or a complete record with one
field replaced by random JSON (wrong types, NaN and infinities, huge and unicode strings, deep
nesting) or deleted, under odd file and folder names, or bytes that are not JSON at all. A reader
may refuse with SegbenchError (the CLI's one-line error) or skip the file with a SegbenchWarning;
anything else fails the test, and so does a file written outside the output folder.

Bounded and reproducible: derandomize=True (a fixed seed per test) and 100 examples per test
(50 for render, which writes four formats, and 25 for plot, which draws a figure); the README
states both.
"""

import copy
import json
import math
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segbench.cli import main
from segbench.errors import SegbenchWarning
from segbench.records import current_record, reusable_complexity
from tests.conftest import TOY_ZOO

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None)
HARDWARE = "cpu-fuzz"

COMPLETE = {
    "schema_version": 1, "status": "ok", "model": "toy_a", "family": "toy", "collection": "Toy", "spec_hash": "abc",
    "environment": {"hardware": HARDWARE, "device_type": "cpu", "cpu": "x", "date": "2026-01-01T00:00:00+00:00",
                    "load_average_1min": 0.5, "git_commit": "0" * 40, "torch": "2.13.0"},
    "settings": {"input_size": [32, 64], "images": 7, "warmup": 1, "batch_size": 1, "dtype": "float32", "weights": "random-init",
                 "input": "synthetic", "device_type": "cpu", "mode": "whole"},
    "params": {"inference": 260, "total": 260}, "macs": {"fvcore": 126976, "thop": 126976, "input_size": [32, 64]},
    "latency": {"unit": "s", "samples": [0.01, 0.012, 0.011, 0.013, 0.009, 0.014, 0.01], "load_average_1min": 0.7,
                "stages": {"clock": "perf_counter", "preprocess": [0.001] * 7, "forward": [0.008] * 7, "postprocess": [0.002] * 7}},
    "memory": {"measured": True, "peak_allocated_bytes": 2**20, "peak_reserved_bytes": 2**21},
    "training": {"measured": True, "step": {"unit": "s", "samples": [0.2, 0.3]}, "memory": {"peak_allocated_bytes": 1, "peak_reserved_bytes": 2}},
    "gpu_state": {"measured": True, "warnings": ["w"], "energy_per_image_j": 1.0, "before": {"sm_clock_mhz": 1}, "after": {"sm_clock_mhz": 1}},
    "accuracy": {"miou": 50.0, "iou": [40.0, None], "classes": ["road", "sky"], "num_images": 3, "split": "val", "is_synthetic": False},
    "accuracy_ms_flip": {"miou": 51.0},
}  # fmt: skip

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20) | st.sampled_from(["", "x" * 100_000, "\u202e\U0001f600|`<b>\n#", "../../escaped", "a/b/c"])
)  # fmt: skip
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=12)  # fmt: skip
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=60).filter(
    lambda n: n not in (".", "..") and len(n.encode()) < 200)  # fmt: skip


def _paths(tree, prefix=()):
    """Every key path of a nested dict, so a mutation can hit any field."""
    for key, value in tree.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


FIELDS = list(_paths(COMPLETE))


@st.composite
def documents(draw) -> bytes:
    """The bytes of one record file."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(100, 100_000))
        return ("[" * depth + "]" * depth).encode() if draw(st.booleans()) else ('{"a":' * depth + "1" + "}" * depth).encode()
    if kind == "random":
        return json.dumps(draw(json_values)).encode()
    record = copy.deepcopy(COMPLETE)
    for _ in range(draw(st.integers(1, 3))):
        *parents, key = draw(st.sampled_from(FIELDS))
        target = record
        for parent in parents:
            target = target.get(parent) if isinstance(target, dict) else None
        if isinstance(target, dict):
            if draw(st.booleans()):
                target.pop(key, None)
            else:
                target[key] = draw(json_values)
    return json.dumps(record).encode()


def _write_tree(root: Path, document: bytes, folder: str, name: str, placed: bool) -> Path:
    """out/results/<folder>/<name>.json holds the document; with `placed`, a dict document names its path's model and hardware."""
    if placed:
        try:
            record = json.loads(document)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            record["model"] = name
            if isinstance(record.get("environment"), dict):
                record["environment"]["hardware"] = folder
            document = json.dumps(record).encode()
    path = root / "out" / "results" / folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document)
    zoo = root / "zoo"
    zoo.mkdir(exist_ok=True)
    (zoo / "toy.yaml").write_text(TOY_ZOO)
    return path


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _run_reader(root: Path, argv: list[str]) -> None:
    """The CLI command may exit 0 or 1 (SegbenchError); it raises nothing, warns only SegbenchWarning, writes only under out/."""
    before = _files(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) in (0, 1)
    assert all(issubclass(w.category, SegbenchWarning) for w in caught), [str(w.message) for w in caught]
    assert all(root / "out" in p.parents for p in _files(root) - before)


placements = st.tuples(documents(), st.sampled_from([HARDWARE]) | names, st.sampled_from(["toy_a", "toy_b"]) | names, st.booleans())


@settings(FUZZ, max_examples=50)
@given(placements)
def test_render_and_every_export_survive_any_record(case):
    document, folder, name, placed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_tree(root, document, folder, name, placed)
        _run_reader(root, ["render", "--zoo", str(root / "zoo"), "--output", str(root / "out"), "--format", "md", "csv", "json", "latex"])


@settings(FUZZ, max_examples=25)
@given(placements)
def test_plot_survives_any_record(case):
    document, folder, name, placed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_tree(root, document, folder, name, placed)
        _run_reader(root, ["plot", "--zoo", str(root / "zoo"), "--output", str(root / "out"), "--x", "latency", "--format", "png"])


@FUZZ
@given(placements)
def test_compare_survives_any_record(case):
    document, folder, name, placed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = _write_tree(root, document, folder, name, placed)
        reference = root / "out" / "reference" / HARDWARE / f"{name}.json"
        reference.parent.mkdir(parents=True)
        reference.write_text(json.dumps(COMPLETE | {"model": name}))
        _run_reader(root, ["compare", str(reference.parent), str(path.parent)])
        _run_reader(root, ["compare", str(root / "out"), str(root / "out")])


@FUZZ
@given(placements)
def test_resume_check_survives_any_record(case):
    document, folder, name, placed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = _write_tree(root, document, folder, name, placed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = current_record(path, "abc", COMPLETE["settings"])
            reused = reusable_complexity(root / "out" / "results", name, "abc", [32, 64])
        assert all(issubclass(w.category, SegbenchWarning) for w in caught)
        if record is not None:  # only a complete, current record is reused; its numbers are finite
            assert record["settings"] == COMPLETE["settings"] and all(math.isfinite(s) for s in record["latency"]["samples"])
        if reused is not None:
            assert isinstance(reused["params"]["inference"], int)


def test_a_complete_record_is_read_back_by_every_reader(tmp_path):
    """The fuzz base itself must pass, or the mutations above test nothing but rejection."""
    path = _write_tree(tmp_path, json.dumps(COMPLETE).encode(), HARDWARE, "toy_a", placed=False)
    assert current_record(path, "abc", COMPLETE["settings"]) == COMPLETE
    assert main(["render", "--zoo", str(tmp_path / "zoo"), "--output", str(tmp_path / "out")]) == 0
    assert "[json](results/cpu-fuzz/toy_a.json)" in (tmp_path / "out" / "model_zoo.md").read_text()

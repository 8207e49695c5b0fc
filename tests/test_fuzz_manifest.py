"""Property-based tests of the manifest loader: generated documents load or are refused in one line, and nothing is written.

Documents are random YAML trees, valid manifests with one value replaced (wrong types, NaN and infinities, huge and
unicode strings, deep nesting, hostile model names), raw text and bytes, and alias bombs. Whatever loads must also be
recordable: its spec hashes and its build and test sections are strict JSON. Examples are derandomized (a fixed seed
derived from each test), so every run tries the same documents; README "Trust model" gives the counts.
"""

import copy
import json
import math
import os
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segbench.errors import SegbenchError
from segbench.manifest import load_manifest

EXAMPLES = 100
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

VALID = {
    "Collections": [{"Name": "Toy"}],
    "Models": [
        {
            "Name": "toy",
            "In Collection": "Toy",
            "Metadata": {"Architecture": ["Tiny"], "Crop Size": [32, 64], "Batch Size": 2, "Memory (GB)": 1.5,
                         "Published Speed": [{"FPS": 50.0, "GPU": "V100", "Backend": "PyTorch", "Precision": "fp32",
                                              "Input": [32, 64], "Protocol": "mmseg", "Source": "made up"}],
                         "inference time (ms/im)": [{"value": 20.5, "hardware": "V100", "backend": "PyTorch", "batch size": 1,
                                                     "mode": "FP32", "resolution": "(32,64)"}]},
            "Results": {"Dataset": "Cityscapes", "Metrics": {"mIoU": 50.5}, "Source": "made up"},
            "Weights": "https://example.org/toy.pth",
            "Build": {"callable": "toy_models:tiny_segmentor", "kwargs": {"num_classes": 4}},
            "Test": {"size": [32, 64], "mode": "slide", "crop": [16, 16], "stride": [8, 8], "mean": [1, 2, 3]},
        }
    ],
}
FIELDS = ["Name", "In Collection", "Metadata", "Results", "Build", "Test", "Weights", "Weights SHA256", "callable",
          "architecture", "kwargs", "size", "mode", "crop", "stride", "mean", "std", "Dataset", "Metrics", "mIoU",
          "Published Speed", "FPS", "ms/image", "GPU", "Input", "Protocol", "inference time (ms/im)", "value"]  # fmt: skip
NAMES = ["../../escaped_record", "sub/dir/name", "a" * 300, "pipe|name", "CON", "nul.json", "x" * 200, "ok-name_1.2+3",
         "trailing.", " lead", "tab\tname", "new\nline", "[/markup]", "ünïcödé", "\u2028", ""]  # fmt: skip

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**70, "\x00", "\u202e", "yes", "1e999"])
    | st.builds(lambda ch, n: ch * n, st.characters(), st.integers(0, 5_000))  # long strings (huge ones: test_huge_strings)
    | st.sampled_from(NAMES)
)
trees = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def paths_of(tree, prefix=()):
    """Every path to a value in a nested dict/list tree."""
    yield prefix
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield from paths_of(value, (*prefix, key))


PATHS = list(paths_of(VALID))[1:]

RAW_VALUES = ["9" * 5000, "!!binary aGVsbG8=", "!!binary ###", "!!python/object:os.system {}", "2020-06-06", "2020-06-06 10:00:00",
              "!!timestamp 2020-99-99", "!!set {a: null}", "&a [*a]", "&m {<<: *m}", "!!float abc", "!!int x", "{[1]: 2}",
              "{<<: 5}", "!!str", "*undefined", ".nan", "-.inf", "0x_", "0o99", "1_000", "~", "!custom 1", "'\\x00'"]  # fmt: skip
SECTIONS = ["  Build:\n    callable: toy_models:tiny_segmentor\n    kwargs:\n      x: {}\n", "  Metadata: {{Memory (GB): {}}}\n",
            "  Test: {{size: {}}}\n", "  Results: {{Dataset: Cityscapes, Metrics: {{mIoU: {}}}}}\n", "  Weights: {}\n",
            "  Name: {}\n"]  # fmt: skip
HEADER = "Models:\n- In Collection: Toy\n"


def snapshot(folder: Path) -> list:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def loads_or_refuses_in_one_line(content: str | bytes) -> None:
    """The property: specs that can be recorded, or one short SegbenchError line; no file written anywhere near."""
    cwd = sorted(os.listdir())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        before = snapshot(Path(tmp))
        try:
            specs = load_manifest(path)
        except SegbenchError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and len(message.splitlines()) == 1 and len(message) < 1000, message
        else:
            for spec in specs:
                for speed in spec.published_speeds:  # the page and the relative-speed plot divide and take logs of these
                    assert all(0 < v < math.inf for v in (speed.images_per_second, speed.latency_ms))
                assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}", spec.name) and not spec.name.endswith(".")
                spec.spec_hash()
                json.dumps([spec.build.as_dict(), spec.test.as_dict(), spec.weights], allow_nan=False)
        assert snapshot(Path(tmp)) == before
    assert sorted(os.listdir()) == cwd


def dump(tree) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


@FUZZ
@given(trees)
def test_random_yaml_trees(tree):
    loads_or_refuses_in_one_line(dump(tree))


@FUZZ
@given(st.sampled_from(PATHS), trees)
def test_a_valid_manifest_with_one_value_replaced(path, value):
    document = copy.deepcopy(VALID)
    *parents, last = path
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    loads_or_refuses_in_one_line(dump(document))


@FUZZ
@given(st.sampled_from(NAMES) | st.text(max_size=260))
def test_model_names(name):
    document = copy.deepcopy(VALID)
    document["Models"][0]["Name"] = name
    loads_or_refuses_in_one_line(dump(document))


SPEED_KEYS = ["FPS", "ms/image", "GPU", "Backend", "Precision", "Input", "Protocol", "Source"]


@FUZZ
@given(st.dictionaries(st.sampled_from(SPEED_KEYS) | st.text(max_size=8), scalars | st.lists(scalars, max_size=3), max_size=9),
       st.sampled_from(["Published Speed", "inference time (ms/im)"]))
@example({"ms/image": 5e-324, "GPU": "V100", "Backend": "PyTorch", "Precision": "fp32", "Input": [1, 1], "Protocol": "mmseg",
          "Source": "s"}, "Published Speed")
@example({"value": 2**70, "hardware": "V100", "backend": "PyTorch", "mode": "FP32"}, "inference time (ms/im)")
def test_published_speeds(item, field):
    """A published speed's values (or mmsegmentation 0.x's inference time), one or many wrong: loaded with finite speeds, or one line."""
    document = copy.deepcopy(VALID)
    document["Models"][0]["Metadata"][field] = [item]
    loads_or_refuses_in_one_line(dump(document))


@FUZZ
@given(st.characters(), st.integers(0, 2_200_000), st.sampled_from(SECTIONS))
@example("x", 2_100_000, SECTIONS[0])
def test_huge_strings(character, length, section):
    """Strings up to 2.2 million characters (past the loader's expanded-size bound), written straight into the file."""
    build = "" if "Build" in section else "  Build: {callable: 'toy_models:tiny_segmentor'}\n"
    name = "" if "Name" in section else "  Name: toy\n"
    loads_or_refuses_in_one_line(HEADER + name + build + section.format(json.dumps(character * length)))


@FUZZ
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_raw_text_and_bytes(content):
    loads_or_refuses_in_one_line(content)


@FUZZ
@given(st.sampled_from(RAW_VALUES), st.sampled_from(SECTIONS))
def test_tagged_and_special_values(value, section):
    """YAML values that PyYAML's safe loader builds into something other than JSON data, or fails on in its own way."""
    build = "" if "Build" in section else "  Build: {callable: 'toy_models:tiny_segmentor'}\n"
    name = "" if "Name" in section else "  Name: toy\n"
    loads_or_refuses_in_one_line(HEADER + name + build + section.format(value))


@FUZZ
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from(SECTIONS[:4]))
@example(12, 12, SECTIONS[0])
def test_alias_bombs(levels, width, section):
    """A `width ** levels` expansion from a file of a few hundred bytes, in any section of a model."""
    anchors = " ".join([f"a0: &a0 {['lol'] * width},"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]," for i in range(1, levels)])
    bomb = f"{{{anchors} top: *a{levels - 1}}}"
    build = "" if "Build" in section else "  Build: {callable: 'toy_models:tiny_segmentor'}\n"
    loads_or_refuses_in_one_line(HEADER + "  Name: toy\n" + build + section.format(bomb))


@FUZZ
@given(st.integers(1, 3000), st.sampled_from(["[", "{a: "]), st.booleans())
def test_deep_nesting(depth, opener, block):
    """Deep flow or block nesting in Build.kwargs (libyaml itself refuses beyond 1000 levels)."""
    if block:
        nested = "".join("\n" + " " * (6 + 2 * i) + "a:" for i in range(depth)) + " 1"
    else:
        nested = opener * depth + "1" + ("]" if opener == "[" else "}") * depth
    loads_or_refuses_in_one_line(HEADER + "  Name: toy\n" + SECTIONS[0].format(nested))

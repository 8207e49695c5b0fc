"""Manifest loading: every mistake is one line naming file, model and field."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segbench.build import build_model, model_builder
from segbench.errors import SegbenchError
from segbench.manifest import load_manifest, load_zoo, select_models

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
Collections:
- Name: Toy
Models:
- Name: toy
  In Collection: Toy
  Build:
    callable: toy_models:tiny_segmentor
"""


def write(tmp_path: Path, text: str, name: str = "toy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SegbenchError) as info:
        for spec in load_manifest(path):
            model_builder(spec)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_defaults(tmp_path):
    (spec,) = load_manifest(write(tmp_path, GOOD))
    assert spec.family == "toy" and spec.collection == "Toy"
    assert spec.test.size == (1024, 2048) and spec.test.mode == "whole" and spec.test.align_corners is False
    assert build_model(spec).training is False


@pytest.mark.parametrize(
    "old, new, expect",
    [
        ("  Build:", "  Biuld:", ["model 'toy'", "field 'Biuld'", "did you mean 'Build'"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n    kwarg: {}", ["field 'Build.kwarg'", "did you mean 'kwargs'"]),
        ("  In Collection: Toy\n", "", ["field 'In Collection'", "missing required field"]),
        ("  In Collection: Toy", "  In Collection: Toy\n  Metadata: {Batch Size: eight}", ["field 'Metadata.Batch Size'", "expected an integer"]),
        ("  In Collection: Toy", "  In Collection: Toy\n  Metadata: {EMA: 1}", ["field 'Metadata.EMA'", "true/false"]),
        ("  In Collection: Toy", "  In Collection: Other", ["field 'In Collection'", "not among this file's Collections"]),
        ("    callable: toy_models:tiny_segmentor", "    architecture: fcn_resnett", ["field 'Build.architecture'", "unknown architecture 'fcn_resnett'", "fcn_resnet"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models.tiny_segmentor", ["field 'Build.callable'", "package.module:function"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: no_such_module_xyz:f", ["field 'Build.callable'", "cannot import module 'no_such_module_xyz'"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:missing", ["field 'Build.callable'", "no attribute 'missing'"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n    kwargs: {num_clases: 3}", ["field 'Build.kwargs.num_clases'", "accepts: num_classes"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n  Test: {mode: slide}", ["field 'Test.crop'", "slide mode needs"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n  Test: {mode: slid}", ["field 'Test.mode'", "'slid'"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n  Test: {size: [2048]}", ["field 'Test.size'", "[H, W]"]),
        ("    callable: toy_models:tiny_segmentor", "    callable: toy_models:tiny_segmentor\n  Results: {Dataset: Cityscapes, Metrics: {mIoU: high}}", ["field 'Results.Metrics.mIoU'", "expected a number"]),
    ],
)
def test_errors_name_file_model_and_field(tmp_path, old, new, expect):
    assert old in GOOD
    message = error_of(write(tmp_path, GOOD.replace(old, new)))
    for fragment in expect:
        assert fragment in message


def test_duplicate_names_in_one_file(tmp_path):
    text = GOOD + GOOD.split("Models:\n")[1]
    assert "duplicate model name" in error_of(write(tmp_path, text))


def test_duplicate_names_across_files(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(SegbenchError, match=r"b\.yaml: model 'toy': field 'Name': duplicate model name, also in .*a\.yaml"):
        load_zoo(tmp_path)


def test_invalid_yaml_names_the_line(tmp_path):
    assert "invalid YAML at line" in error_of(write(tmp_path, "Models:\n  - Name: [unclosed\n"))


def test_mmsegmentation_metafile_entry_loads_with_build_added(tmp_path):
    """A model entry copied verbatim from mmsegmentation's metafile (keys and all) plus a Build section."""
    entry = (Path(__file__).parent / "data" / "mmseg_metafile_entry.yaml").read_text()
    (spec,) = load_manifest(write(tmp_path, entry))
    assert spec.reported_on("Cityscapes").miou == 72.25
    assert spec.train_memory_gb == 5.7 and spec.backbone == "R-50-D8"


def test_select_models(toy_zoo):
    specs = load_zoo(toy_zoo)
    assert [s.name for s in select_models(specs, ["all"])] == ["toy_a", "toy_b"]
    assert [s.name for s in select_models(specs, ["toy_b", "toy_a"])] == ["toy_a", "toy_b"]  # zoo order
    assert [s.name for s in select_models(specs, ["*_b"])] == ["toy_b"]
    assert [s.name for s in select_models(specs, ["toy"])] == ["toy_a", "toy_b"]  # family
    with pytest.raises(SegbenchError, match="no model matches 'toy_c'.*did you mean"):
        select_models(specs, ["toy_c"])


def test_spec_hash_ignores_reported_numbers(tmp_path):
    (a,) = load_manifest(write(tmp_path, GOOD, "a.yaml"))
    with_results = GOOD + "  Results: {Dataset: Cityscapes, Metrics: {mIoU: 1.0}}\n"
    (b,) = load_manifest(write(tmp_path, with_results, "b.yaml"))
    (c,) = load_manifest(write(tmp_path, GOOD + "  Test: {size: [512, 1024]}\n", "c.yaml"))
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_random_init_weights_are_reproducible(tmp_path):
    (spec,) = load_manifest(write(tmp_path, GOOD))
    first, second = build_model(spec).state_dict(), build_model(spec).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


# --------------------------------------------------------------------------- Build.callable modules


@pytest.mark.parametrize(
    "source, raised",
    [
        ("def broken(:\n    pass\n", "SyntaxError"),
        ("raise RuntimeError('no GPU driver\\nsecond line')\n", "RuntimeError"),
        ("import sys\nsys.exit(2)\n", "SystemExit"),
        ("import no_such_dependency_xyz\n", "ModuleNotFoundError"),
    ],
)
def test_a_callable_module_that_raises_on_import_is_one_line(tmp_path, monkeypatch, source, raised):
    module = f"raising_on_import_{raised.lower()}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    message = error_of(write(tmp_path, GOOD.replace("toy_models:tiny_segmentor", f"{module}:build")))
    assert "model 'toy'" in message and "field 'Build.callable'" in message
    assert f"module {module!r}" in message and raised in message


def test_callables_in_the_current_directory_import_under_both_entry_styles(tmp_path):
    """`python -m segbench.cli` puts the current directory first on sys.path; the installed `segbench` script puts its bin
    directory there instead. Both must find a builder module in the current directory."""
    work, bin_dir = tmp_path / "work", tmp_path / "bin"
    (work / "zoo").mkdir(parents=True)
    bin_dir.mkdir()
    (work / "my_local_models.py").write_text((Path(__file__).parent / "toy_models.py").read_text())
    (work / "zoo" / "mine.yaml").write_text(GOOD.replace("toy_models:", "my_local_models:"))
    # What pip writes for `segbench = "segbench.cli:main"`: a script whose directory becomes sys.path[0].
    (bin_dir / "segbench").write_text("import sys\nfrom segbench.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in ([sys.executable, "-m", "segbench.cli"], [sys.executable, str(bin_dir / "segbench")]):
        done = subprocess.run([*command, "validate", "--zoo", "zoo"], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        assert "1 model(s) in 1 manifest(s): OK" in done.stdout


def test_a_callable_module_not_found_suggests_pythonpath(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("toy_models:", "no_such_module_xyz:")))
    assert "PYTHONPATH" in message


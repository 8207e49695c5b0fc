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


# --------------------------------------------------------------------------- undecodable and oversized files


def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("- Name: toy\n", "- Name: toy\n  Config: café.py\n").encode("latin-1"))
    message = error_of(path)
    assert "UTF-8" in message


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """Build.kwargs whose aliases expand to width**levels strings, in a file of a few hundred bytes."""
    lines = [f"      l0: &l0 {['lol'] * width}"]
    lines += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return GOOD.replace("tiny_segmentor\n", "options_segmentor\n    kwargs:\n" + "\n".join(lines) + "\n")


def test_yaml_aliases_expanding_into_a_huge_value_are_refused(tmp_path):
    path = write(tmp_path, billion_laughs())
    assert path.stat().st_size < 1000
    message = error_of(path)
    assert "model 'toy'" in message and "field 'Build.kwargs" in message and "aliases" in message


def test_validate_and_bench_agree_on_an_alias_bomb(tmp_path, capsys):
    from segbench.cli import main

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    write(zoo, billion_laughs())
    assert main(["validate", "--zoo", str(zoo)]) == 1
    refused = capsys.readouterr().err
    assert "model 'toy'" in refused
    assert main(["bench", "--zoo", str(zoo), "--output", str(tmp_path / "out"), "--device", "cpu"]) == 1
    assert refused.removeprefix("error: ").strip() in capsys.readouterr().err


def test_aliases_within_the_bound_still_load(tmp_path):
    (spec,) = load_manifest(write(tmp_path, billion_laughs(levels=3, width=10)))
    assert len(spec.build.kwargs["l2"]) == 10 and spec.build.kwargs["l2"][0][0] == ["lol"] * 10


@pytest.mark.parametrize(
    "kwargs, expect",
    [
        ("{x: .nan}", ["field 'Build.kwargs.x'", "finite"]),
        ("{x: [1, -.inf]}", ["field 'Build.kwargs.x[1]'", "finite"]),
        ("{1: 2}", ["field 'Build.kwargs'", "keys must be text"]),
        ("{x: 2020-06-06}", ["field 'Build.kwargs.x'", "date"]),
        ("{x: !!binary aGVsbG8=}", ["field 'Build.kwargs.x'", "bytes"]),
        ("{x: !!set {a: null}}", ["field 'Build.kwargs.x'", "set"]),
        ("{x: &a [*a]}", ["field 'Build.kwargs.x", "refers to itself"]),
        ("{x: " + "9" * 5000 + "}", ["invalid YAML"]),
    ],
)
def test_manifest_values_must_be_plain_json_data(tmp_path, kwargs, expect):
    """Whatever loads must hash and go into a record (strict JSON): no NaN, no dates, no cycles, text keys only."""
    message = error_of(write(tmp_path, GOOD.replace("tiny_segmentor\n", f"tiny_segmentor\n    kwargs: {kwargs}\n")))
    for fragment in expect:
        assert fragment in message


def test_an_alias_chain_nested_too_deep_is_refused(tmp_path):
    chain = "\n".join(f"      d{i}: &d{i} [*d{i - 1}]" for i in range(1, 2000))
    text = GOOD.replace("tiny_segmentor\n", "options_segmentor\n    kwargs:\n      d0: &d0 [1]\n" + chain + "\n")
    message = error_of(write(tmp_path, text))
    assert "field 'Build.kwargs.d" in message and "nested deeper than" in message


# --------------------------------------------------------------------------- model names


BAD_NAMES = [
    "../../escaped_record", "sub/dir/name", "back\\slash", "a" * 201, "pipe|name", "colon:name", "star*", "quote\"d",
    "less<more>", "what?", "tab\tname", "new\nline", "trailing.", "trailing ", " leading", ".hidden", "..", "-option",
    "CON", "nul", "com1.tar", "LPT9", "café", "",
]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_model_name_must_be_a_portable_file_name(tmp_path, name):
    text = GOOD.replace("- Name: toy\n", f"- Name: {json.dumps(name)}\n")
    message = error_of(write(tmp_path, text))
    assert "model 'Models[0]'" in message and "field 'Name'" in message


def test_the_longest_allowed_name_fits_every_file_segbench_writes(tmp_path):
    from segbench.manifest import MAX_NAME_LENGTH
    from segbench.records import record_path, write_record

    name = "n" * MAX_NAME_LENGTH
    (spec,) = load_manifest(write(tmp_path, GOOD.replace("- Name: toy\n", f"- Name: {name}\n")))
    path = record_path(tmp_path / "results", "hw", spec.name, failed=True)
    # The temporary file beside a record is the longest name: ".<record name>.<8 random characters>.tmp".
    assert len(f".{path.name}.12345678.tmp".encode()) <= 255 - 16  # and a margin for suffixes yet to come
    write_record(path, {"model": spec.name})
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_every_shipped_zoo_name_passes_the_name_rule():
    specs = load_zoo(ROOT / "zoo")
    assert len(specs) > 100 and all(s.name for s in specs)


def test_names_that_differ_only_in_case_collide(tmp_path):
    """macOS and Windows file systems ignore case: both records would be one file."""
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("- Name: toy\n", "- Name: TOY\n"), "b.yaml")
    with pytest.raises(SegbenchError, match=r"b\.yaml: model 'TOY': field 'Name': duplicate model name.*case.*a\.yaml"):
        load_zoo(tmp_path)


@pytest.mark.parametrize("command", ["validate", "list", "bench", "render"])
def test_one_name_rule_for_every_command(tmp_path, capsys, command):
    from segbench.cli import main

    zoo, out = tmp_path / "deep" / "zoo", tmp_path / "deep" / "out"
    zoo.mkdir(parents=True)
    write(zoo, GOOD.replace("- Name: toy\n", "- Name: ../../escaped_record\n"))
    output = ["--output", str(out)] if command in ("bench", "render") else []
    extra = ["--device", "cpu", "--images", "1", "--warmup", "0"] if command == "bench" else []
    assert main([command, "--zoo", str(zoo), *output, *extra]) == 1
    assert "field 'Name'" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*escaped_record*"))


# --------------------------------------------------------------------------- Weights: builtin


def test_builtin_weights_belong_to_a_callable_builder(tmp_path):
    assert load_manifest(write(tmp_path, GOOD + "  Weights: builtin\n"))[0].weights == "builtin"
    arch = GOOD.replace("callable: toy_models:tiny_segmentor", "architecture: fcn_resnet")
    assert "field 'Weights'" in error_of(write(tmp_path, arch + "  Weights: builtin\n", "arch.yaml"))
    pinned = GOOD + "  Weights: builtin\n  Weights SHA256: " + "0" * 64 + "\n"
    assert "field 'Weights SHA256'" in error_of(write(tmp_path, pinned, "pinned.yaml"))


def test_a_builder_with_builtin_weights_gets_a_real_miou(tmp_path, synthetic_cityscapes):
    """The builder loads trained weights itself: recorded as `builtin`, and its mIoU is not labelled demo."""
    import shutil

    from segbench.cityscapes import SYNTHETIC_MARKER
    from segbench.cli import main
    from segbench.records import is_demo_accuracy
    from segbench.report import load_frame, render_markdown

    data = tmp_path / "data"
    shutil.copytree(synthetic_cityscapes, data)
    (data / SYNTHETIC_MARKER).unlink()  # stands in for a real Cityscapes copy
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    write(zoo, GOOD + "  Weights: builtin\n  Test: {size: [32, 64]}\n")
    out = tmp_path / "out"
    for flags in ([], ["--weights"]):  # --weights has nothing to download for it
        assert main(["bench", "--zoo", str(zoo), "--output", str(out), "--data-root", str(data), "--device", "cpu",
                     "--images", "1", "--warmup", "0", "--workers", "0", "--force", *flags]) == 0  # fmt: skip
        record = json.loads(next((out / "results").glob("*/toy.json")).read_text())
        assert record["settings"]["weights"] == "builtin"
        assert not is_demo_accuracy(record)
    frame = load_frame(out / "results", zoo)
    assert frame.loc[frame["model"] == "toy", "miou_measured"].item() == record["accuracy"]["miou"]
    page, miou = render_markdown(frame), f"{record['accuracy']['miou']:.2f}"
    assert f"{miou} (" in page and f"{miou} *demo*" not in page


@pytest.mark.parametrize(
    "weights",
    ["/etc/passwd", "~/.ssh/id_rsa", "../secret.pth", "weights/model.pth", "file:///etc/passwd", "ftp://example.org/w.pth",
     "https:///no-host.pth", "C:\\weights\\w.pth"],  # fmt: skip
)
def test_manifest_weights_must_be_a_web_url(tmp_path, weights):
    message = error_of(write(tmp_path, GOOD + f"  Weights: {json.dumps(weights)}\n"))
    assert "model 'toy': field 'Weights': expected an http(s) URL" in message and "--checkpoint" in message


def test_manifest_weights_may_be_http_https_builtin_or_null(tmp_path):
    for weights in ("https://download.openmmlab.com/a/b.pth", "http://example.org:8000/w.pth", "builtin", None):
        (spec,) = load_manifest(write(tmp_path, GOOD + f"  Weights: {json.dumps(weights)}\n"))
        assert spec.weights == weights


def test_a_long_unknown_kwarg_is_shortened_in_the_error(tmp_path):
    key = "k" * 1000  # YAML's longest plain key
    message = error_of(write(tmp_path, GOOD + f"    kwargs: {{{key}: 1}}\n"))
    assert "not an argument of the builder" in message and len(message) < 400, len(message)

"""The trust model: only bench, profile and validate import the code a manifest names (`Build.callable`).

Everything else reads manifests, records and checkpoints as data, so a results folder or a zoo from elsewhere can be
rendered, plotted, listed, exported and compared without running anything in it.
"""

import sys

import pytest

from segbench.cli import main

MARKING_MODULE = "segbench_trust_mark"


@pytest.fixture
def zoo_naming_marking_code(toy_zoo, tmp_path, monkeypatch):
    """The toy zoo, measured, plus an entry whose builder module writes a file when imported."""
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--device", "cpu", "--images", "2",
                 "--warmup", "0", "--no-report"]) == 0  # fmt: skip
    mark = tmp_path / "imported.mark"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{MARKING_MODULE}.py").write_text(
        f"open({str(mark)!r}, 'w').write('imported')\n"
        "from toy_models import tiny_segmentor as build\n"
    )
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, MARKING_MODULE, raising=False)
    (toy_zoo / "marking.yaml").write_text(
        "Models:\n- Name: marking\n  In Collection: Marking\n"
        f"  Build: {{callable: '{MARKING_MODULE}:build'}}\n  Results: {{Dataset: Cityscapes, Metrics: {{mIoU: 1.0}}}}\n"
    )
    return toy_zoo, out, mark


@pytest.mark.parametrize(
    "command",
    [
        ["render"],
        ["render", "--format", "md", "csv", "json", "latex"],  # export
        ["render", "--check"],
        ["plot"],
        ["plot", "--models", "marking", "toy_a"],
        ["list"],
        ["compare"],
    ],
    ids=lambda c: " ".join(c),
)
def test_data_commands_never_import_manifest_named_code(zoo_naming_marking_code, command):
    zoo, out, mark = zoo_naming_marking_code
    if command == ["compare"]:
        argv = ["compare", str(out), str(out)]
    else:
        argv = [*command, "--zoo", str(zoo)] + (["--output", str(out)] if command[0] != "list" else [])
    assert main(argv) in (0, 1)  # render --check exits 1 on a stale page: still no import
    assert not mark.exists() and MARKING_MODULE not in sys.modules


def test_the_mark_appears_when_a_code_command_imports_the_module(zoo_naming_marking_code):
    """The control: validate imports Build.callable modules, and the mark shows it."""
    zoo, _, mark = zoo_naming_marking_code
    assert main(["validate", "--zoo", str(zoo)]) == 0
    assert mark.read_text() == "imported"

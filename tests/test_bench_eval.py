"""The sweep with weights and mIoU: checkpoints, demo labelling, slide timing, and torchrun sharding."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from segbench.cityscapes import CityscapesDataset
from segbench.cli import main
from segbench.evaluate import evaluate
from segbench.inference import InferenceSettings
from segbench.report import load_frame, render_markdown
from toy_models import tiny_segmentor

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--device", "cpu", "--images", "2", "--warmup", "1", "--workers", "0"]


def only_record(out: Path, model: str) -> dict:
    (path,) = (out / "results").glob(f"*/{model}.json")
    return json.loads(path.read_text())


def trained_checkpoint(path: Path) -> Path:
    """An mmsegmentation-style file ({meta, state_dict}) of a toy model with fixed weights."""
    torch.manual_seed(3)
    model = tiny_segmentor(num_classes=4)
    torch.save({"meta": {"note": "test"}, "state_dict": model.state_dict()}, path)
    return path


def test_checkpoint_and_miou_in_the_record_equal_a_direct_evaluation(toy_zoo, synthetic_cityscapes, tmp_path):
    ckpt = trained_checkpoint(tmp_path / "toy_a.pth")
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--checkpoint", str(ckpt),
            "--data-root", str(synthetic_cityscapes), *FAST]  # fmt: skip
    assert main(args) == 0
    record = only_record(out, "toy_a")
    assert record["settings"]["weights"] == str(ckpt)
    assert record["settings"]["evaluation"]["data_root"] == str(synthetic_cityscapes.resolve())

    model = tiny_segmentor(num_classes=4)
    model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    direct = evaluate(model, CityscapesDataset(synthetic_cityscapes), InferenceSettings(test_size=(32, 64)), num_workers=0)
    accuracy = record["accuracy"]
    assert accuracy["confusion"] == direct.confusion.tolist()
    assert accuracy["miou"] == 100 * direct.metrics.miou
    assert accuracy["is_synthetic"] and accuracy["num_images"] == 5

    page = render_markdown(load_frame(out / "results", toy_zoo))
    assert f"{accuracy['miou']:.2f} *demo*" in page  # synthetic data: never shown as a Cityscapes mIoU
    assert "## Per-class IoU (%)" in page
    frame = load_frame(out / "results", toy_zoo)
    assert not frame.loc[frame["model"] == "toy_a", "miou_is_measured"].any()  # plots keep the reported mIoU


def test_a_checkpoint_that_does_not_fit_fails_only_that_model(toy_zoo, tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": tiny_segmentor(num_classes=6).state_dict()}, ckpt)  # toy_a has 4 classes
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--checkpoint", str(ckpt), *FAST]) == 1
    (failed,) = (out / "results").glob("*/toy_a.failed.json")
    message = json.loads(failed.read_text())["error"]["message"]
    assert "other.pth" in message and "toy_a" in message and "classifier.weight" in message


def test_slide_mode_model_is_timed_and_evaluated(toy_zoo, synthetic_cityscapes, tmp_path):
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text().replace(
        "    kwargs: {num_classes: 4}\n  Test:\n    size: [32, 64]",
        "    kwargs: {num_classes: 4}\n  Test:\n    size: [32, 64]\n    mode: slide\n    crop: [16, 32]\n    stride: [12, 24]\n    align_corners: true",
    ))  # fmt: skip
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a",
                 "--data-root", str(synthetic_cityscapes), *FAST]) == 0  # fmt: skip
    record = only_record(out, "toy_a")
    assert record["settings"]["mode"] == "slide" and record["accuracy"]["mode"] == "slide"
    assert len(record["latency"]["samples"]) == 2


def test_torchrun_two_processes_give_the_single_process_matrix(toy_zoo, synthetic_cityscapes, tmp_path):
    common = ["--zoo", str(toy_zoo), "--models", "toy_a", "--data-root", str(synthetic_cityscapes), "--no-report", *FAST]
    assert main(["bench", "--output", str(tmp_path / "one"), *common]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + str(ROOT / "tests"))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         str(ROOT / "bench.py"), "--output", str(tmp_path / "two"), *common],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = only_record(tmp_path / "one", "toy_a"), only_record(tmp_path / "two", "toy_a")
    assert two["accuracy"]["world_size"] == 2 and one["accuracy"]["world_size"] == 1
    assert two["accuracy"]["num_images"] == one["accuracy"]["num_images"] == 5
    assert two["accuracy"]["confusion"] == one["accuracy"]["confusion"]
    assert len(list((tmp_path / "two" / "results").glob("*/*.json"))) == 1  # one rank wrote one record


def test_an_entry_that_reports_another_dataset_is_not_evaluated_on_cityscapes(toy_zoo, synthetic_cityscapes, tmp_path):
    """An ADE20K model (150 classes) has no Cityscapes mIoU: the sweep profiles it and says why it skipped mIoU,
    rather than fail on, or record, predictions of another label set."""
    manifest = toy_zoo / "toy.yaml"
    manifest.write_text(manifest.read_text().replace("Dataset: Cityscapes\n    Metrics: {mIoU: 50.5", "Dataset: ADE20K\n    Metrics: {mIoU: 50.5"))
    assert "Dataset: ADE20K" in manifest.read_text()
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--data-root", str(synthetic_cityscapes), *FAST]) == 0
    skipped, evaluated = only_record(out, "toy_a"), only_record(out, "toy_b")
    assert skipped["status"] == "ok" and "latency" in skipped and "accuracy" not in skipped
    assert skipped["miou_skipped"] == "reports ADE20K only; segbench measures mIoU on Cityscapes"
    assert "accuracy" in evaluated and "miou_skipped" not in evaluated

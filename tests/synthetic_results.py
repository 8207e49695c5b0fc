"""Many plausible records without measuring anything: a zoo manifest and results/ written with write_record.

For the speed test (hundreds of records) and the plot tests (families, two hardware, a clear
Pareto front). Numbers are made up but shaped like real ones: bigger backbones cost more and
score higher; the second hardware is about twice as fast.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from segbench.records import record_path, results_folder, write_record

FAMILIES = ("deeplabv3", "fcn", "pspnet", "upernet", "fpn", "deeplabv3plus")
DEPTHS = {18: (12.0, 0.35, 0.0), 50: (45.0, 1.0, 4.0), 101: (65.0, 1.5, 5.5)}  # params M, cost factor, mIoU bonus
CLASSES = [f"class_{i}" for i in range(19)]


def write_synthetic_results(root: Path, models_per_family: int, hardware: tuple[str, ...], samples: int = 50) -> tuple[Path, Path]:
    """Write root/zoo/synthetic.yaml and root/results/<hw>/<model>.json; returns (zoo dir, output root)."""
    rng = random.Random(0)
    zoo, out = root / "zoo", root / "out"
    zoo.mkdir(parents=True, exist_ok=True)
    models, depths = [], list(DEPTHS)
    for f, family in enumerate(FAMILIES):
        for i in range(models_per_family):
            depth = depths[i % 3]
            name = f"{family}_r{depth}-v{i}_4xb2-80k_cityscapes-512x1024"
            params, cost, bonus = DEPTHS[depth]
            reported = round(70 + f * 0.8 + bonus + rng.uniform(-1, 1), 2)
            models.append({"Name": name, "In Collection": family, "Metadata": {"Architecture": [f"R-{depth}-D8", family],
                           "Batch Size": 8, "Crop Size": [512, 1024], "Schedule": "80k iters", "Memory (GB)": 6.1 * cost},
                           "Results": {"Dataset": "Cityscapes", "Metrics": {"mIoU": reported}}, "Config": f"configs/{name}.py",
                           "Build": {"callable": "toy_models:tiny_segmentor", "kwargs": {"num_classes": 19}}})  # fmt: skip
            for h, hw in enumerate(hardware):
                median = 0.02 * cost * (1 + f * 0.15) * (1 + i * 0.01) / (1 + h)
                record = {
                    "schema_version": 1, "status": "ok", "model": name, "family": family, "collection": family,
                    "environment": {"hardware": hw, "device_type": "cuda", "gpu_name": hw.upper(), "cpu": "Xeon",
                                    "torch": "2.13.0", "cuda": "12.8", "cudnn": 91000, "driver": "570.1", "torch_threads": 8,
                                    "segbench": "0.1.0", "git_commit": "0" * 40, "date": f"2026-01-0{h + 1}T00:00:00+00:00"},
                    "settings": {"input_size": [1024, 2048], "images": samples, "warmup": 5, "batch_size": 1, "dtype": "float32",
                                 "cudnn_benchmark": False, "cudnn_deterministic": True, "input": "synthetic", "weights": "w.pth"},
                    "params": {"inference": int((params + f * 2 + i * 0.3) * 1e6), "total": int((params + f * 2 + i * 0.3 + 2) * 1e6)},
                    "macs": {"fvcore": int(cost * 3e11 * (1 + f * 0.2 + i * 0.02)), "thop": int(cost * 3e11)},
                    "memory": {"measured": True, "peak_allocated_bytes": int(cost * 2**30), "peak_reserved_bytes": int(cost * 1.25 * 2**30)},
                    "latency": {"unit": "s", "samples": [median * rng.lognormvariate(0, 0.03) for _ in range(samples)]},
                    "accuracy": {"miou": reported + rng.uniform(-0.5, 0.5), "iou": [rng.uniform(40, 95) for _ in CLASSES],
                                 "classes": CLASSES, "num_images": 500, "split": "val", "is_synthetic": False},
                }  # fmt: skip
                write_record(out / "results" / hw / f"{name}.json", record)
    (zoo / "synthetic.yaml").write_text(yaml.safe_dump({"Collections": [{"Name": f} for f in FAMILIES], "Models": models}, sort_keys=False))
    return zoo, out


ADE20K_REPORTED = {"ade_small_8xb2-160k_ade20k-512x512": 44.0, "ade_large_8xb2-160k_ade20k-512x512": 48.0}


def add_ade20k_entries(zoo: Path, out: Path, hardware: str) -> None:
    """Two ADE20K entries (reported ADE20K mIoU only, measured at their 512x512 crop) beside a synthetic
    Cityscapes zoo: a second dataset whose mIoU must never share an axis or a ranking with Cityscapes'."""
    template = json.loads(next((out / "results" / hardware).glob("*.json")).read_text())
    models = []
    for i, (name, miou) in enumerate(ADE20K_REPORTED.items()):
        models.append({"Name": name, "In Collection": "Ade", "Metadata": {"Architecture": ["Swin-T", "UPerNet"], "Crop Size": [512, 512]},
                       "Results": {"Dataset": "ADE20K", "Metrics": {"mIoU": miou}, "Source": "made up for tests"},
                       "Build": {"callable": "toy_models:tiny_segmentor", "kwargs": {"num_classes": 150}}, "Test": {"size": [512, 512]}})  # fmt: skip
        record = {k: v for k, v in template.items() if k != "accuracy"} | {"model": name, "family": "ade", "collection": "Ade"}
        record["settings"] = template["settings"] | {"input_size": [512, 512]}
        record["macs"] = {"fvcore": int((i + 1) * 5e10), "thop": int((i + 1) * 5e10)}
        write_record(out / "results" / hardware / f"{name}.json", record)
    (zoo / "ade20k.yaml").write_text(yaml.safe_dump({"Collections": [{"Name": "Ade"}], "Models": models}, sort_keys=False))


def add_published_speeds(zoo: Path, out: Path, hardware: str, protocol: str, published_fps) -> dict[str, float]:
    """Give each synthetic model a published FPS on a V100 under `protocol` at the records' input size (1024x2048), and mark
    `hardware`'s records as timed under `protocol`, moved to that protocol's folder (the other hardware's stay
    protocol-less: mmseg's). `published_fps`
    maps (model, the record's measured FPS) to the figure. Returns the published FPS by model."""
    manifest = zoo / "synthetic.yaml"
    document = yaml.safe_load(manifest.read_text())
    published = {}
    for model in document["Models"]:
        path = out / "results" / hardware / f"{model['Name']}.json"
        record = json.loads(path.read_text())
        samples = record["latency"]["samples"]
        published[model["Name"]] = published_fps(model["Name"], len(samples) / sum(samples))
        model["Metadata"]["Published Speed"] = [{"FPS": published[model["Name"]], "GPU": "V100", "Backend": "PyTorch", "Precision": "fp32",
                                                 "Input": [1024, 2048], "Protocol": protocol, "Source": "made up for tests"}]  # fmt: skip
        record["settings"]["protocol"] = {"name": protocol}
        path.unlink()
        write_record(record_path(out / "results", results_folder(hardware, record["settings"]), model["Name"]), record)
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    return published

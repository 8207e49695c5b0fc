"""Where each timing protocol's time goes: one model timed under every protocol, stage by stage.

Runs `segbench bench --protocol P` for each shipped protocol (or --protocols) on one model, each
into its own output folder, and prints one table row per protocol: the median of every stage that
ran (timed or not) and of the timed span, in ms. The scripts' own counts (500 warm-ups, 2000
repeats, 6 s loops) are replaced by --warmup and --images for every protocol, so the table shows
what each protocol covers, not how long its loop runs. Not a test:

    python benchmarks/protocol_stages.py ddrnet_23-slim_in1k-pre_2xb6-120k_cityscapes-1024x1024 --device cpu
    python benchmarks/protocol_stages.py stdc1_in1k-pre_4xb12-80k_cityscapes-512x1024 --input-size 512x1024 --images 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segbench.cli import main as segbench  # noqa: E402
from segbench.protocols import PROTOCOLS, STAGES  # noqa: E402


def stage_medians(record: dict) -> dict[str, float]:
    """ms: the median of each stage that ran, and of the timed span (`timed`)."""
    latency = record["latency"]
    medians = {stage: 1000 * statistics.median(samples) for stage, samples in latency["stages"].items() if stage != "clock"}
    return medians | {"timed": 1000 * statistics.median(latency["samples"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="one zoo model")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", default="10", help="timed passes under every protocol (default: 10)")
    parser.add_argument("--warmup", default="3", help="warm-up passes under every protocol, or auto (default: 3)")
    parser.add_argument("--input-size", help="HxW (default: the manifest's test size)")
    parser.add_argument("--output", help="keep the records here (default: a temporary folder)")
    args = parser.parse_args()

    root = Path(args.output or tempfile.mkdtemp(prefix="segbench-protocol-stages-"))
    size = ["--input-size", args.input_size] if args.input_size else []
    rows = {}
    for name in args.protocols:
        out = root / name
        status = segbench(["bench", "--models", args.model, "--device", args.device, "--protocol", name, "--images", args.images,
                           "--warmup", args.warmup, "--measure", "latency", "--no-report", "--output", str(out), *size])  # fmt: skip
        found = sorted((out / "results").glob(f"*/{args.model}*.json"))
        record = json.loads(found[0].read_text()) if found else None
        if status != 0 or record is None or record.get("status") != "ok":
            reason = record["error"]["message"] if record and "error" in record else f"exit status {status}"
            print(f"{name}: failed: {reason}", file=sys.stderr)
            continue
        rows[name] = (stage_medians(record), record["settings"]["protocol"]["timed"], record.get("backend", {}).get("providers"))

    columns = [*STAGES, "timed"]
    print(f"\n{args.model}, {args.device}, medians in ms of {args.images} passes after {args.warmup} warm-up (records in {root})\n")
    print("| protocol | timed span | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, (medians, timed, providers) in rows.items():
        span = " → ".join(STAGES[STAGES.index(timed[0]) : STAGES.index(timed[1]) + 1])
        cells = [f"{medians[c]:.2f}" if c in medians else "—" for c in columns]
        print(f"| {name}{' (' + ', '.join(providers) + ')' if providers else ''} | {span} | " + " | ".join(cells) + " |")
    return 0 if len(rows) == len(args.protocols) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Does every zoo architecture export to ONNX, and does ONNX Runtime give eager's logits?

One entry per distinct `Build.architecture` (the smallest: lowest depth, then name), built with
random weights and random BatchNorm statistics and affine parameters (so that a mishandled
normalization shows), in eval mode, at a tiny input (1, 3, 64, 128), exported the way
`--backend onnxruntime` exports it (segbench.backends.forward_backend) and run on the CPU. Writes a
markdown table to benchmarks/onnx_parity.md, rewritten after each architecture so that a partial
run leaves its rows. Not a test (a few minutes on 2 cores):

    nice python benchmarks/onnx_parity.py
    python benchmarks/onnx_parity.py --architectures stdc ddrnet --output /tmp/parity.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # toy_models: BatchNorm statistics as a trained model has them

from segbench.backends import ONNX_TOLERANCE, forward_backend, onnx_parity_error  # noqa: E402
from segbench.build import build_model  # noqa: E402
from segbench.errors import SegbenchError, one_line  # noqa: E402
from segbench.manifest import load_zoo  # noqa: E402
from toy_models import randomize_batchnorms  # noqa: E402

SIZE = (64, 128)


def smallest_per_architecture(zoo: Path) -> dict:
    chosen = {}
    for spec in sorted(load_zoo(zoo), key=lambda s: (s.build.kwargs.get("depth", 0), s.name)):
        chosen.setdefault(spec.build.architecture or spec.build.callable, spec)
    return dict(sorted(chosen.items()))


def parity_row(spec) -> dict:
    torch.manual_seed(0)
    model = build_model(spec).eval()
    randomize_batchnorms(model)
    image = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        eager = model(image)
    started = time.perf_counter()
    try:
        forward, info = forward_backend(model, "onnxruntime", image, torch.device("cpu"), name=spec.name)
        exported = forward(image)
    except SegbenchError as exc:
        return {"exported": False, "reason": one_line(str(exc), 300), "seconds": time.perf_counter() - started}
    error = onnx_parity_error(eager, exported)
    return {
        "exported": True,
        "exporter": info["exporter"].removeprefix("torch.onnx "),
        "opset": info["opset"],
        "max_abs_diff": (exported - eager).abs().max().item(),
        "logit_scale": eager.abs().max().item(),
        "error": error,
        "ok": error <= ONNX_TOLERANCE,
        "seconds": time.perf_counter() - started,
    }


def markdown(rows: dict, specs: dict) -> str:
    import onnxruntime

    exported = [r for r in rows.values() if r["exported"]]
    lines = [
        "# ONNX export and ONNX Runtime parity, one entry per zoo architecture",
        "",
        f"`python benchmarks/onnx_parity.py`: torch {torch.__version__}, onnxruntime {onnxruntime.__version__} "
        f"(CPUExecutionProvider), {platform.machine()}. Random weights and BatchNorm statistics, eval mode, input 1×3×{SIZE[0]}×{SIZE[1]} (N×C×H×W).",
        f"Parity: max |ONNX Runtime − eager| ≤ {ONNX_TOLERANCE:g} × max(1, max |eager|) (the *error* column is the left side over the right's scale).",
        f"{len(exported)} of {len(rows)} architectures export; "
        f"{sum(r['ok'] for r in exported)} of those are within tolerance.",
        "",
        "| architecture | entry | exported | exporter | opset | max abs diff | max \\|logit\\| | error | within tolerance | seconds | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, row in rows.items():
        name = specs[arch].name
        if row["exported"]:
            lines.append(
                f"| {arch} | {name} | yes | {row['exporter']} | {row['opset']} | {row['max_abs_diff']:.2e} | {row['logit_scale']:.3g} | "
                f"{row['error']:.2e} | {'yes' if row['ok'] else '**no**'} | {row['seconds']:.1f} | |"
            )
        else:
            reason = row["reason"].replace("|", "\\|")
            lines.append(f"| {arch} | {name} | **no** | | | | | | | {row['seconds']:.1f} | {reason} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ROOT / "zoo")
    parser.add_argument("--architectures", nargs="*", help="only these (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "onnx_parity.md")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = smallest_per_architecture(args.zoo)
    if args.architectures:
        specs = {arch: spec for arch, spec in specs.items() if arch in args.architectures}
    rows: dict = {}
    for arch, spec in specs.items():
        rows[arch] = parity_row(spec)
        print(arch, {k: v for k, v in rows[arch].items()}, flush=True)
        args.output.write_text(markdown(rows, specs))
    failed = [arch for arch, row in rows.items() if row["exported"] and not row["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

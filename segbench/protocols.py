"""Timing protocols: what one timed sample covers, and under which flags, as each public speed script times it.

The speeds in papers and model zoos were measured by different scripts, and most failed
reproductions time something else than the paper did (forward only or with argmax, BatchNorm
folded or not, cudnn.benchmark on or off). A protocol names one such setting so that a record says
which it followed, the page can put a published figure beside a measurement of the same kind, and
`compare` never pairs two different ones.

A prediction runs in stages: copy_in (the uint8 image to the device), preprocess (normalize),
forward (the network; every window in slide mode), resize (logits to the input size), argmax,
copy_out (labels, or the last stage's output, back to the host). A protocol times one contiguous
span of them; stages before the span run untimed, stages after it do not run at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from segbench.errors import SegbenchError

STAGES = ("copy_in", "preprocess", "forward", "resize", "argmax", "copy_out")
BACKENDS = ("eager", "compile", "onnxruntime")
AUTO = "auto"
"""A warm-up that runs until the latency is steady (timing.steady_warmup) instead of a fixed count."""


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str  # the script whose loop this follows
    timed: tuple[str, str] = ("forward", "argmax")  # first and last stage of the timed span
    resize_mode: str = "bilinear"  # how the resize stage brings logits to the input size
    fold_bn: bool = False  # BatchNorm folded into the preceding conv / linear before timing
    cudnn_benchmark: bool = False
    warmup: int | str | None = None  # a count, AUTO, or None: segbench's default for the device (runner.WARMUP)
    images: int | None = 200  # timed predictions; None: as many as fill min_seconds
    min_seconds: float | None = None  # timed for at least this long, the count calibrated first
    sync_each: bool = True  # synchronize around every prediction; False: one synchronization after a back-to-back loop
    precision: str = "fp32"
    backend: str = "eager"
    notes: str = ""
    overrides: tuple[str, ...] = field(default=())  # fields the user changed on the command line

    def __post_init__(self) -> None:
        first, last = self.timed
        if first not in STAGES or last not in STAGES or STAGES.index(first) > STAGES.index(last):
            raise ValueError(f"protocol {self.name!r}: timed must be two stages in order from {STAGES}, got {self.timed}")
        if "forward" not in self.stages_timed():
            raise ValueError(f"protocol {self.name!r}: the timed span must include forward, got {self.timed}")
        if self.backend not in BACKENDS:
            raise ValueError(f"protocol {self.name!r}: backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.resize_mode not in ("bilinear", "nearest"):
            raise ValueError(f"protocol {self.name!r}: resize_mode must be bilinear or nearest, got {self.resize_mode!r}")
        if (self.images is None) == (self.min_seconds is None):
            raise ValueError(f"protocol {self.name!r}: give exactly one of images and min_seconds")

    def stages_timed(self) -> tuple[str, ...]:
        first, last = self.timed
        return STAGES[STAGES.index(first) : STAGES.index(last) + 1]

    def stages_run(self) -> tuple[str, ...]:
        """Every stage that runs: the timed span and those before it."""
        return STAGES[: STAGES.index(self.timed[1]) + 1]

    def with_overrides(self, **changes: Any) -> Protocol:
        """This protocol with the user's changes (None values ignored), each changed field named in `overrides`."""
        changed = {key: value for key, value in changes.items() if value is not None and getattr(self, key) != value}
        if "images" in changed:
            changed["min_seconds"] = None
        return replace(self, **changed, overrides=tuple(sorted(set(self.overrides) | set(changed)))) if changed else self

    def as_settings(self) -> dict[str, Any]:
        settings = asdict(self)
        settings["timed"] = list(self.timed)
        settings["overrides"] = list(self.overrides)
        return settings


_DDRNET_LOOP = "10 warm-ups; 100 iterations, doubled until they take 1 s, give the count that fills 6 s, then timed"

PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            "mmseg",
            source="open-mmlab/mmsegmentation tools/analysis_tools/benchmark.py (tools/benchmark.py in 0.x)",
            warmup=None,
            notes="segbench's default: forward, resize to the input and argmax; 5 warm-ups on CUDA; 200 images",
        ),
        Protocol(
            "ddrnet",
            source="ydhongHIT/DDRNet segmentation/DDRNet_23_slim_eval_speed.py; XuJiacong/PIDNet models/speed/pidnet_speed.py",
            timed=("forward", "forward"),
            fold_bn=True,
            warmup=10,
            images=None,
            min_seconds=6.0,
            sync_each=False,
            notes="forward only, output left at the network's stride; BatchNorm removed (folded here); " + _DDRNET_LOOP,
        ),
        Protocol(
            "stdc",
            source="MichaelFan01/STDC-Seg latency/run_latency_stages.py",
            timed=("forward", "resize"),
            resize_mode="nearest",
            cudnn_benchmark=True,
            warmup=10,
            images=None,
            min_seconds=6.0,
            sync_each=False,
            notes="forward and nearest upsampling to the input, no argmax; cudnn.benchmark on; " + _DDRNET_LOOP,
        ),
        Protocol(
            "hardnet",
            source="PingoLH/FCHarDNet validate.py",
            timed=("forward", "resize"),
            fold_bn=True,
            cudnn_benchmark=True,
            warmup=1,
            images=500,
            notes="forward with the model's own upsampling, argmax excluded; BatchNorm fused; cudnn.benchmark on; "
            "the first image's pass untimed, then each of 500 val images timed between synchronizations",
        ),
        Protocol(
            "ppliteseg",
            source="PaddlePaddle/PaddleSeg deploy/python/infer_onnx_trt.py",
            timed=("forward", "resize"),
            warmup=500,
            images=2000,
            sync_each=False,
            backend="onnxruntime",
            notes="the exported network and upsampling, no argmax; 500 warm-ups, 2000 repeats; "
            "ONNX -> TensorRT fp32 there, ONNX Runtime with the best execution provider here",
        ),
        Protocol(
            "paddleseg",
            source="PaddlePaddle/PaddleSeg README speed table (deploy/python/infer.py --benchmark on an exported model)",
            timed=("forward", "copy_out"),
            backend="onnxruntime",
            warmup=5,
            images=100,
            notes="infer.py's inference time: the exported model, whose graph ends in upsampling and argmax "
            "(export's default), and copying the labels to the host; 5 warm-ups, then each image timed; "
            "Paddle Inference + TensorRT fp32 there, ONNX Runtime with the best execution provider here",
        ),
    )
}
DEFAULT = "mmseg"


def get_protocol(name: str) -> Protocol:
    """The shipped protocol of this name; an unknown name is a one-line error listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise SegbenchError(f"--protocol: unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


def protocol_from_settings(settings: dict[str, Any]) -> Protocol:
    """A Protocol back from its as_settings() form (the isolated child process gets it so)."""
    return Protocol(**settings | {"timed": tuple(settings["timed"]), "overrides": tuple(settings["overrides"])})


def protocol_name(settings: dict[str, Any]) -> str:
    """The protocol a record's settings followed; records made before protocols existed followed mmseg's."""
    protocol = settings.get("protocol")
    return protocol["name"] if isinstance(protocol, dict) and "name" in protocol else DEFAULT

"""Toy models for the sweep tests (`Build.callable: sweep_models:...`): slow ones, so that a test can act while a
sweep is measuring them, and ones whose allocation fails the way CPU and C++ allocators report it."""

import os
import time

from toy_models import TinySegmentor


class SlowSegmentor(TinySegmentor):
    """TinySegmentor whose every forward pass sleeps `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(num_classes=4)
        self.delay = delay

    def forward(self, x):
        time.sleep(self.delay)
        return super().forward(x)


def slow_segmentor(tag: str, delay: float = 0.2) -> SlowSegmentor:
    """Appends `<tag> <pid>` to $SWEEP_BUILD_LOG when built: a test can count builds and find the measuring process."""
    log = os.environ.get("SWEEP_BUILD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{tag} {os.getpid()}\n")
    return SlowSegmentor(delay)


def cpu_alloc_failing_segmentor():
    """Raises what c10's CPU allocator raises when an allocation fails."""
    raise RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory: you tried to allocate 68719476736 bytes."
    )


def exiting_segmentor(code: int = 3):
    """Ends its process at once, as a segfault in a kernel would: no exception, no record."""
    os._exit(code)

"""A wall-clock budget for a benchmark run, and the estimates that decide what still fits in it.

A run with a fixed allowance of machine time (``benchmarks/gpu_suite.py``: eight minutes of an H200)
asks before each measurement whether its estimate fits in what is left, and skips it otherwise,
saying why. Estimates start from stated assumptions (ours: the achieved TFLOP/s of a forward
pass and the seconds a ``torch.compile`` needs per transformer block) and are corrected by what
the run has measured so far: the slowest rate seen and the largest compile overrun count, so an
estimate errs towards skipping.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Estimator:
    """Seconds a measurement will take, from its FLOPs and from the transformer blocks a compile traces.

    ``tflops``: the achieved TFLOP/s assumed for the first measurements (ours: 30 % of the card's
    stated peak in the suite); ``compile_base_s`` and ``compile_per_block_s``: seconds of one
    ``torch.compile`` of a model (ours: 20 s and 1.5 s per block for inductor on a data-centre card,
    0 and a fraction of a second for dynamo tracing alone). Both are replaced by what is observed.
    """

    tflops: float
    compile_base_s: float
    compile_per_block_s: float
    compile_factor: float = 1.0
    observed_tflops: list[float] = field(default_factory=list)

    def run_seconds(self, gflops: float) -> float:
        """Seconds of work of ``gflops`` (a whole measurement: every call, every image) at the slowest
        rate seen so far, or the assumed one before anything was measured."""
        rate = min(self.observed_tflops) if self.observed_tflops else self.tflops
        return gflops / 1e3 / rate

    def compile_seconds(self, blocks: int) -> float:
        """Seconds of one compile of a model with ``blocks`` transformer blocks."""
        return (self.compile_base_s + self.compile_per_block_s * blocks) * self.compile_factor

    def observe_run(self, gflops: float, seconds: float) -> None:
        """Record a measurement that did ``gflops`` of work in ``seconds``."""
        if gflops > 0 and seconds > 0:
            self.observed_tflops.append(gflops / 1e3 / seconds)

    def observe_compile(self, blocks: int, seconds: float) -> None:
        """Record a compile of ``blocks`` blocks that took ``seconds``; later estimates scale by the
        largest ratio of observed to estimated seen."""
        estimate = self.compile_base_s + self.compile_per_block_s * blocks
        if estimate > 0:
            self.compile_factor = max(self.compile_factor, seconds / estimate)


@dataclass
class Budget:
    """``seconds`` of wall-clock time from construction, ``reserve`` of them kept for writing results.

    ``fits(estimate)`` is True while ``estimate`` seconds still end before the reserve; ``skip_reason``
    says, for a table, why something that does not fit was left out.
    """

    seconds: float
    reserve: float = 10.0
    clock: Callable[[], float] = time.monotonic
    start: float = field(init=False)

    def __post_init__(self) -> None:
        if self.seconds <= self.reserve:
            raise ValueError(f"a budget of {self.seconds:g} s leaves nothing after the {self.reserve:g} s kept "
                             f"for writing the results: give more seconds")
        self.start = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def left(self) -> float:
        """Seconds left before the reserve."""
        return self.seconds - self.reserve - self.elapsed

    def fits(self, estimate: float) -> bool:
        return estimate <= self.left

    def skip_reason(self, estimate: float) -> str:
        return (f"skipped: needs about {estimate:.0f} s, {max(self.left, 0.0):.0f} s of the {self.seconds:.0f} s "
                f"budget left")

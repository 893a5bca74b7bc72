"""What the harness asks of a device, declared: the timing hooks (`Ops`) and the schedule that
decides when warm-up and timing are over (`Schedule`). `measure.local.DeviceOps` (CPU, GPU),
`measure.distributed.RankOps` (a rank of several) and `measure.xla.XlaOps` implement them; the
harness's loop is the same for all three.
"""

from __future__ import annotations

from typing import Any, Protocol


class Schedule(Protocol):
    timeout: float | None  # seconds for the whole cell; None: the schedule counts, no clock

    def block_steps(self, step_s: float) -> int:
        """Steps per block, from the first step's seconds."""

    def warmup_over(self, blocks: int, elapsed_s: float) -> bool:
        """Whether warm-up must end now (even if not warm)."""

    def warm(self, block_s: float, previous_s: float, compiled: bool) -> bool:
        """Whether the block just run says the device is warm."""

    def timing_done(self, samples: list[float], timed_s: float) -> bool:
        """Whether the timed blocks so far are enough."""


class Ops(Protocol):
    def schedule(self, budget: Any) -> Schedule: ...

    def start(self) -> None:
        """A timed block begins."""

    def stop(self) -> float:
        """The block ends once the device is done: its seconds."""

    def after_step(self) -> None:
        """What ends a step (XLA: cutting the lazy graph)."""

    def wrap_model(self, model: Any, training: bool) -> Any:
        """The model as the step calls it (DDP on several ranks)."""

    def agree(self, value: Any) -> Any:
        """A decision every process takes alike (rank 0's; itself on one device)."""

    def optimizer_step(self, optimizer: Any, scaler: Any) -> None: ...

    def barrier(self) -> None:
        """Wait, after warm-up, for whatever else times with this process."""

    def compile_count(self) -> int:
        """Graphs compiled so far (warm-up waits for it to stop growing where it counts)."""

    def open_window(self) -> None:
        """The timed window begins."""

    def close_window(self) -> Any:
        """The timed window ends: None, or what it found (`measure.xla.WindowCheck`)."""

    def host_timing(self) -> dict | None:
        """The host's side of the timed blocks, where the device measures it (CUDA)."""

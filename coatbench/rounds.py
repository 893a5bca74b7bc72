"""The order of a sweep: every cell once per round, interleaved in an order drawn per round.

On a shared CPU whole runs wander far more than the blocks inside one, and the first cell a
process measures reads slow (7-15% in four of five one-process sweeps of CoAtNet-2 seen on the
2-core VM, issue 13). Measured one after another in a fixed order, a variant then gains or
loses against its baseline by where it sat. So (after Kalibera & Jones, "Rigorous
benchmarking in reasonable time"):
- each setting's cells are measured in R rounds, each round in an order drawn from the seed,
  so that position cannot favour one variant;
- an untimed warm-up copy of the setting's first cell runs before it in every round, so that
  the process's first timed cell is not its first cell;
- in round 0 the setting's baseline is measured first and again last: if the two disagree,
  the machine is order-sensitive, and the report says so (the position self-test);
- the change of a variant is computed from ratios within rounds, where both ran side by side.
On several devices, a round's cells of one device count run together (each count is a launch
of its own processes), in an order drawn per round, and so is the order of the counts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from coatbench.harness import Cell
from coatbench.results import FIRST, LAST

WARMUP_POSITION = -1


@dataclass(frozen=True)
class Slot:
    """One measurement of a sweep: a cell at a place in the order of one round."""

    cell: Cell
    group: int  # the setting the cell belongs to (its cells are interleaved with each other)
    round: int
    position: int  # 0-based within the group's order in this round; WARMUP_POSITION: untimed copy
    self_test: str = ""  # FIRST or LAST: the baseline at either end of the self-test round

    @property
    def timed(self) -> bool:
        return self.position != WARMUP_POSITION


def schedule(groups: Sequence[Sequence[Cell]], rounds: int, seed: int, warmup: bool = True) -> tuple[Slot, ...]:
    """Every slot of a sweep, in the order they run: round by round, and within a round group
    by group. A group's first cell is its baseline: in round 0 it is measured first and last.
    `warmup`: an untimed copy of each group's first cell opens its round (pointless where every
    cell starts processes of its own, as on XLA)."""
    slots: list[Slot] = []
    for round_ in range(rounds):
        for group, cells in enumerate(groups):
            order = list(cells)
            draw = random.Random(f"{seed}/{group}/{round_}")
            draw.shuffle(order)
            # Cells of one device count together (a launch of ranks each: `sweep.launches`),
            # those counts in an order drawn too.
            counts = sorted({cell.devices for cell in order})
            draw.shuffle(counts)
            order.sort(key=lambda cell: counts.index(cell.devices))
            if round_ == 0:
                order.remove(cells[0])
                order.insert(0, cells[0])
            if warmup:
                slots.append(Slot(order[0], group, round_, WARMUP_POSITION))
            slots += [
                Slot(cell, group, round_, i, FIRST if round_ == 0 and i == 0 else "") for i, cell in enumerate(order)
            ]
            if round_ == 0:
                slots.append(Slot(cells[0], group, round_, len(order), LAST))
    return tuple(slots)

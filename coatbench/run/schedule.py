"""The order of a sweep: every cell once per round, interleaved in an order drawn per round.

On a shared CPU whole runs wander far more than the blocks inside one, and the first cell a
process measures reads slow (7-15% in four of five one-process sweeps of CoAtNet-2 seen on the
2-core VM, issue 13). Measured one after another in a fixed order, a variant then gains or
loses against its baseline by where it sat. So (after Kalibera & Jones, "Rigorous
benchmarking in reasonable time"):
- each setting's cells are measured in rounds, each round in an order drawn from the seed,
  so that position cannot favour one variant;
- an untimed warm-up copy of the setting's first cell runs before it in every round, so that
  the process's first timed cell is not its first cell;
- in every round the baseline is measured a second time at a drawn place of its own (the A/A
  control, `Trial.replicate` 1): its change against the baseline is a variant's that cannot
  differ, computed by the same code, so where it does differ the report says so (`aa_cells`
  says which cells);
- the change of a variant is computed from ratios within rounds, where both ran side by side.
On several devices, a round's cells of one device count run together (each count is a launch
of its own processes), in an order drawn per round, and so is the order of the counts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from coatbench.measure.harness import Cell

WARMUP_POSITION = -1


@dataclass(frozen=True)
class Slot:
    """One measurement of a sweep: a cell at a place in the order of one round."""

    cell: Cell
    group: int  # the setting the cell belongs to (its cells are interleaved with each other)
    round: int
    position: int  # 0-based within the group's order in this round; WARMUP_POSITION: untimed copy
    replicate: int = 0  # 1: the A/A control's second measurement of the cell in this round

    @property
    def timed(self) -> bool:
        return self.position != WARMUP_POSITION


def aa_cells(group: Sequence[Cell], replicated: bool, skip: Collection[Cell] = ()) -> list[Cell]:
    """The cells of a group (its baseline's config first) that are measured twice a round. With a
    replicate row, every cell of the baseline; else, so that every mode (and execution and device
    count) has one, the baseline at its largest per-core batch, the one where a step is least
    launch-bound, or the next below it where that one ran out of memory (`skip`)."""
    baseline = [c for c in group if c.config == group[0].config and c not in skip]
    if replicated:
        return baseline
    largest: dict[tuple, Cell] = {}
    for cell in baseline:
        key = (cell.mode, cell.execution, cell.devices)
        if key not in largest or cell.batch_size > largest[key].batch_size:
            largest[key] = cell
    return list(largest.values())


def moved_copy(
    groups: Sequence[Sequence[Cell]], slot: Slot, skip: Collection[Cell], replicated: Collection
) -> Slot | None:
    """An A/A copy whose cell ran out of memory (`skip`) moved to the cell that `aa_cells` now
    chooses for its mode; None where there is none, or where every cell has its own copy (a
    replicate row)."""
    cells = groups[slot.group]
    if cells[0].config in replicated:
        return None
    key = (slot.cell.mode, slot.cell.execution, slot.cell.devices)
    now = [c for c in aa_cells(cells, False, skip) if (c.mode, c.execution, c.devices) == key]
    return dataclasses.replace(slot, cell=now[0]) if now else None


def round_slots(
    groups: Sequence[Sequence[Cell]],
    round_: int,
    seed: int,
    *,
    replicated: Collection = (),
    skip: Collection[Cell] = (),
    only: Collection[Cell] | None = None,
    warmup: bool = True,
) -> list[Slot]:
    """The slots of one round, group by group: each group's cells (those in `only`, when given;
    none in `skip`) and their A/A copies (`aa_cells`; `replicated` holds the configs of groups
    with a replicate row), in an order drawn from the seed, the group and the round. `warmup`:
    an untimed copy of the first cell opens each group's round (pointless where every cell
    starts processes of its own, as on XLA)."""
    slots: list[Slot] = []
    for group, cells in enumerate(groups):
        copies = aa_cells(cells, cells[0].config in replicated, skip)
        chosen = [c for c in cells if c not in skip and (only is None or c in only)]
        if only is not None:  # an A/A copy goes with the cells of its mode (every cell of it, replicated)
            kinds = {(c.mode, c.execution, c.devices) for c in chosen}
            mine = cells[0].config in replicated
            copies = [c for c in copies if (c in chosen if mine else (c.mode, c.execution, c.devices) in kinds)]
        order = [(cell, 0) for cell in chosen] + [(cell, 1) for cell in copies]
        if not chosen:
            continue
        draw = random.Random(f"{seed}/{group}/{round_}")
        draw.shuffle(order)
        # Cells of one device count together (a launch of ranks each: `run.sweep.launches`), those
        # counts in an order drawn too.
        counts = sorted({cell.devices for cell, _ in order})
        draw.shuffle(counts)
        order.sort(key=lambda entry: counts.index(entry[0].devices))
        if warmup:
            slots.append(Slot(order[0][0], group, round_, WARMUP_POSITION))
        slots += [Slot(cell, group, round_, i, replicate) for i, (cell, replicate) in enumerate(order)]
    return slots


def schedule(
    groups: Sequence[Sequence[Cell]], rounds: int, seed: int, warmup: bool = True, replicated: Collection = ()
) -> tuple[Slot, ...]:
    """Every slot of `rounds` rounds (`round_slots`), in the order they run."""
    every = (round_slots(groups, r, seed, replicated=replicated, warmup=warmup) for r in range(rounds))
    return tuple(slot for slots in every for slot in slots)

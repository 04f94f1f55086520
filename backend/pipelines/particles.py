"""Several particles in one job: each its own field and seed, optimised in turn.

ProlificDreamer optimises n particles of the 3D distribution together, and its LoRA learns the
renders of all of them. Here each particle is an ordinary `distill` run (its own field,
generator and Adam state) over the same method object, and `interleave` advances the runs one
step at a time, round robin, so the method's shared state (VSD's LoRA) sees every particle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from protocol.messages import Preview, Progress


def particle_name(name: str, index: int, count: int) -> str:
    """Mesh name of particle `index` (0-based): `name` alone, or `<name>_p1`, `<name>_p2` ..."""
    return name if count == 1 else f"{name}_p{index + 1}"


def interleave(runs: list[Iterator[Progress | Preview]]) -> Iterator[Progress | Preview]:
    """Run the particles' loops (of equal length) step by step in turn until all end.

    Progress is counted over all particles (step = steps done by all, total = runs x steps);
    each run's own ETA already covers the others, as its clock runs while they step. A preview
    keeps its particle's picture and carries the combined step.
    """
    pending = list(runs)
    done = 0
    while pending:
        for run in list(pending):
            for event in run:
                if isinstance(event, Progress):
                    done += 1
                    yield replace(event, step=done, total=event.total * len(runs))
                    break
                yield replace(event, step=done)
            else:
                pending.remove(run)

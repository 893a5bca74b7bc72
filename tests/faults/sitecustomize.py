"""Fault injection for the tests, never shipped: a process started with this folder on its
PYTHONPATH and COATBENCH_FAULT set runs a hook before each step that a rank of a `--devices N`
group measures (`tests.conftest.fault_env` sets both).

- "delay:RANK:SECONDS": that rank sleeps before every step;
- "kill:RANK:STEP": that rank's process is killed (SIGKILL) before the given step.

Python imports `sitecustomize` at start-up (the `site` module), so the hook reaches the rank
processes that torchrun starts. It wraps `coatbench.harness.measure` as that module is first
imported, in processes that torchrun made a rank (RANK is set), before `coatbench.rank` binds it.
"""

import importlib.abc
import importlib.util
import os
import signal
import sys
import time

SPEC = os.environ.get("COATBENCH_FAULT", "")


def hook(rank: int):
    """The `before_step` hook that SPEC asks of `rank`, or None."""
    kind, target, value = SPEC.split(":")
    if int(target) != rank:
        return None
    if kind == "delay":
        return lambda step: time.sleep(float(value))
    if kind == "kill":

        def kill(step: int) -> None:
            if step == int(value):
                os.kill(os.getpid(), signal.SIGKILL)

        return kill
    raise ValueError(f"COATBENCH_FAULT={SPEC!r}: give delay:RANK:SECONDS or kill:RANK:STEP")


class FaultyHarness(importlib.abc.MetaPathFinder):
    """Finds `coatbench.harness` as usual, and wraps its `measure` once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "coatbench.harness":
            return None
        sys.meta_path.remove(self)  # find the real module, once
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            measure, before = module.measure, hook(int(os.environ["RANK"]))

            def measure_with_fault(*args, before_step=None, **kwargs):
                return measure(*args, before_step=before_step or before, **kwargs)

            module.measure = measure_with_fault

        spec.loader.exec_module = exec_module
        return spec


if SPEC and "RANK" in os.environ:
    sys.meta_path.insert(0, FaultyHarness())

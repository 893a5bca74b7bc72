"""Fault injection for the tests, never shipped: a process started with this folder on its
PYTHONPATH and COATBENCH_FAULT set runs a hook before each step that a child of the sweep
(`coatbench.run.child`) measures (`tests.conftest.fault_env` sets both). A child's rank is
torchrun's RANK, 0 in a one-process child.

- "delay:RANK:SECONDS": that rank sleeps before every step;
- "kill:RANK:STEP": that rank's process is killed (SIGKILL) before the given step of each job;
- "killjob:RANK:JOB": killed before the first step of the JOB-th job its process measures
  (0-based: the child that takes over the jobs after it counts from 0 again).

Python imports `sitecustomize` at start-up (the `site` module), so the hook reaches the children
that the sweep and torchrun start. It wraps `coatbench.measure.harness.measure` as that module is
first imported, in a child (COATBENCH_CHILD_TOKEN is set), before `coatbench.run.child` binds it.
"""

import importlib.abc
import importlib.util
import os
import signal
import sys
import time

SPEC = os.environ.get("COATBENCH_FAULT", "")


def hook(rank: int, job: int):
    """The `before_step` hook that SPEC asks of `rank` for its process's `job`-th job, or None."""
    kind, target, value = SPEC.split(":")
    if int(target) != rank:
        return None
    if kind == "killjob":
        return (lambda step: os.kill(os.getpid(), signal.SIGKILL)) if job == int(value) else None
    if kind == "delay":
        return lambda step: time.sleep(float(value))
    if kind == "kill":

        def kill(step: int) -> None:
            if step == int(value):
                os.kill(os.getpid(), signal.SIGKILL)

        return kill
    raise ValueError(f"COATBENCH_FAULT={SPEC!r}: give delay:RANK:SECONDS, kill:RANK:STEP or killjob:RANK:JOB")


class FaultyHarness(importlib.abc.MetaPathFinder):
    """Finds `coatbench.measure.harness` as usual, and wraps its `measure` once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "coatbench.measure.harness":
            return None
        sys.meta_path.remove(self)  # find the real module, once
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            measure, jobs = module.measure, []
            rank = int(os.environ.get("RANK", 0))

            def measure_with_fault(*args, before_step=None, **kwargs):
                jobs.append(None)
                return measure(*args, before_step=before_step or hook(rank, len(jobs) - 1), **kwargs)

            module.measure = measure_with_fault

        spec.loader.exec_module = exec_module
        return spec


if SPEC and "COATBENCH_CHILD_TOKEN" in os.environ:
    sys.meta_path.insert(0, FaultyHarness())

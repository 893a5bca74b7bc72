"""coatbench's CoAtNet against timm's, side by side in one process with one harness.

For each model, mode and per-core batch size, both implementations are timed eager and
compiled, where compiled means the same treatment for both: torch.compile of every block
(regional), then the whole step (forward, backward, SGD) captured as one CUDA graph
(coatbench's `compile+cuda-graphs`). Cells are saved to a JSON Lines file as they finish
(`--resume` skips those already there) and the Markdown table is re-rendered after each.

Differences between the two, kept as they are: timm's `coatnet_N_224` configs use stride-2
depthwise downsampling, avg-pool shortcuts and an extra pre-logits layer (so their FLOPs
differ; MFU uses each model's own count); timm's fused attention does not compile on torch
2.11 (its relative bias as the attention mask fails with "(*bias): last dimension must be
contiguous"), so its compiled cells use its unfused attention and its eager cells its
fused one, each its best working path.

    python benchmarks/vs_timm.py [--models 2,0,3] [--batch-sizes 128,32,256]
        [--implementations timm,coatbench] [--executions eager,compile+cuda-graphs] [--again]
        --out results/h100/speed.jsonl --markdown results/h100/speed.md
    python benchmarks/vs_timm.py --render results/h100/speed.jsonl --markdown results/h100/speed.md   # no GPU needed
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

IMPLEMENTATIONS = ("timm", "coatbench")
EXECUTIONS = ("eager", "compile+cuda-graphs")
MODES = ("train", "infer")


def timm_units(model):
    """timm's MaxxVit in the regions coatbench compiles its own model in: stem, each block, head."""
    return [model.stem, *(block for stage in model.stages for block in stage.blocks), model.head]


def build(implementation: str, n: int, execution: str, device):
    from coatbench.config import build_config
    from coatbench.model import build_model

    if implementation == "coatbench":
        return build_model(build_config(f"coatnet-{n}"), device)
    import timm

    timm.layers.set_fused_attn(execution == "eager")
    return timm.create_model(f"coatnet_{n}_224").to(device)


def flops_per_image(model, mode: str, device) -> int:
    """Matmul, conv and attention FLOPs of one image (torch's FlopCounterMode, 2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from coatbench.counting import train_step_flops

    image = torch.randn(1, 3, 224, 224, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        if mode == "train":
            model.train()
            flops = train_step_flops(model, image)
            model.zero_grad(set_to_none=True)
            return flops
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(image)
        return counter.get_total_flops()


def measure_cell(implementation: str, n: int, mode: str, batch: int, execution: str, device) -> dict:
    import torch

    from coatbench.config import build_config
    from coatbench.measure.harness import Cell, compile_regions, measure
    from coatbench.measure.machine import fingerprint, peak_tflops
    from coatbench.settings import Budget, Dtype, Execution, Mode
    from coatbench.stats import summarize

    model = build(implementation, n, execution, device)
    flops = flops_per_image(model, mode, device)  # before compiling: counting runs the model
    if execution != "eager":
        compile_regions(model, model.compile_units() if implementation == "coatbench" else timm_units(model))
    # the model is compiled above already: the harness only captures the step, if asked
    capture = Execution.CUDA_GRAPHS if execution == Execution.COMPILE_CUDA_GRAPHS.value else Execution.EAGER
    cell = Cell(build_config(f"coatnet-{n}"), Mode(mode), batch, Dtype.BF16, capture)
    t0 = time.perf_counter()
    result = measure(cell, device, Budget(max_time=8, max_warmup_time=20), model=model)
    env = fingerprint(device)
    row = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": result.status.value,
        "message": result.message,
        "spec": {
            "implementation": implementation,
            "model": f"coatnet-{n}",
            "image_size": 224,
            "mode": mode,
            "batch_per_core": batch,
            "execution": execution,
            "dtype": "bf16",
            "channels_last": True,
        },
        "first_step_s": result.first_step_s,
        "cell_s": time.perf_counter() - t0,
        "flops_per_image": flops,
        "samples": result.samples,
        "env": env.to_dict(),
        "timm": timm_version(),
    }
    if result.samples:
        summary = summarize(result.samples)
        peak = peak_tflops(env.device_name, "bf16")
        row["images_per_s"] = summary.median
        row["ci_halfwidth_rel"] = summary.ci_halfwidth_rel
        row["mfu"] = None if peak is None else summary.median * flops / (peak * 1e12)
        row["peak_tflops"] = peak
    del model
    torch.cuda.empty_cache()
    return row


def timm_version() -> str | None:
    try:
        import timm
    except ImportError:
        return None
    return timm.__version__


def key(spec: dict) -> tuple:
    return spec["implementation"], spec["model"], spec["mode"], spec["batch_per_core"], spec["execution"]


def render(rows: list[dict], command: str) -> str:
    latest = {key(r["spec"]): r for r in rows}
    envs = {r["env"]["device_name"] for r in rows}
    peak = next((r["peak_tflops"] for r in rows if r.get("peak_tflops")), None)
    shas = sorted({r["env"]["git_sha"][:7] for r in rows if r["env"].get("git_sha")})
    timm = sorted({r["timm"] for r in rows if r.get("timm")})
    lines = [
        f"# coatbench vs timm: CoAtNet at 224, bf16, channels-last, images/s per GPU ({', '.join(sorted(envs))})",
        "",
        f"Command: `{command}` (coatbench {', '.join(shas) or 'commit unknown'}, torch "
        f"{rows[0]['env']['torch']}, timm {', '.join(timm) or 'not installed'}).",
        "",
        "Compiled = torch.compile of every block, then the whole step captured as one CUDA graph, for both. "
        f"MFU = images/s x the model's own matmul/conv/attention FLOPs / {peak} TFLOP/s (datasheet dense bf16). "
        "ratio = coatbench / timm. `-`: not measured yet.",
        "",
        "| model | mode | batch | timm eager | coatbench eager | ratio | timm compiled | coatbench compiled | ratio "
        "| MFU timm eager / compiled | MFU coatbench eager / compiled |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted({(s[1], s[2], s[3]) for s in latest}, key=lambda c: (int(c[0][-1]), MODES.index(c[1]), c[2]))

    def get(impl, model, mode, batch, execution):
        return latest.get((impl, model, mode, batch, execution))

    def rate(row):
        if row is None:
            return "-"
        return f"{row['images_per_s']:,.0f}" if row["status"] == "ok" else row["status"].upper()

    def ratio(a, b):
        ok = a is not None and b is not None and a["status"] == b["status"] == "ok"
        return f"{b['images_per_s'] / a['images_per_s']:.2f}x" if ok else "-"

    def mfu(row):
        return f"{row['mfu']:.1%}" if row is not None and row.get("mfu") is not None else "-"

    for model, mode, batch in cells:
        te, ce = get("timm", model, mode, batch, "eager"), get("coatbench", model, mode, batch, "eager")
        tc, cc = (get(i, model, mode, batch, "compile+cuda-graphs") for i in IMPLEMENTATIONS)
        lines.append(
            f"| {model} | {mode} | {batch} | {rate(te)} | {rate(ce)} | {ratio(te, ce)} | {rate(tc)} | {rate(cc)} "
            f"| {ratio(tc, cc)} | {mfu(te)} / {mfu(tc)} | {mfu(ce)} / {mfu(cc)} |"
        )
    lines += ["", *render_targets(get), "", *render_provenance(latest), "", *render_repeats(rows)]
    return "\n".join(lines) + "\n"


# Issue 7's bar for coatbench's CoAtNet-2 at 224, per-core batch 128, bf16 (images/s).
TARGETS = {
    ("train", "eager"): 935,
    ("infer", "eager"): 3668,
    ("train", "compile+cuda-graphs"): 1500,
    ("infer", "compile+cuda-graphs"): 6000,
}


def render_targets(get) -> list[str]:
    lines = [
        "## Targets: coatbench CoAtNet-2, per-core batch 128",
        "",
        "| mode | execution | target | measured | |",
        "|---|---|---|---|---|",
    ]
    for (mode, execution), target in TARGETS.items():
        row = get("coatbench", "coatnet-2", mode, 128, execution)
        if row is None or row["status"] != "ok":
            lines.append(f"| {mode} | {execution} | {target:,} | - | not measured |")
            continue
        measured = row["images_per_s"]
        verdict = "met" if measured >= target else f"not met ({measured / target - 1:+.1%})"
        lines.append(f"| {mode} | {execution} | {target:,} | {measured:,.0f} | {verdict} |")
    return lines


def render_provenance(latest: dict) -> list[str]:
    """Which commit and day measured which cells: a table may be filled over several leases."""
    commits: dict[tuple, set] = {}
    for (impl, model, _mode, _batch, execution), row in latest.items():
        commits.setdefault((impl, execution, model), set()).add(row["env"].get("git_sha", "?")[:7])
    groups: dict[tuple, list] = {}
    for (impl, model, mode, batch, execution), row in sorted(latest.items()):
        when = (row["env"].get("git_sha", "?")[:7], row["timestamp"][:10])
        label = f"{impl} {execution} {model}"
        if len(commits[(impl, execution, model)]) > 1:  # split across commits: name the cells
            label += f" {mode} {batch}"
        if label not in groups.setdefault(when, []):
            groups[when].append(label)
    lines = ["## Where each cell comes from", ""]
    for (sha, day), labels in sorted(groups.items(), key=lambda kv: kv[0][1]):
        lines.append(f"- commit {sha}, {day}: {', '.join(labels)}")
    return lines


def render_repeats(rows: list[dict]) -> list[str]:
    """Cells measured more than once with the same code whose runs disagree by more than 10%
    (the same code: timm's rows at one timm version, coatbench's at one commit)."""
    runs: dict[tuple, list[float]] = {}
    for row in rows:
        if row["status"] == "ok":
            code = row["timm"] if row["spec"]["implementation"] == "timm" else row["env"].get("git_sha", "?")[:7]
            runs.setdefault((*key(row["spec"]), code), []).append(row["images_per_s"])
    lines = []
    for (impl, model, mode, batch, execution, code), values in sorted(runs.items()):
        if len(values) > 1 and max(values) > 1.1 * min(values):
            shown = ", ".join(f"{v:,.0f}" for v in values)
            lines.append(f"- {impl} {code} {model} {mode} {batch} {execution}: {shown} (the table shows the last)")
    if not lines:
        return []
    return [
        "## Cells whose runs of the same code disagree by more than 10%",
        "",
        "Eager steps at small per-core batches are bound by the host launching kernels, not by the GPU; "
        "between leases (other hosts) and even within one, their spread is far wider than one run's "
        "confidence interval. Read their ratios with that in mind.",
        "",
        *lines,
    ]


def refuse(message: str) -> None:
    """Bad input: one line naming the problem, exit 2 (the CLI's rule)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_arguments(args: argparse.Namespace) -> None:
    if args.render is None and args.out is None:
        refuse("--out FILE.jsonl is needed to measure (or --render FILE.jsonl to only re-render)")
    choices = {"executions": EXECUTIONS, "modes": MODES, "implementations": IMPLEMENTATIONS}
    for option, allowed in choices.items():
        if not set(getattr(args, option).split(",")) <= set(allowed):
            refuse(f"--{option} takes a comma-separated subset of {','.join(allowed)}, not {getattr(args, option)!r}")
    for option in ("models", "batch_sizes"):
        values = getattr(args, option).split(",")
        if not all(v.isdigit() and (option == "models" or int(v) > 0) for v in values):
            wanted = "CoAtNet sizes" if option == "models" else "positive integers"
            refuse(f"--{option.replace('_', '-')} takes comma-separated {wanted}, not {getattr(args, option)!r}")


def cells_to_measure(args: argparse.Namespace, done: set) -> list[tuple]:
    """(implementation, n, mode, batch, execution) of every selected cell not in `done`."""
    return [
        (impl, int(n), mode, batch, execution)
        for n in args.models.split(",")
        for batch in map(int, args.batch_sizes.split(","))
        for mode in args.modes.split(",")
        for execution in args.executions.split(",")
        for impl in args.implementations.split(",")
        if (impl, f"coatnet-{n}", mode, batch, execution) not in done
    ]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2,0,3", help="CoAtNet sizes, in the order to measure them")
    parser.add_argument("--batch-sizes", default="128,32,256")
    parser.add_argument("--modes", default="train,infer")
    parser.add_argument("--executions", default=",".join(EXECUTIONS))
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument(
        "--again",
        action="store_true",
        help="measure the selected cells again even if --out has them (the table shows the latest run)",
    )
    parser.add_argument("--out", type=Path, help="JSON Lines file to append to; cells already in it are skipped")
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--render", type=Path, help="only re-render the Markdown from this JSON Lines file")
    args = parser.parse_args(argv)
    check_arguments(args)
    return args


def main() -> None:
    args = parse_arguments()
    from coatbench.files import write_atomically
    from coatbench.results import JsonLines

    def read_rows(path):
        return [row for _, row in JsonLines(path).read()]

    command = (
        f"python benchmarks/vs_timm.py --models {args.models} --batch-sizes {args.batch_sizes} "
        f"--out {args.out or args.render} --markdown {args.markdown}"
    )
    if args.render:
        write_atomically(args.markdown, render(read_rows(args.render), command).encode())
        return
    import torch

    device = torch.device("cuda")
    done = set()
    if args.out.exists() and not args.again:
        done = {key(r["spec"]) for r in read_rows(args.out) if r["status"] in ("ok", "oom")}
    todo = cells_to_measure(args, done)
    print(f"{len(todo)} cells to measure ({len(done)} already in {args.out})", flush=True)
    for i, (impl, n, mode, batch, execution) in enumerate(todo, 1):
        row = measure_cell(impl, n, mode, batch, execution, device)
        JsonLines(args.out).append([row])
        shown = f"{row['images_per_s']:,.0f} images/s, MFU {row['mfu']:.1%}" if row["status"] == "ok" else row["status"]
        print(
            f"[{i}/{len(todo)}] {impl} coatnet-{n} {mode} bs{batch} {execution}: {shown} "
            f"(first step {row['first_step_s'] or 0:.0f} s, cell {row['cell_s']:.0f} s)",
            flush=True,
        )
        write_atomically(args.markdown, render(read_rows(args.out), command).encode())


if __name__ == "__main__":
    main()

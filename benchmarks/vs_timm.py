"""coatbench's CoAtNet against timm's, measured side by side in one process, one harness.

timm's `coatnet_N_224` configs differ from the paper (stride-2 depthwise downsampling,
avg-pool shortcuts, an extra pre-logits layer), so they are compared against coatbench's
`--downsample dwconv` variant too. Eager only here: timm's fused attention does not
compile on torch 2.11 (see ../shared/reference/anchors.md).

    python benchmarks/vs_timm.py [--models 0,2] [--batch-sizes 32,128,256] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from coatbench.config import build_config
from coatbench.harness import Budget, Cell, measure
from coatbench.hardware import device_name
from coatbench.model import build_model
from coatbench.options import Dtype, Mode


def main() -> None:
    import timm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="0,2")
    parser.add_argument("--batch-sizes", default="32,128,256")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device("cuda")
    lines = [
        f"# coatbench vs timm {timm.__version__}: bf16, channels-last, eager, images/s, {device_name(device)}",
        "",
        f"Command: `python benchmarks/vs_timm.py --models {args.models} --batch-sizes {args.batch_sizes}`",
        "",
        "| model | mode | batch | timm | coatbench (paper, Eqn 5) | ratio | coatbench dwconv (Table 9) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for n in args.models.split(","):
        config = build_config(f"coatnet-{n}")
        dw = build_config(f"coatnet-{n}", downsample="dwconv")
        for mode in (Mode.TRAIN, Mode.INFER):
            for batch in map(int, args.batch_sizes.split(",")):
                rates = []
                for cfg, model in (
                    (config, timm.create_model(f"coatnet_{n}_224").to(device)),
                    (config, build_model(config, device)),
                    (dw, build_model(dw, device)),
                ):
                    result = measure(Cell(cfg, mode, batch, Dtype.BF16), device, Budget(max_time=10), model=model)
                    rates.append(statistics.median(result.samples) if result.samples else float("nan"))
                    del model
                    torch.cuda.empty_cache()
                timm_rate, ours, ours_dw = rates
                line = (
                    f"| coatnet-{n} | {mode.value} | {batch} | {timm_rate:,.0f} | {ours:,.0f} | {ours / timm_rate:.2f}x "
                    f"| {ours_dw:,.0f} | {ours_dw / timm_rate:.2f}x |"
                )
                lines.append(line)
                print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

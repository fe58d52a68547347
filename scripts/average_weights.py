"""Average the float weights of runs that share a network (a "model soup"), to test whether
runs continued from one checkpoint are better together than apart.

    python scripts/average_weights.py OUT.safetensors RUN1.safetensors RUN2.safetensors [...]

Writes the element-wise mean of every float tensor (other tensors must agree and are copied) and
the first run's model description (.json) beside it, ready for `--model` or rd_dense.py.
Measured in docs/MODEL.md section 22: it did not pay there.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def average(paths: list[Path]) -> dict[str, torch.Tensor]:
    """The mean of the runs' float tensors, in float64 then cast back to each tensor's dtype."""
    states = [load_file(str(p)) for p in paths]
    names = set(states[0])
    for p, s in zip(paths, states):
        if set(s) != names:
            raise SystemExit(f"{p} does not hold the same tensors as {paths[0]}")
    mean = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            mean[name] = (sum(s[name].double() for s in states) / len(states)).to(first.dtype)
        elif all(torch.equal(s[name], first) for s in states):
            mean[name] = first
        else:
            raise SystemExit(f"{name} is not a float tensor and differs between the runs")
    return mean


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        raise SystemExit("give at least two runs to average")
    save_file(average(args.runs), str(args.out))
    shutil.copy(args.runs[0].with_suffix(".json"), args.out.with_suffix(".json"))
    print(f"{args.out}: mean of {len(args.runs)} runs")


if __name__ == "__main__":
    main()

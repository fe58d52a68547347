"""How fast one training step runs on this machine, and what the usual CPU tricks buy.

Times `uqdm train`'s step (the whole chain forward and backward, gradient clipping, AdamW, EMA)
from the shipped float weights on a fixed sequence of training crops, for each variant given:

  base            the trainer as it was up to uqdm 0.13 (NCHW tensors)
  channels_last   the denoiser's weights and activations in channels-last memory format
  compile         torch.compile(denoiser, dynamic=False) (inductor; its compile time is not timed)
  compile_cl      both
  gradK           back-propagate K of the 7 network steps per batch (`uqdm train --grad-steps K`)

    python scripts/train_speed.py ../shared/data/train --steps 24 --variants base channels_last --json F

The variants run interleaved, step by step in rotating order, on the same batches, so that a
machine whose speed drifts (shared hosts do) affects all alike; the figure to read is the mean
ratio to the first variant over the same steps. Every 4th step is the trainer's big crop.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from uqdm_codec.model import load_model
from uqdm_codec.objective import random_grad_steps, run_chain
from uqdm_codec.train import PhotoCrops, list_images


def _channels_last(denoiser: torch.nn.Module) -> None:
    """Weights and activations in channels-last (NHWC) layout, the one oneDNN prefers."""
    denoiser.to(memory_format=torch.channels_last)
    forward = denoiser.forward

    def wrapped(image, gamma, maps):
        cl = torch.channels_last
        maps = [m.contiguous(memory_format=cl) for m in maps]
        return forward(image.contiguous(memory_format=cl), gamma, maps)

    denoiser.forward = wrapped


class Variant:
    def __init__(self, name: str, weights: str):
        self.name = name
        self.model = load_model(weights).train()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.ema = copy.deepcopy(self.model).eval()
        if name in ("channels_last", "compile_cl"):
            _channels_last(self.model.denoiser)
        if name.startswith("compile"):
            self.model.denoiser = torch.compile(self.model.denoiser, dynamic=False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0)
        self.rng = np.random.default_rng(0)
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, batch: np.ndarray) -> float:
        t = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        k = int(self.name[4:]) if self.name.startswith("grad") else 0  # gradK: K random steps
        chosen = random_grad_steps(self.model, k, self.rng)
        m = run_chain(self.model, torch.from_numpy(batch), backward=True, grad_steps=chosen)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 0.001)
        self.losses.append(m["loss"])
        return time.perf_counter() - t


def breakdown(model: torch.nn.Module, data: PhotoCrops, n: int) -> None:
    """Where one step's time goes: drawing the crops, the chain forward alone (no autograd), the
    network's convolutions forward and backward (profiler), the optimiser."""
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(1)
    t = time.perf_counter()
    batches = [data.batch(rng, 1, 256) if k % 4 == 3 else data.batch(rng, 4, 128) for k in range(n)]
    t_data = (time.perf_counter() - t) / n
    t = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            run_chain(model, torch.from_numpy(b))
    t_fwd = (time.perf_counter() - t) / n
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for b in batches:
            run_chain(model, torch.from_numpy(b), backward=True)
        t_step = (time.perf_counter() - t) / n
    ops = {e.key: e.self_cpu_time_total / 1e6 / n for e in prof.key_averages()}
    conv_f = ops.get("aten::mkldnn_convolution", 0.0) + ops.get("aten::_convolution", 0.0)
    conv_b = ops.get("aten::convolution_backward", 0.0)
    total = sum(ops.values())
    print(
        json.dumps(
            {
                "breakdown_sec_per_step": {
                    "data": round(t_data, 4),
                    "chain_forward_no_grad": round(t_fwd, 3),
                    "chain_forward_backward": round(t_step, 3),
                    "conv_forward_share": round(conv_f / total, 3),
                    "conv_backward_share": round(conv_b / total, 3),
                }
            }
        ),
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("--weights", default="weights/uqdm-small-float.safetensors")
    ap.add_argument("--steps", type=int, default=24, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps per variant first")
    ap.add_argument("--photos", type=int, default=40, help="training photos to draw crops from")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["base", "channels_last"])
    ap.add_argument("--breakdown", action="store_true", help="also time the parts of a step")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = list_images(Path(args.data_dir))
    data = PhotoCrops(paths[:: max(1, len(paths) // args.photos)][: args.photos], min_side=128)
    rng = np.random.default_rng(0)
    n = args.warmup + args.steps
    batches = [data.batch(rng, 1, 256) if k % 4 == 3 else data.batch(rng, 4, 128) for k in range(n)]
    variants = []
    for name in args.variants:
        torch.manual_seed(0)
        variants.append(Variant(name, args.weights))
    for k, batch in enumerate(batches):
        order = variants[k % len(variants) :] + variants[: k % len(variants)]
        for v in order:
            dt = v.step(batch)
            if k >= args.warmup:
                v.times.append(dt)
    if args.breakdown:
        breakdown(variants[0].model, data, args.warmup + args.steps)
    base = variants[0].times
    rows = []
    for v in variants:
        ratios = [t / b for t, b in zip(v.times, base)]
        rows.append(
            {
                "variant": v.name,
                "sec_per_step": round(statistics.mean(v.times), 3),
                "median": round(statistics.median(v.times), 3),
                "ratio_to_first": round(statistics.mean(ratios), 3),
                "ratio_median": round(statistics.median(ratios), 3),
                "mean_loss": round(statistics.mean(v.losses[args.warmup :]), 5),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        info = {"threads": args.threads, "steps": args.steps, "torch": torch.__version__, "rows": rows}
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()

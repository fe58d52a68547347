"""Design choices measured at equal training budget: fine-tune the shipped float weights once per
variant, then compare the held-aside curves.

Every variant starts from the same weights (`--init`), sees the same crops in the same order (same
seed), runs the same number of optimiser steps with the same learning-rate schedule, and is
evaluated by the trainer on the photos it holds aside (never trained on, not Kodak): cumulative bpp
and PSNR after every step, and the lossless code length. A variant that changes the schedule starts
from weights trained for another one, so the table also shows each variant before fine-tuning.

    python scripts/ablation.py ../shared/data/train --out runs/ablation --steps 360
    python scripts/ablation.py ../shared/data/train --out runs/ablation --only control,threshold-0.5

Runs are resumable: a variant whose log already has its final evaluation is not run again. The
table (markdown) and every number (json) go to OUT/ablation.md and OUT/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uqdm_codec.bench import bd_rate  # noqa: E402

LOG_EVERY = 20  # optimiser steps per training log record (each has its seconds per step)

# name -> (what it changes, extra `uqdm train` arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "control": ("shipped schedule (threshold 0.35, noise 128 .. 2, pixel step 3)", []),
    "threshold-0.5": ("code a coefficient only if its prior scale >= 0.5 q", ["--threshold", "0.5"]),
    "threshold-0.25": ("code a coefficient if its prior scale >= 0.25 q", ["--threshold", "0.25"]),
    "no-noise-2": (
        "one fine step fewer: noise 128 .. 4, then the pixel step",
        ["--noise-levels", "128", "64", "32", "16", "8", "4"],
    ),
    "noise-x2.83": (
        "fine steps spaced x2.83: noise 128, 64, 32, 16, 8, 2.83",
        ["--noise-levels", "128", "64", "32", "16", "8", "2.83"],
    ),
    "no-noise-4-2": (
        "two fine steps fewer: noise 128 .. 8, then the pixel step",
        ["--noise-levels", "128", "64", "32", "16", "8"],
    ),
    "wider": (
        "capacity where D_1 and D_2 are predicted: widths 48, 96, 128, 192 (was 32, 64), widened in place",
        ["--widths", "48", "96", "128", "192"],
    ),
}


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def evals(run: Path) -> list[dict]:
    return [r for r in read_log(run) if r.get("eval")]


def curve(ev: dict) -> list[tuple[float, float]]:
    """(cumulative bpp, PSNR) after each lossy step."""
    return [(b, p) for b, p in zip(ev["bpp"], ev["psnr"]) if b > 0]


def run_variant(name: str, extra: list[str], args: argparse.Namespace) -> float:
    """Train one variant; returns the wall minutes it took (0 if it was done already)."""
    out = args.out / name
    ev = evals(out)
    if ev and ev[-1]["step"] == args.steps:
        return 0.0
    cmd = [sys.executable, "-m", "uqdm_codec.train", str(args.data), "--out", str(out)]
    cmd += ["--init", str(args.init), "--steps", str(args.steps), "--lr", str(args.lr)]
    cmd += ["--warmup", str(args.warmup), "--decay-frac", "0.5", "--eval-every", str(args.steps)]
    cmd += ["--eval-at-start", "--ckpt-every", "50", "--log-every", str(LOG_EVERY), "--seed", "0", *extra]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    with open(args.out / f"{name}.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return (time.time() - t0) / 60.0


def table(args: argparse.Namespace, names: list[str], minutes: dict[str, float]) -> tuple[str, dict]:
    rows, doc = [], {"steps": args.steps, "init": str(args.init), "variants": {}}
    control = evals(args.out / "control")
    anchor = curve(control[-1]) if control else None
    head = (
        "| variant | what changes | eval | bpp per step (cumulative) | PSNR per step (dB) | lossless bpp "
        "| BD-rate vs control |"
    )
    rows += [head, "|" + "---|" * 7]
    for name in names:
        ev = evals(args.out / name)
        if not ev:
            continue
        log = read_log(args.out / name)
        secs = [r["sec_per_step"] * LOG_EVERY for r in log if "sec_per_step" in r]
        doc["variants"][name] = {
            "what": VARIANTS[name][0],
            "evals": ev,
            "train_minutes": round(sum(secs) / 60.0, 1),
            "wall_minutes_this_call": round(minutes.get(name, 0.0), 1),
        }
        for e in ev:
            bd = bd_rate(anchor, curve(e)) if anchor else None
            doc["variants"][name].setdefault("bd_rate_vs_control", {})[e["step"]] = bd
            rows.append(
                f"| {name} | {VARIANTS[name][0]} | step {e['step']} | "
                f"{' / '.join(f'{b:.3f}' for b in e['bpp'])} | {' / '.join(f'{p:.1f}' for p in e['psnr'])} | "
                f"{e['lossless_bpp']:.3f} | {'' if bd is None else f'{bd:+.1f} %'} |"
            )
    return "\n".join(rows) + "\n", doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="training photos (the trainer holds 6 aside)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--init", type=Path, default=REPO / "weights" / "uqdm-small-float.safetensors")
    ap.add_argument("--steps", type=int, default=360)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--only", default="", help="comma-separated variants (default: all)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    minutes = {}
    for name in names:
        minutes[name] = run_variant(name, VARIANTS[name][1], args)
        md, doc = table(args, list(VARIANTS), minutes)
        (args.out / "ablation.md").write_text(md)
        (args.out / "ablation.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(md, flush=True)


if __name__ == "__main__":
    main()

"""Train on a lent GPU in calls of at most 10 minutes, carrying the run from call to call.

The device machine (see the developers' guide) gets the repository plus carried ignored folders,
64 MiB in all, runs one command of at most 10 minutes, and returns at most 8 files of 16 MiB each
from $OUT. So a long run is many calls, each of which resumes the last one's checkpoint:

    # here, once: a training set (original JPEGs, others as lossless WebP) in the ignored .carry/
    python scripts/device_train.py pack ../shared/data/train --mib 34

    # each call (the device tool's `run`, carrying .carry): resume, train ~8 minutes, hand back
    python3 scripts/device_train.py call --minutes 8 -- --batch 32 --steps 40000
    # here, after each call: put what came back where the next call finds it
    python scripts/device_train.py collect FILES_AT            # -> .carry/run/

`call` rebuilds RUN/checkpoint.pt from the pieces in .carry/run (none: a new run from the shipped
float weights, `--init weights/uqdm-small-float.safetensors`), runs `uqdm_codec.train` with
`--minutes` (it stops after that much wall time with a checkpoint), and writes to $OUT the
checkpoint cut in 15 MiB parts (the tool returns files up to 16 MiB), the EMA weights as
safetensors and the run's log. The training arguments after `--` must be the same in every call
(the learning-rate schedule is a function of --steps). Afterwards `python
scripts/export_weights.py .carry/run/uqdm-small.safetensors --dest weights` makes the exact model
the codec ships; record the calls, steps and learning curve in weights/MODEL_CARD.md.

`sweep` trains several runs side by side on the one GPU, each from the shipped float weights for
`--minutes` of wall time, and copies each run's EMA weights and logs to $OUT every `--poll` seconds,
so a call cut off at its limit still returns them (scripts/gpu_session.sh is such a call).

The photos that decide what ships (the trainer's 6 held-aside photos of the whole folder and the PNG
photos of misc/) are never packed. The device image has torch, numpy, pillow and safetensors but not
constriction, which the package imports: carry its wheel (the developers' device notes) and put it
on PYTHONPATH; trainer processes keep the caller's PYTHONPATH after this repository.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".carry"
PIECE = 15 * 2**20  # the device tool returns files up to 16 MiB
PART = "checkpoint.pt.part{}"
KEEP = ("log.jsonl", "train_config.json")
DECISION_GLOBS = "misc/*.png"  # held aside for decisions since run v13b


def _child_env() -> dict[str, str]:
    """The environment of a trainer process: this repository first on the path, and whatever the
    caller put there (the device's /tmp/site with the carried constriction wheel) after it."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _train_command(data: Path, run: Path, minutes: float) -> list[str]:
    """`uqdm train DATA --out RUN --minutes M` in a fresh interpreter (see _child_env)."""
    return [sys.executable, "-m", "uqdm_codec.train", str(data), "--out", str(run), "--minutes", str(minutes)]


def pack(source: Path, dest: Path, mib: float, seed: int = 0, min_side: int = 256) -> None:
    """Copy training photos into `dest` with their pixels unchanged, in a random order until `mib`
    MiB (so each subfolder gets about its share): JPEG originals byte for byte, the others as
    lossless WebP. Never a lossy re-encode: a run on JPEG q95 re-encodes (uqdm 0.23's pack) learned
    their smoother statistics and coded the original photos worse (docs/MODEL.md section 28).
    Photos whose short side is under `min_side` (the run's crop) would never be used and are left
    out.

    The photos that decide what ships are never packed: the trainer's held-aside photos of the
    whole folder (the 6 of docs/MODEL.md section 10) and the PNG photos of misc/ (section 20).
    The packed folder has its own, other held-aside photos for the run's logs."""
    from PIL import Image, ImageOps

    sys.path.insert(0, str(ROOT))
    from uqdm_codec.train import excluded, held_aside, list_images

    everything = list_images(source)
    decisions = set(held_aside(everything, 6))
    paths = [p for p in everything if p not in decisions and not excluded(p, source, DECISION_GLOBS)]
    random.Random(seed).shuffle(paths)
    dest.mkdir(parents=True, exist_ok=True)
    budget, used, kept = mib * 2**20, 0, 0
    for path in paths:
        with Image.open(path) as im:
            if min(im.size) < min_side:
                continue
            if path.suffix.lower() in (".jpg", ".jpeg"):
                data, suffix = path.read_bytes(), ".jpg"
            else:
                buf = io.BytesIO()
                ImageOps.exif_transpose(im).convert("RGB").save(
                    buf, "WEBP", lossless=True, quality=100, method=4
                )
                data, suffix = buf.getvalue(), ".webp"
        if used + len(data) > budget:
            continue
        rel = path.relative_to(source).with_suffix(suffix)
        target = dest / "__".join(rel.parts)  # flat: no folder depth to lose on the way
        target.write_bytes(data)
        used, kept = used + len(data), kept + 1
    print(f"packed {kept} of {len(paths)} photos, {used / 2**20:.1f} MiB, into {dest}")


def split(run: Path, out: Path) -> None:
    """RUN/checkpoint.pt -> OUT/checkpoint.pt.part0, part1, ... (15 MiB each: the device tool
    returns files up to 16 MiB), plus the EMA safetensors, its JSON and the log."""
    data = (run / "checkpoint.pt").read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(data), PIECE):
        (out / PART.format(k // PIECE)).write_bytes(data[k : k + PIECE])
    for path in {*run.glob("*.safetensors"), *run.glob("*.json"), *(run / k for k in KEEP)}:
        if path.exists():  # a set: train_config.json is both a *.json and one to keep
            shutil.copy2(path, out / path.name)
    count = sum(1 for _ in out.iterdir())
    if count > 8:
        raise SystemExit(f"{count} files in {out}: the device tool returns 8 at most")


def join(pieces: Path, run: Path) -> bool:
    """The reverse of split(): RUN/checkpoint.pt (and the log) from the parts; False if none."""
    parts = sorted(pieces.glob(PART.format("*")), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        return False
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "checkpoint.pt", "wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    for name in KEEP:
        if (pieces / name).exists():
            shutil.copy2(pieces / name, run / name)
    return True


def call(minutes: float, train_args: list[str], run: Path, out: Path, data: Path, pieces: Path) -> None:
    """Resume from `pieces` (or start from the shipped float weights), train, write parts to out."""
    resumed = join(pieces, run)
    cmd = _train_command(data, run, minutes)
    if not resumed:
        cmd += ["--init", str(ROOT / "weights" / "uqdm-small-float.safetensors")]
    cmd += train_args
    print("+", " ".join(cmd), flush=True)
    env = _child_env()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    split(run, out)


def sweep(
    minutes: float,
    runs: list[tuple[str, list[str]]],
    root: Path,
    out: Path,
    data: Path,
    poll: float,
    init: Path,
) -> int:
    """Train several runs side by side on one GPU (each from the float weights `init`, each for
    `minutes` of its own wall time), and keep copying what each has so far to `out`: its EMA
    weights as NAME.safetensors + NAME.json, and every run's log, config and console in logs.tar.
    A call cut off at the tool's limit still returns the last copies. Returns the number of runs
    that failed."""
    import tarfile
    import time

    out.mkdir(parents=True, exist_ok=True)
    env = _child_env()
    procs = {}
    for name, args in runs:
        run = root / name
        run.mkdir(parents=True, exist_ok=True)
        cmd = _train_command(data, run, minutes)
        cmd += ["--init", str(init), *args]
        print("+", " ".join(cmd), flush=True)
        console = open(run / "console.log", "w")
        procs[name] = (
            subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT),
            console,
        )

    def copy_out() -> None:
        for name, _ in runs:
            run = root / name
            for suffix in (".safetensors", ".json"):
                src = run / f"uqdm-small{suffix}"
                if src.exists():
                    shutil.copy2(src, out / f".{name}{suffix}")
                    os.replace(out / f".{name}{suffix}", out / f"{name}{suffix}")
        with tarfile.open(out / ".logs.tar", "w") as tar:
            for name, _ in runs:
                for what in ("log.jsonl", "train_config.json", "console.log"):
                    if (root / name / what).exists():
                        tar.add(root / name / what, arcname=f"{name}/{what}")
        os.replace(out / ".logs.tar", out / "logs.tar")

    while any(proc.poll() is None for proc, _ in procs.values()):
        time.sleep(poll)
        copy_out()
        for name, _ in runs:
            lines = (root / name / "console.log").read_text().splitlines()
            print(f"[{name}] {lines[-1][:300] if lines else '(nothing yet)'}", flush=True)
    copy_out()
    failed = 0
    for name, (proc, console) in procs.items():
        console.close()
        if proc.returncode:
            failed += 1
            print(f"[{name}] exited with {proc.returncode}:", flush=True)
            print("\n".join((root / name / "console.log").read_text().splitlines()[-15:]), flush=True)
    return failed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pack", help="training photos -> .carry/train, pixels unchanged")
    p.add_argument("source", type=Path)
    p.add_argument("--mib", type=float, default=34.0)
    p.add_argument("--min-side", type=int, default=256, help="leave out photos with a shorter side")
    p.add_argument("--seed", type=int, default=0, help="another seed packs another random subset")
    p.add_argument("--dest", type=Path, default=CARRY / "train")
    c = sub.add_parser("call", help="on the device: resume, train, write pieces to $OUT")
    c.add_argument("--minutes", type=float, default=8.0)
    c.add_argument("--run", type=Path, default=Path("/tmp/uqdm-run"))
    c.add_argument("--data", type=Path, default=CARRY / "train")
    c.add_argument("--out", type=Path, default=None, help="default: $OUT")
    c.add_argument("--pieces", type=Path, default=CARRY / "run", help="the last call's files")
    c.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: arguments for uqdm train")
    w = sub.add_parser("sweep", help="on the device: several runs side by side, copies to $OUT as they go")
    w.add_argument("--minutes", type=float, default=7.0)
    w.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("NAME", "ARGS"),
        required=True,
        help="a run's name and its `uqdm train` arguments in one string",
    )
    w.add_argument("--common", default="", help="`uqdm train` arguments for every run")
    w.add_argument("--root", type=Path, default=Path("/tmp/uqdm-sweep"))
    w.add_argument("--data", type=Path, default=CARRY / "train")
    w.add_argument("--out", type=Path, default=None, help="default: $OUT")
    w.add_argument("--poll", type=float, default=30.0, help="seconds between copies to --out")
    w.add_argument("--init", type=Path, default=ROOT / "weights" / "uqdm-small-float.safetensors")
    k = sub.add_parser("collect", help="here: what a call returned -> .carry/run for the next call")
    k.add_argument("files_at", type=Path)
    args = ap.parse_args(argv)
    if args.what == "pack":
        pack(args.source, args.dest, args.mib, seed=args.seed, min_side=args.min_side)
    elif args.what == "call":
        out = args.out or Path(os.environ["OUT"])
        extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
        call(args.minutes, extra, args.run, out, args.data, args.pieces)
    elif args.what == "sweep":
        import shlex

        runs = [(name, shlex.split(args.common) + shlex.split(extra)) for name, extra in args.run]
        out = args.out or Path(os.environ["OUT"])
        sys.exit(sweep(args.minutes, runs, args.root, out, args.data, args.poll, args.init))
    else:
        dest = CARRY / "run"
        dest.mkdir(parents=True, exist_ok=True)
        for path in args.files_at.rglob("*"):
            if path.is_file():
                shutil.copy2(path, dest / path.name)
        print(f"copied {sum(1 for _ in dest.iterdir())} files to {dest}")


if __name__ == "__main__":
    main()

"""Train on a lent GPU in calls of at most 10 minutes, carrying the run from call to call.

The device machine (see the developers' guide) gets the repository plus carried ignored folders,
64 MiB in all, runs one command of at most 10 minutes, and returns at most 8 files of 16 MiB each
from $OUT. So a long run is many calls, each of which resumes the last one's checkpoint:

    # here, once: a compact training set (JPEG q95, <= 48 MiB) in the ignored folder .carry/
    python scripts/device_train.py pack ../shared/data/train --mib 48

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

Needs on the device only what its image has (torch, numpy, pillow, safetensors): training imports
neither constriction nor typer.
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


def pack(source: Path, dest: Path, mib: float, seed: int = 0) -> None:
    """Copy training photos into `dest` as JPEG q95 (originals that are smaller JPEGs stay as
    they are), in a random order until `mib` MiB (so each subfolder gets about its share)."""
    from PIL import Image, ImageOps

    sys.path.insert(0, str(ROOT))
    from uqdm_codec.train import list_images

    paths = list_images(source)
    random.Random(seed).shuffle(paths)
    dest.mkdir(parents=True, exist_ok=True)
    budget, used, kept = mib * 2**20, 0, 0
    for path in paths:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=95)
        data = buf.getvalue()
        if path.suffix.lower() in (".jpg", ".jpeg") and path.stat().st_size <= len(data):
            data = path.read_bytes()
        if used + len(data) > budget:
            continue
        rel = path.relative_to(source).with_suffix(".jpg")
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
    cmd = [sys.executable, "-m", "uqdm_codec.train", str(data), "--out", str(run), "--minutes", str(minutes)]
    if not resumed:
        cmd += ["--init", str(ROOT / "weights" / "uqdm-small-float.safetensors")]
    cmd += train_args
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    split(run, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pack", help="training photos -> .carry/train as JPEG q95")
    p.add_argument("source", type=Path)
    p.add_argument("--mib", type=float, default=48.0)
    p.add_argument("--dest", type=Path, default=CARRY / "train")
    c = sub.add_parser("call", help="on the device: resume, train, write pieces to $OUT")
    c.add_argument("--minutes", type=float, default=8.0)
    c.add_argument("--run", type=Path, default=Path("/tmp/uqdm-run"))
    c.add_argument("--data", type=Path, default=CARRY / "train")
    c.add_argument("--out", type=Path, default=None, help="default: $OUT")
    c.add_argument("--pieces", type=Path, default=CARRY / "run", help="the last call's files")
    c.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: arguments for uqdm train")
    k = sub.add_parser("collect", help="here: what a call returned -> .carry/run for the next call")
    k.add_argument("files_at", type=Path)
    args = ap.parse_args(argv)
    if args.what == "pack":
        pack(args.source, args.dest, args.mib)
    elif args.what == "call":
        out = args.out or Path(os.environ["OUT"])
        extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
        call(args.minutes, extra, args.run, out, args.data, args.pieces)
    else:
        dest = CARRY / "run"
        dest.mkdir(parents=True, exist_ok=True)
        for path in args.files_at.rglob("*"):
            if path.is_file():
                shutil.copy2(path, dest / path.name)
        print(f"copied {sum(1 for _ in dest.iterdir())} files to {dest}")


if __name__ == "__main__":
    main()

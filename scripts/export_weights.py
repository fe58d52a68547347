"""Copy a training run's EMA weights into weights/ as the shipped model (float16 storage).

python scripts/export_weights.py runs/v3/uqdm-small.safetensors --name uqdm-small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uqdm_codec.model import fingerprint, load_model, save_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source")
    parser.add_argument("--name", default="uqdm-small")
    parser.add_argument("--dest", default=str(Path(__file__).resolve().parent.parent / "weights"))
    args = parser.parse_args()
    model = load_model(args.source)
    model.config = type(model.config)(**{**model.config.__dict__, "name": args.name})
    dest = Path(args.dest) / f"{args.name}.safetensors"
    save_model(model, dest, dtype=torch.float16)
    shipped = load_model(dest)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB), fingerprint {fingerprint(shipped).hex()}")


if __name__ == "__main__":
    main()

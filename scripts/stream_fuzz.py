"""Damaged streams through the streaming decoder (`uqdm decode --stream`): each must end in the
codec's own error or in images, never in another exception.

    python scripts/stream_fuzz.py --cases 400          # about 50 s on the 2 cores

Three files of a small randomly initialised model (plain, tail, early tail), each case one of them
with bits flipped, cut short, bytes inserted or zeroed, fed to streaming.decode_stream in pieces of
1, 7, 100 bytes or all at once. Prints the count of each outcome.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uqdm_codec  # noqa: E402
from tests.conftest import make_tiny_model, synthetic_image  # noqa: E402
from uqdm_codec import streaming  # noqa: E402
from uqdm_codec.codec import Codec  # noqa: E402
from uqdm_codec.errors import UqdmError  # noqa: E402
from uqdm_codec.exactmodel import from_float  # noqa: E402


def damaged(data: bytes, rng: random.Random) -> bytes:
    d = bytearray(data)
    kind = rng.choice(["flip", "cut", "insert", "zero"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
    elif kind == "cut":
        d = d[: rng.randrange(len(d))]
    elif kind == "insert":
        at = rng.randrange(len(d))
        d[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    else:
        at = rng.randrange(len(d))
        d[at : at + 8] = bytes(8)
    return bytes(d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    codec = Codec(from_float(make_tiny_model()), "cpu")
    uqdm_codec.get_codec = lambda model=None, device=None, tile=None: codec  # the files' own model
    img = synthetic_image(32, 48, seed=1)
    sources = [
        codec.encode(img, seed=2),
        codec.encode(img, seed=3, tail=True),
        codec.encode(img, seed=4, tail_after=2),
    ]
    rng = random.Random(args.seed)
    outcomes: Counter = Counter()
    for case in range(args.cases):
        data = damaged(rng.choice(sources), rng)
        size = rng.choice([1, 7, 100, 10**6])
        try:
            for _ in streaming.decode_stream(data[i : i + size] for i in range(0, len(data), size)):
                pass
            outcomes["images"] += 1
        except UqdmError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - what this script looks for
            outcomes["crash"] += 1
            print(f"case {case}: {type(exc).__name__}: {exc}", flush=True)
    print(dict(outcomes))
    sys.exit(1 if outcomes["crash"] else 0)


if __name__ == "__main__":
    main()

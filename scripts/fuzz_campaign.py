"""Fuzz campaign for the decoder: many hostile inputs, each must end in the codec's own error or a
correct decode within a time bound.

    python scripts/fuzz_campaign.py --cases 12000 --out fuzz_report.json
    python scripts/fuzz_campaign.py --tail --cases 4000 --out fuzz_tail_report.json
    python scripts/fuzz_campaign.py --inner --cases 4000 --out fuzz_inner_report.json
    python scripts/fuzz_campaign.py --extensions --cases 20000 --out fuzz_extensions_report.json

Uses a small randomly initialised model (the decoder's robustness does not depend on the weights)
and real files of several sizes, with and without sub-step chunks. `--tail`: files with a lossless
tail in each colour order, damaged inside their checksums (tests/fuzz_cases.tail_mutations), so that
the tail's own decoder meets them. `--inner`: any layer's header or a chunk's payload damaged
inside its checksum (tests/fuzz_cases.inner_mutations). `--extensions`: the files carry a colour
profile, an alpha channel, EXIF and XMP, so their headers are version 9 (FORMAT.md 1.2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.conftest import make_tiny_model, synthetic_image  # noqa: E402
from tests.fuzz_cases import inner_mutations, mutations, run_case, tail_files, tail_mutations  # noqa: E402
from uqdm_codec.codec import ChunkPolicy, Codec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=12000)
    parser.add_argument("--out", default="fuzz_report.json")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--tail", action="store_true", help="damaged tails inside valid checksums")
    parser.add_argument("--inner", action="store_true", help="damaged layers inside valid checksums")
    parser.add_argument(
        "--extensions", action="store_true", help="files with a profile, alpha, EXIF and XMP (version 9)"
    )
    args = parser.parse_args()

    model = make_tiny_model()
    codecs = [Codec(model, "cpu"), Codec(model, "cpu", chunking=ChunkPolicy(growth=0.01, min_bytes=24))]
    sources, strategy = [], inner_mutations if args.inner else mutations
    if args.tail:
        strategy = tail_mutations
        for k, (h, w) in enumerate([(20, 28), (1, 1), (33, 17), (6, 40)]):
            sources += [
                (codecs[0], data) for data in tail_files(codecs[0], synthetic_image(h, w, seed=k)).values()
            ]
    else:
        extras = {}
        if args.extensions:
            from PIL import ImageCms

            from tests.test_metadata import XMP, block, camera_exif

            profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
            extras = {"icc_profile": profile, "exif": block(camera_exif(gps=True)), "xmp": XMP}
        for k, (h, w) in enumerate([(20, 28), (1, 1), (33, 17)]):
            img = synthetic_image(h, w, seed=k)
            alpha = img[:, :, 0] // 3 if args.extensions else None
            for c in codecs:
                sources.append((c, c.encode(img, seed=k, alpha=alpha, **extras)))
        if args.inner:  # and the tails' layers
            sources += [(codecs[0], data) for data in tail_files(codecs[0], synthetic_image(20, 28)).values()]

    counts: Counter = Counter()
    crashes: list[str] = []
    per_source = max(1, args.cases // len(sources))
    t0 = time.perf_counter()

    def campaign(codec: Codec, data: bytes) -> None:
        @settings(
            max_examples=per_source, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(strategy(data))
        def case(blob):
            outcome = run_case(codec, blob, args.time_limit)
            counts[outcome.split(":")[0] if outcome.startswith(("crash", "slow")) else outcome] += 1
            if outcome.startswith(("crash", "slow")) and len(crashes) < 50:
                crashes.append(outcome)

        case()

    for codec, data in sources:
        campaign(codec, data)
    report = {
        "cases": sum(counts.values()),
        "outcomes": dict(counts),
        "crashes_or_slow": crashes,
        "seconds": round(time.perf_counter() - t0, 1),
        "time_limit_per_case_s": args.time_limit,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()

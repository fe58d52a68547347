"""Hostile inputs for the decoder, shared by tests/test_fuzz.py and scripts/fuzz_campaign.py.

Each case is bytes built from a real .uqd file (or from nothing): random bytes, bit flips,
truncations at and inside layer boundaries, swapped, dropped and duplicated layers, and headers with
absurd fields but a valid checksum. `run_case` feeds one to decode/info/truncate and classifies the
outcome: "ok" (decoded), "error:<Type>" (the codec's own error) or "crash:<Type>" (a bug).
"""

from __future__ import annotations

import struct
import time

from hypothesis import strategies as st

from uqdm_codec import container, files
from uqdm_codec.errors import UqdmError


def layer_spans(data: bytes) -> list[tuple[int, int]]:
    fi = files.info(data)
    starts = [fi.header_bytes] + [layer.end for layer in fi.layers[:-1]]
    return list(zip(starts, [layer.end for layer in fi.layers]))


def header_with(
    width=64, height=48, channels=3, steps=8, tile16=64, name=b"m", version=container.VERSION, flags=0
):
    body = (
        container._HEAD.pack(
            container.MAGIC, version, flags, width, height, channels, steps, tile16, bytes(16), 1, len(name)
        )
        + name
    )
    return body + struct.pack("<I", container.crc32(body))


def mutations(data: bytes):
    """A hypothesis strategy of hostile byte strings derived from `data`."""
    spans = layer_spans(data)
    n = len(data)

    def flip(pos_bit):
        pos, bit = pos_bit
        out = bytearray(data)
        out[pos % n] ^= 1 << bit
        return bytes(out)

    def swap(ij):
        i, j = sorted(ij)
        if i == j:
            return data
        (a0, a1), (b0, b1) = spans[i], spans[j]
        return data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]

    def drop(i):
        a, b = spans[i]
        return data[:a] + data[b:]

    def duplicate(i):
        a, b = spans[i]
        return data[:b] + data[a:b] + data[b:]

    def splice(args):
        pos, junk = args
        return data[: pos % n] + junk + data[pos % n :]

    k = len(spans)
    return st.one_of(
        st.binary(max_size=400),
        st.builds(flip, st.tuples(st.integers(0, n - 1), st.integers(0, 7))),
        st.builds(lambda cut: data[:cut], st.integers(0, n)),
        st.sampled_from([data[:b] for _, b in spans] + [data[: b - 1] for _, b in spans]),
        st.builds(swap, st.tuples(st.integers(0, k - 1), st.integers(0, k - 1))),
        st.builds(drop, st.integers(0, k - 1)),
        st.builds(duplicate, st.integers(0, k - 1)),
        st.builds(splice, st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=40))),
        st.builds(
            lambda w, h, c, s, t, v, f: header_with(w, h, c, s, t, version=v, flags=f),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 65535),
            st.integers(0, 3),
            st.integers(0, 2),
        ),
        st.builds(
            lambda w, h, body: header_with(w, h) + body,
            st.integers(1, 100_000),
            st.integers(1, 100_000),
            st.binary(max_size=64),
        ),
    )


def run_case(codec, blob: bytes, time_limit: float = 20.0) -> str:
    """Decode, info and truncate one blob; return how it ended."""
    t0 = time.perf_counter()
    try:
        files.info(blob)
        files.truncate(blob, max_bytes=len(blob))
        codec.decode(blob)
        outcome = "ok"
    except UqdmError as exc:
        outcome = f"error:{type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - this is what we are looking for
        outcome = f"crash:{type(exc).__name__}:{exc}"
    if time.perf_counter() - t0 > time_limit:
        outcome = f"slow:{outcome}"
    return outcome

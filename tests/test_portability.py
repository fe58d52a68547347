"""A file decodes to the same pixels on every machine: here, under other CPU kernels, thread
counts and tile sizes, in fresh processes (the arithmetic of docs/FORMAT.md section 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import container, display_filter, entropy
from uqdm_codec.codec import Codec

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "kodim23.png"

# Decode every chunk of a file and print one CRC per decoded level, as JSON.
DECODER = """
import json, sys, zlib
import uqdm_codec
codec = uqdm_codec.get_codec(None, "cpu", tile=int(sys.argv[2]))
data = open(sys.argv[1], "rb").read()
print(json.dumps([zlib.crc32(im.pixels.tobytes()) for im in codec.iter_decode(data, every_chunk=True)]))
"""

VARIANTS = {
    "no AVX (ATEN_CPU_CAPABILITY=default)": ({"ATEN_CPU_CAPABILITY": "default"}, 1024),
    "oneDNN limited to SSE4.1": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 1024),
    "one thread": ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, 1024),
    "16-pixel tiles": ({}, 16),
}


def forced_filters(codec: Codec):
    """An encoder that sends a radius-2 display filter after every Haar step and takes every band's
    next prior locations from the filtered image, so that the file exercises all of FORMAT.md 6.5."""

    def step_filter(chain, i, pred, original, x_bands, prev_sse, bits):
        image = pred.display_crop(*original.shape[1:])
        (f,) = display_filter.fit(image, entropy.pixels_to_data(original), (2,))
        return f, (1 << (chain.levels + 1)) - 1, prev_sse

    return step_filter


@pytest.fixture(scope="module", params=[1, 4], ids=["one pass", "mirror ensemble"])
def shipped_file(tmp_path_factory, request) -> tuple[np.ndarray, Path, list[int]]:
    """A 96x64 crop of the sample photo encoded with the shipped weights (display filters forced
    on every Haar step; the lossless layer with a spatial context), once as a default file and once
    with the 4-mirror ensemble, and the CRC of every image this process decodes from it."""
    with Image.open(SAMPLE) as im:
        pixels = np.asarray(im.convert("RGB"))[200:264, 300:396].copy()
    codec = Codec(None, device="cpu")
    forcing = Codec(codec.model, device="cpu")
    forcing.step_filter = forced_filters(forcing)
    data = forcing.encode(pixels, seed=7, mirrors=request.param)
    assert container.parse_header(data)[0].mirrors == request.param
    layers = container.parse(data).layers[: codec.num_steps - 1]
    assert all(layer.display_filter.radius == 2 for layer in layers)
    assert all(layer.from_display == 31 for layer in layers[1:])
    assert container.parse(data).layers[-1].lossless_context is not None  # FORMAT.md 6.2 covered too
    path = tmp_path_factory.mktemp("portable") / "crop.uqd"
    path.write_bytes(data)
    images = list(codec.iter_decode(data, every_chunk=True))
    assert np.array_equal(images[-1].pixels, pixels) and images[-1].lossless
    return pixels, path, [zlib.crc32(im.pixels.tobytes()) for im in images]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decodes_identically_under(variant, shipped_file):
    pixels, path, expected = shipped_file
    env_extra, tile = VARIANTS[variant]
    env = {**os.environ, **env_extra, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", DECODER, str(path), str(tile)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(got) == len(expected) > 10  # every step and chunk level, blank image included
    assert got == expected  # identical pixels at every level; the last one is the original
    assert got[-1] == zlib.crc32(pixels.tobytes())


def test_tiling_gives_identical_priors(shipped_file):
    """The network's integers do not depend on the tiling (so neither does anything else)."""
    from uqdm_codec import entropy, haar
    from uqdm_codec.codec import _Chain

    pixels, _, _ = shipped_file
    whole = Codec(None, device="cpu")
    chain = _Chain(whole.net, 64, 96, seed=3, tile=1024)
    x = haar.forward(entropy.pixels_to_data(pixels.transpose(2, 0, 1)), chain.levels)
    for i in (1, 2):  # two steps, so the state mixes coded and uncoded coefficients
        prior = chain.prior(i, None if i == 1 else chain.predict(1))
        k = entropy.quantise(chain.elements(i, None, x), prior)
        chain.apply(i, entropy.reconstruct(k, prior), np.arange(k.size))
    for mirrors in (1, 4):
        a = whole.net.predict(chain.z, chain.state, 2, tile=1024, mirrors=mirrors)
        b = whole.net.predict(chain.z, chain.state, 2, tile=32, mirrors=mirrors)
        for x, y in zip(
            a.locs + a.scales + [a.pixel_scale, a.display], b.locs + b.scales + [b.pixel_scale, b.display]
        ):
            assert np.array_equal(x, y)


def test_determinism_settings_on_an_older_torch(monkeypatch):
    """PyTorch 2.1 (the oldest pyproject.toml admits) has no torch.backends.nnpack, and its
    cuda.matmul raises AssertionError, not AttributeError, for an attribute it does not know
    (fp32_precision came in 2.9): configuring the arithmetic must not fail there."""
    import torch

    from uqdm_codec import inference

    class Torch21Matmul:
        allow_tf32 = allow_fp16_reduced_precision_reduction = allow_bf16_reduced_precision_reduction = False

        def __getattr__(self, name):
            raise AssertionError(f"Unknown attribute {name}")

    monkeypatch.delattr(torch.backends, "nnpack", raising=False)
    monkeypatch.setattr(torch.backends.cuda, "matmul", Torch21Matmul())
    inference.configure_determinism()
    assert torch.backends.cuda.matmul.allow_tf32 is False

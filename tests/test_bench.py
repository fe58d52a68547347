"""The benchmark: real bytes, per-layer PSNR, baselines and BD-rate."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from uqdm_codec import bench

from .conftest import synthetic_image
from .test_cli import run


def test_bd_rate_of_a_curve_against_itself_and_a_cheaper_one():
    curve = [(0.25, 26.0), (0.5, 29.0), (1.0, 32.0), (2.0, 36.0)]
    assert abs(bench.bd_rate(curve, curve)) < 1e-9
    half = [(r / 2, p) for r, p in curve]
    assert abs(bench.bd_rate(curve, half) - (-50.0)) < 1e-6
    assert bench.bd_rate(curve, [(1.0, 50.0), (2.0, 60.0)]) is None  # no overlap


def test_psnr_at_interpolates_in_log_rate():
    curve = [(0.5, 30.0), (2.0, 40.0)]
    assert abs(bench.psnr_at(curve, 1.0) - 35.0) < 1e-9
    assert bench.psnr_at(curve, 4.0) is None


def test_bench_on_synthetic_images(tmp_path, codec, tiny_model_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(synthetic_image(40, 48, seed=k)).save(folder / f"{k}.png")
    summary, results = bench.run(folder, codec, crop=32)
    assert summary["images"] == 2 and summary["lossless_ok"]
    layers = summary["uqdm_layers"]
    assert len(layers) == codec.num_steps + 2  # header-only preview, steps, lossless
    assert all(a["bpp"] < b["bpp"] for a, b in zip(layers, layers[1:]))
    for r in results:  # real file sizes: the last point is the whole file
        assert r.width == r.height == 32
        assert np.isinf(r.layer_psnr[-1])
    assert {"JPEG", "WebP"} <= set(summary["baselines"]) and "PNG" in summary["lossless_bpp"]

    out = tmp_path / "out"
    r = run("bench", folder, "--limit", 1, "--crop", 24, "-m", tiny_model_path, "--out", out)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["summary"]["images"] == 1 and (out / "rd.png").exists()
    assert "BD-rate vs JPEG" in r.stdout

"""The benchmark: real bytes, per-layer PSNR, baselines and BD-rate."""

from __future__ import annotations

import json

import numpy as np
import PIL
import pytest
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
    # within a PSNR band: only the part of the curves inside it counts
    low_cheaper = [(r / 2 if p < 30 else r, p) for r, p in curve]
    assert abs(bench.bd_rate(curve, low_cheaper, (26.0, 29.0)) - (-50.0)) < 1e-6
    assert abs(bench.bd_rate(curve, low_cheaper, (32.0, 36.0))) < 1e-9
    assert bench.bd_rate(curve, curve, (40.0, 45.0)) is None  # the curves do not reach it


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
    r = run(
        "bench",
        folder,
        "--limit",
        1,
        "--crop",
        24,
        "-m",
        tiny_model_path,
        "--out",
        out,
        "--mirrors",
        2,
        "--fast",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["summary"]["images"] == 1 and (out / "rd.png").exists()
    assert doc["summary"]["mirrors"] == 2 and summary["mirrors"] == 1
    assert doc["summary"]["fast"] and not summary["fast"]
    assert "BD-rate vs JPEG" in r.stdout
    if "JPEG XL" in doc["summary"]["baselines"]:
        assert "BD-rate vs JPEG XL" in r.stdout and "JPEG XL lossless" in r.stdout

    # --limit 0 benchmarked every image and --limit -1 all but the last; --out naming a file
    # failed with an internal FileExistsError after the whole benchmark
    (tmp_path / "file").write_text("x")
    model = ("-m", tiny_model_path, "--no-baselines", "-q")
    for args, words in (
        (["--limit", 0], "--limit must be a whole number from 1, not 0"),
        (["--limit", -1], "--limit must be a whole number from 1, not -1"),
        (["--crop", 0], "--crop must be a whole number from 1, not 0"),
        (["--out", tmp_path / "file"], "not a folder (--out names the folder"),
    ):
        r = run("bench", folder, *model, *args)
        assert r.exit_code == 1 and r.stderr.strip().startswith("error: ") and words in r.stderr, r.output
    (folder / "2.png").write_text("not an image")  # ended the benchmark after the images before it
    r = run("bench", folder, *model, "--crop", 16, "--out", tmp_path / "o2")
    assert r.exit_code == 0 and "warning: left out " in r.stderr and "2.png: not an image" in r.stderr
    doc = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert doc["summary"]["images"] == 2 and len(doc["summary"]["skipped"]) == 1


def test_baselines_on_a_small_image_cover_every_codec_this_install_has():
    pixels = synthetic_image(48, 64, seed=5)
    points = bench.baseline_points(pixels)
    missing = bench.missing_baselines()
    for name in bench.LOSSY:
        if name not in missing:
            rates = [r for r, _ in points[name]]
            assert len(rates) == len(bench.baseline_settings()[name]) and rates == sorted(rates), name
    assert set(points["lossless"]) == set(bench.LOSSLESS) - set(missing)
    assert {"JPEG", "JPEG 2000", "PNG", "JPEG 2000 reversible"}.isdisjoint(missing)  # Pillow's own


def test_jpeg_baseline_uses_optimised_huffman_tables():
    pixels = synthetic_image(64, 64, seed=2)
    plain = bench._pillow("JPEG", quality=50)(pixels)
    optimised = bench.baseline_settings()["JPEG"][bench.JPEG_QUALITIES.index(50)](pixels)
    assert optimised[0] < plain[0] and np.array_equal(optimised[1], plain[1])


def test_jpeg_xl_rows():
    pytest.importorskip("imagecodecs")
    if bench._imagecodecs() is None:
        pytest.skip("imagecodecs was built without JPEG XL")
    pixels = synthetic_image(64, 80, seed=1)
    points = bench.baseline_points(pixels)
    jxl = points["JPEG XL"]
    assert len(jxl) == len(bench.JXL_DISTANCES)
    assert all(a[0] < b[0] for a, b in zip(jxl, jxl[1:]))  # smaller distance: more bits
    # and more PSNR, though libjxl aims at its own metric: on this noise image libjxl 0.13's
    # (imagecodecs 2026.11) distance 0.65 is 0.17 dB below its 0.9
    assert all(b[1] > a[1] - 0.5 for a, b in zip(jxl, jxl[1:])) and jxl[-1][1] > jxl[0][1] + 3
    assert 0 < points["lossless"]["JPEG XL lossless"] < 24


def test_bench_degrades_without_jpeg_xl(tmp_path, codec, tiny_model_path, monkeypatch):
    monkeypatch.setattr(bench, "_imagecodecs", lambda: None)
    bench.missing_baselines.cache_clear()
    try:
        folder = tmp_path / "imgs"
        folder.mkdir()
        Image.fromarray(synthetic_image(32, 32)).save(folder / "a.png")
        summary, _ = bench.run(folder, codec)
        r = run("bench", folder, "-m", tiny_model_path, "--out", tmp_path / "out")
    finally:
        bench.missing_baselines.cache_clear()
    assert "JPEG XL" not in summary["baselines"] and "JPEG XL" not in summary["bd_rate_percent"]
    assert "JPEG XL lossless" not in summary["lossless_bpp"] and "PNG" in summary["lossless_bpp"]
    no_avif = []  # Pillow writes AVIF from 11.3 on
    if ".avif" not in Image.registered_extensions():
        no_avif = [f"AVIF left out: Pillow {PIL.__version__} cannot write AVIF (11.3 and newer can)"]
    assert summary["notes"] == no_avif + [
        "JPEG XL and JPEG XL lossless left out: ImportError: imagecodecs with JPEG XL is not installed "
        "(pip install 'uqdm-codec[bench]')"
    ]
    assert r.exit_code == 0, r.output
    assert "note: JPEG XL and JPEG XL lossless left out" in r.stderr and "BD-rate vs JPEG XL" not in r.stdout

"""Generative reconstruction (decode --recon sample): seeded, leaves decoding and lossless alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import uqdm_codec
from uqdm_codec import entropy, files, progression, randomness, sampling
from uqdm_codec.errors import UqdmError

from .test_cli import assert_one_line_error, run


def test_same_seed_same_image_and_different_seeds_differ(codec, encoded):
    _, data = encoded
    mean = codec.decode(data, steps=2)
    a = codec.decode(data, steps=2, recon="sample", seed=7)
    b = codec.decode(data, steps=2, recon="sample", seed=7)
    c = codec.decode(data, steps=2, recon="sample", seed=8)
    assert a.recon == "sample" and a.steps == 2 and not a.lossless
    assert np.array_equal(a.pixels, b.pixels)
    assert not np.array_equal(a.pixels, c.pixels)
    assert not np.array_equal(a.pixels, mean.pixels)
    assert np.array_equal(a.shown, mean.pixels)  # the mean stays available beside the sample
    default = codec.decode(data, steps=2, recon="sample").pixels  # seed 0: repeatable by default
    assert np.array_equal(default, codec.decode(data, steps=2, recon="sample", seed=0).pixels)


def test_lossless_and_pixel_step_are_unaffected(codec, encoded):
    img, data = encoded
    T = codec.num_steps
    full = codec.decode(data, recon="sample", seed=3)
    assert full.lossless and full.recon == "mean" and np.array_equal(full.pixels, img)
    for n in (T - 1, T) if not sampling.SAMPLE_PIXELS else (T,):
        out = codec.decode(data, steps=n, recon="sample", seed=3)
        assert out.recon == "mean" and np.array_equal(out.pixels, codec.decode(data, steps=n).pixels)


def test_sampling_does_not_move_the_decoder(codec, encoded):
    """Every level's mean image is the same with and without samples (samples run on a fork)."""
    _, data = encoded
    plain = list(codec.iter_decode(data, every_chunk=True))
    sampled = list(codec.iter_decode(data, every_chunk=True, recon="sample", seed=1))
    assert len(plain) == len(sampled)
    for p, s in zip(plain, sampled):
        assert np.array_equal(p.pixels, progression.mean_image(s))
        haar_left = s.layer < codec.num_steps - 1 or (s.layer == codec.num_steps - 1 and not s.complete)
        assert (s.recon == "sample") == haar_left


def test_a_prefix_samples_like_steps(codec, encoded):
    """A file cut after step N gives the same sample as decode(steps=N) of the whole file, and a cut
    inside a step samples the rest of that step: repeatable, and different from the mean."""
    _, data = encoded
    fi = files.info(data)
    cut = data[: fi.layers[2].end]
    whole = codec.decode(data, steps=3, recon="sample", seed=5)
    assert np.array_equal(codec.decode(cut, recon="sample", seed=5).pixels, whole.pixels)
    inside = next(p for p in fi.cut_points if fi.layers[2].end < p < fi.layers[3].end)
    a = codec.decode(data[:inside], recon="sample", seed=5)
    assert a.recon == "sample" and not a.complete and a.layer == 4
    assert np.array_equal(a.pixels, codec.decode(data[:inside], recon="sample", seed=5).pixels)
    assert not np.array_equal(a.pixels, a.shown)


def test_header_only_draws_the_whole_chain(codec, encoded):
    _, data = encoded
    out = codec.decode(data, steps=0, recon="sample", seed=2)
    assert out.recon == "sample" and out.pixels.shape == out.shown.shape


def test_bad_arguments_are_refused(codec, encoded):
    _, data = encoded
    with pytest.raises(UqdmError, match="unknown reconstruction"):
        codec.decode(data, steps=1, recon="median")
    for seed in (-1, 2**64, 1.5, "3"):
        with pytest.raises(UqdmError, match="seed"):
            codec.decode(data, steps=1, recon="sample", seed=seed)


def test_public_api(tiny_model_path, image):
    data = uqdm_codec.encode(image, model=tiny_model_path, seed=3, device="cpu")
    kw = {"model": tiny_model_path, "device": "cpu"}
    a = uqdm_codec.decode(data, steps=2, recon="sample", seed=4, **kw)
    b = uqdm_codec.decode(data, steps=2, recon="sample", seed=4, **kw)
    assert isinstance(a, Image.Image) and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(uqdm_codec.decode(data, steps=2, **kw)))
    assert np.array_equal(np.asarray(uqdm_codec.decode(data, recon="sample", seed=4, **kw)), image)
    assert uqdm_codec.decode_full(data, steps=1, recon="sample", **kw).recon == "sample"


def test_draws_follow_the_truncated_prior():
    """Inverse-CDF draws match the truncated logistic (Kolmogorov-Smirnov), stay inside the bound,
    and x~ lies within half a quantiser step of x, also with the location at the bound."""
    n = 100_000
    for loc, scale, bound in ((0.2, 0.1, 1.0), (1.0, 0.3, 1.0), (-3.9, 2.0, 4.0)):
        prior = entropy.StepPrior(
            np.full(n, loc), np.full(n, scale), np.zeros(n), np.full(n, 0.05), np.full(n, bound)
        )
        u = randomness.sampling_uniforms(1, 2, 3, n)
        x = sampling.draw_x(prior, u[0])
        assert np.all(np.abs(x) <= bound)
        grid = np.linspace(-bound, bound, 101)

        def cdf(t, loc=loc, scale=scale):
            return 1.0 / (1.0 + np.exp(-(t - loc) / scale))

        expected = (cdf(grid) - cdf(-bound)) / (cdf(bound) - cdf(-bound))
        empirical = np.searchsorted(np.sort(x), grid, side="right") / n
        assert np.max(np.abs(empirical - expected)) < 0.01
        x_tilde = sampling.draw_x_tilde(prior, u)
        assert np.all(np.abs(x_tilde - x) <= 0.025 + 1e-12)


def test_sampling_randomness_is_its_own_stream():
    a = randomness.sampling_uniforms(5, 0, 2, 10)
    assert np.array_equal(a, randomness.sampling_uniforms(5, 0, 2, 10))
    assert not np.array_equal(a, randomness.sampling_uniforms(5, 1, 2, 10))
    assert not np.array_equal(a, randomness.sampling_uniforms(6, 0, 2, 10))
    assert not np.array_equal(a[0], randomness.dither(5, 2, (10,)) + 0.5)
    assert np.array_equal(randomness.dither(5, 2, (10,)), randomness._generator(5, 1, 2).random(10) - 0.5)


def test_cli_recon_sample(uqd, tiny_model_path):
    r = run("decode", uqd, "--steps", 2, "--recon", "sample", "--seed", 3, "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert "sampled (seed 3)" in r.stdout
    first = np.asarray(Image.open(uqd.with_name("photo.step2.sample3.png")))
    again = uqd.with_name("b.png")
    r = run("decode", uqd, "-s", 2, "--recon", "sample", "--seed", 3, "-m", tiny_model_path, "-o", again)
    assert r.exit_code == 0 and np.array_equal(first, np.asarray(Image.open(again)))
    assert run("decode", uqd, "-s", 2, "-m", tiny_model_path).exit_code == 0
    assert not np.array_equal(first, np.asarray(Image.open(uqd.with_name("photo.step2.png"))))

    r = run("decode", uqd, "--recon", "sample", "-m", tiny_model_path)  # the whole file: exact
    assert r.exit_code == 0 and "lossless" in r.stdout
    original = np.asarray(Image.open(uqd.with_suffix(".png")))
    assert np.array_equal(np.asarray(Image.open(uqd.with_name("photo.decoded.sample0.png"))), original)


def test_cli_bad_recon_is_one_line(uqd, tiny_model_path):
    r = run("decode", uqd, "--steps", 2, "--recon", "blurry", "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "mean or sample" in r.stderr
    assert_one_line_error(run("decode", uqd, "--recon", "sample", "--seed", -4, "-m", tiny_model_path))
    r = run("decode", uqd, "--steps", 2, "--seed", 3, "-m", tiny_model_path)  # was ignored
    assert_one_line_error(r)
    assert "--seed picks the sample of --recon sample" in r.stderr
    assert not uqd.with_name("photo.step2.png").exists()


def test_cli_progression_has_a_sample_row(uqd, tiny_model_path):
    plain, sampled, folder = (uqd.with_name(n) for n in ("plain.png", "sampled.png", "levels"))
    r = run("decode", uqd, "-m", tiny_model_path, "--progression", plain, "-o", uqd.with_name("a.png"))
    assert r.exit_code == 0, r.output
    r = run(
        "decode",
        uqd,
        "-m",
        tiny_model_path,
        "--recon",
        "sample",
        "--progression",
        sampled,
        "--all-steps",
        folder,
    )
    assert r.exit_code == 0, r.output
    w0, h0 = Image.open(plain).size
    w1, h1 = Image.open(sampled).size
    assert w1 == w0 and h1 > 1.8 * h0  # a row of samples under every row of means
    names = sorted(p.name for p in folder.iterdir())
    assert sum("_sample0" in n for n in names) >= 7 and len(names) == 10 + sum("_sample0" in n for n in names)


def test_a_layer_header_without_chunks_samples_like_the_step_before(codec, encoded):
    """Bytes that end inside the next layer's first chunk hold no element of it: the sample is the
    one after the complete steps (the streaming decoder meets such prefixes too)."""
    _, data = encoded
    fi = files.info(data)
    after3 = codec.decode(data, steps=3, recon="sample", seed=6)
    first_cut = min(p for p in fi.cut_points if p > fi.layers[2].end)
    for end in range(fi.layers[2].end + 1, min(first_cut, fi.layers[2].end + 40)):
        out = codec.decode(data[:end], recon="sample", seed=6)
        assert out.steps == 3 and np.array_equal(out.pixels, after3.pixels)

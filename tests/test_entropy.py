"""Entropy coding: exact symbol round trips, the escape path, and closeness to the ideal length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uqdm_codec import entropy, objective
from uqdm_codec.errors import FormatError


def make_prior(rng, m, q, scale, bound=1.0, spread=1.5):
    x = entropy.pixels_to_data(rng.integers(0, 256, m))
    loc = np.clip(x + rng.normal(size=m) * scale * spread, -bound, bound)
    sc = scale * np.exp(rng.normal(size=m) * 0.3)
    prior = entropy.StepPrior(loc, sc, rng.random(m) - 0.5, np.full(m, q), np.full(m, bound))
    return x, prior


@pytest.mark.parametrize("q,scale", [(2.7, 0.3), (0.47, 0.05), (0.076, 0.02), (0.023, 0.015), (0.023, 1e-4)])
def test_step_symbols_round_trip_and_near_ideal(q, scale):
    rng = np.random.default_rng(0)
    x, prior = make_prior(rng, 20_000, q, scale)
    k = entropy.quantise(x, prior)
    data = entropy.encode_step(k, prior)
    assert np.array_equal(entropy.decode_step(data, prior), k)
    x_tilde = entropy.reconstruct(k, prior)
    assert np.all(np.abs(x_tilde - x) <= q / 2 + 1e-12)  # universal quantisation error bound
    ideal = entropy.step_ideal_bits(k, prior)
    real = 8 * len(data)
    assert real <= 1.01 * ideal + 64  # 64 bits: one ANS state flush


def test_escape_path_codes_far_outliers():
    rng = np.random.default_rng(1)
    x, prior = make_prior(rng, 5000, 0.0227, 0.002, spread=100)  # prior badly wrong: many escapes
    k = entropy.quantise(x, prior)
    assert np.mean(np.abs(k) > entropy.window_half_width(prior)) > 0.5
    assert np.array_equal(entropy.decode_step(entropy.encode_step(k, prior), prior), k)


def test_extreme_values_and_scales():
    rng = np.random.default_rng(2)
    m = 4000
    x = entropy.pixels_to_data(np.where(rng.random(m) < 0.5, 0, 255))
    loc = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    scale = np.exp(rng.uniform(-14, 3, m))
    for bound in (1.0, 16.0):
        prior = entropy.StepPrior(loc, scale, rng.random(m) - 0.5, np.full(m, 0.05), np.full(m, bound))
        k = entropy.quantise(x, prior)
        assert np.array_equal(entropy.decode_step(entropy.encode_step(k, prior), prior), k)


def test_multiple_slices(monkeypatch):
    monkeypatch.setattr(entropy, "SLICE", 1000)
    rng = np.random.default_rng(3)
    x, prior = make_prior(rng, 3500, 0.1, 0.03)
    k = entropy.quantise(x, prior)
    assert np.array_equal(entropy.decode_step(entropy.encode_step(k, prior), prior), k)


def test_small_groups_tables_made_together_give_the_same_payload(monkeypatch):
    """The encoder makes the window tables of consecutive small groups together (TABLE_BATCH): the
    payload is byte for byte that of one table call per group and bucket, escapes included, and
    groups larger than a batch go on their own; an empty group codes nothing."""
    rng = np.random.default_rng(4)
    x, prior = make_prior(rng, 3000, 0.05, 0.02, spread=8)  # wide windows and some escapes
    k = entropy.quantise(x, prior)
    assert (np.abs(k) > entropy.window_half_width(prior)).any()
    cuts = np.sort(rng.choice(np.arange(1, 3000), 60, replace=False))
    groups = np.split(np.arange(3000), cuts)  # 61 groups of 1 to a few hundred elements
    groups[5:5] = [np.arange(0)]  # and an empty one (a chunk where one colour has no elements)
    monkeypatch.setattr(entropy, "TABLE_BATCH", 400)
    batched = entropy.encode_step(k, prior, groups)
    monkeypatch.setattr(entropy, "TABLE_BATCH", 1)  # every group on its own, as before the batches
    assert batched == entropy.encode_step(k, prior, groups)
    stream = entropy.StepStream(batched)
    for g in groups:
        got, ok = stream.group(prior.part(g))
        assert ok.all() and np.array_equal(got, k[g])


def _check_prefixes(payload: bytes, decode, truth: np.ndarray) -> list[int]:
    """Decode every whole-word prefix of a payload as a cut chunk: what it marks received must be
    the encoder's values, and more words never receive fewer elements. Returns the counts."""
    counts = []
    for words in range(len(payload) // 4 + 1):
        values, got = decode(payload[: 4 * words])
        assert np.array_equal(values[got], truth[got]), words
        counts.append(int(got.sum()))
    assert counts == sorted(counts) and counts[:2] == [0, 0]  # nothing without the 64-bit state
    return counts


def test_cut_step_chunks_decode_what_their_words_hold(monkeypatch):
    """A cut chunk (a prefix of a chunk's words, FORMAT.md 2.1) yields exactly the symbols its
    words determine, over several slices and with escapes; and the widest windows come first, so
    the first words hold the most uncertain elements."""
    monkeypatch.setattr(entropy, "SLICE", 700)
    rng = np.random.default_rng(7)
    x, prior = make_prior(rng, 2000, 0.05, 0.02)
    x[::97] = -x[::97]  # far from the prior: escapes
    k = entropy.quantise(x, prior)
    payload = entropy.encode_step(k, prior)
    counts = _check_prefixes(payload, lambda p: entropy.decode_step_prefix(p, prior), k)
    assert counts[-2] >= 0.95 * k.size  # all words but the last hold nearly everything
    assert entropy.decode_step_prefix(payload, prior, cut=False)[1].all()
    _, got = entropy.decode_step_prefix(payload[: len(payload) // 8 * 4], prior)
    half = entropy.window_half_width(prior)
    first_slice = slice(0, 700)
    assert half[first_slice][got[first_slice]].mean() > half[first_slice].mean()


def test_cut_lossless_chunks_decode_a_prefix_of_pixels():
    rng = np.random.default_rng(8)
    m, q = 3000, 3.0 / 127.5
    levels = rng.integers(0, 256, m)
    x_tilde = entropy.pixels_to_data(levels) + q * (rng.random(m) - 0.5)
    loc, scale = np.clip(x_tilde + rng.normal(size=m) * 0.01, -1, 1), np.full(m, 0.01)
    payload = entropy.encode_levels(levels, x_tilde, loc, scale, q)

    def decode(p):
        values, got = entropy.decode_levels_prefix(p, x_tilde, loc, scale, q)
        assert np.array_equal(got, np.arange(m) < got.sum())  # pixels arrive in order
        return values, got

    _check_prefixes(payload, decode, levels)


def test_lossless_levels_round_trip():
    rng = np.random.default_rng(4)
    m, q = 20_000, 3.0 / 127.5
    levels = rng.integers(0, 256, m)
    x = entropy.pixels_to_data(levels)
    x_tilde = x + q * (rng.random(m) - 0.5)
    loc = np.clip(x + rng.normal(size=m) * 0.01, -1, 1)
    scale = np.full(m, 0.01)
    data = entropy.encode_levels(levels, x_tilde, loc, scale, q)
    assert np.array_equal(entropy.decode_levels(data, x_tilde, loc, scale, q), levels)
    assert 8 * len(data) <= 1.01 * entropy.levels_ideal_bits(levels, x_tilde, loc, scale, q) + 64


def test_numpy_model_matches_training_objective():
    """The codec's probabilities are the ones the network was trained on."""
    rng = np.random.default_rng(5)
    x, prior = make_prior(rng, 2000, 0.3, 0.05, bound=4.0)
    k = entropy.quantise(x, prior)
    x_tilde = entropy.reconstruct(k, prior)
    codec_bits = entropy.step_ideal_bits(k, prior)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    train_bits = (
        objective.step_bits(t(x_tilde), 0.3, t(prior.loc), torch.log(t(prior.scale)), 4.0).sum().item()
    )
    assert math.isclose(codec_bits, train_bits, rel_tol=1e-6)


def test_corrupted_payload_is_detected_or_harmless():
    rng = np.random.default_rng(6)
    x, prior = make_prior(rng, 3000, 0.1, 0.03)
    k = entropy.quantise(x, prior)
    data = bytearray(entropy.encode_step(k, prior))
    with pytest.raises(FormatError):
        entropy.decode_step(bytes(data[:-3]), prior)  # not whole words
    with pytest.raises(FormatError):
        entropy.decode_step(b"\x00\x00\x00\x00", prior)  # ANS data never ends in a zero word


def test_training_candidates_include_boundary_pixels():
    """x_tilde exactly quant_step/2 away from the pixel (float32) must keep the pixel a candidate."""
    q = 0.023715417914304468
    x = torch.tensor([0.99609375, -0.99609375])
    x_tilde = x + torch.tensor([0.5, -0.5]) * q
    bits = objective.final_bits(x, x_tilde, q, torch.tensor([0.97, -0.97]), torch.tensor([-4.7, -4.7]))
    assert torch.all(bits >= 0) and torch.all(bits < 20)


def test_step_posterior_mean_matches_numeric_integration():
    """E[x | x_tilde] under the logistic prior restricted to x_tilde's bin, in the regimes the
    decoder meets: bin narrow or wide against the scale, inside or far in a tail."""
    from uqdm_codec.entropy import StepPrior, step_posterior_mean

    loc = np.array([0.0, 0.0, 0.1, 0.0, 0.0, -0.3])
    scale = np.array([1.0, 1.0, 0.2, 0.05, 1.0, 0.01])
    q = np.array([1.0, 1.0, 0.01, 0.5, 2.9, 0.02])
    x_tilde = np.array([0.0, 3.0, -0.5, 0.2, -1.0, -0.2])
    prior = StepPrior(loc, scale, np.zeros(6), q, np.full(6, 16.0))
    got = step_posterior_mean(x_tilde, prior)
    for j in range(6):
        x = np.linspace(x_tilde[j] - q[j] / 2, x_tilde[j] + q[j] / 2, 400001)
        t = np.abs(x - loc[j]) / scale[j]
        density = np.exp(-t) / (1 + np.exp(-t)) ** 2
        assert got[j] == pytest.approx((x * density).sum() / density.sum(), abs=1e-5)


def test_a_pixel_step_value_no_level_is_consistent_with_is_corruption():
    """The pixel step's window (FORMAT.md 6.1) lets a damaged stream decode an x~ past the data
    range, where no level is a candidate: a FormatError, not a NaN cast to pixels."""
    q = 3 * 2 / 256  # the pixel step's quantiser: 3 levels
    loc, scale = np.zeros(2), np.full(2, 0.02)
    shown = entropy.posterior_mean(np.array([0.0, 1.0]), loc, scale, q)  # levels 254 and 255
    top = entropy.pixels_to_data(np.array([254, 255]))
    assert np.isfinite(shown).all() and top[0] < shown[1] < top[1]
    with pytest.raises(FormatError, match="no pixel level"):
        entropy.posterior_mean(np.array([0.0, 1.0 + q]), loc, scale, q)


def test_an_escape_that_no_value_can_take_is_corruption():
    """Every window symbol and the escape have a probability of at least 1e-12 (FORMAT.md 6.1), so
    a damaged stream can decode the escape of an element whose feasible values all lie inside its
    window: a FormatError, not constriction's error on an empty row."""
    import constriction

    prior = entropy.StepPrior(
        loc=np.zeros(1),
        scale=np.ones(1),
        dither=np.zeros(1),
        quant_step=np.ones(1),
        bound=np.full(1, 256.0),
        lower_known=np.array([-2.5]),
        upper_known=np.array([2.5]),
    )
    w = 12  # the window half-width of scale / step 1
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(
        np.array([2 * w + 1], np.int32), entropy._CATEGORICAL, entropy._window_tables(prior, w)
    )
    with pytest.raises(FormatError, match="escape"):
        entropy.StepStream(entropy._payload(coder), False).group(prior)


def test_known_intervals_truncate_the_prior_and_round_trip():
    """A prior truncated to an interval the value is known to lie in (FORMAT.md 5.5): the masses of
    the feasible symbols sum to one, symbols round trip, and an interval far in a tail of the
    location (either side) keeps its precision."""
    rng = np.random.default_rng(5)
    m, q = 6000, 0.05
    x = rng.uniform(-0.9, 0.9, m)
    width = q * rng.uniform(0.3, 3.0, m)
    lower = x - width * rng.random(m)
    upper = lower + width
    offset = np.where(rng.random(m) < 0.2, rng.choice([-1.0, 1.0], m) * 40 * 0.01, 0.0)  # 40 scales out
    loc = x + offset + rng.normal(size=m) * 0.01
    scale = np.full(m, 0.01)
    prior = entropy.StepPrior(loc, scale, rng.random(m) - 0.5, np.full(m, q), np.full(m, 1.0), lower, upper)
    k = entropy.quantise(x, prior)
    assert np.array_equal(entropy.decode_step(entropy.encode_step(k, prior), prior), k)
    k_lo, k_hi = entropy.feasible_range(prior)
    assert np.all((k_lo <= k) & (k <= k_hi))
    ks = k_lo[:, None] + np.arange(int((k_hi - k_lo).max()) + 1)[None, :]
    masses = np.where(ks <= k_hi[:, None], entropy._bin_masses(prior, ks.astype(np.float64)), 0.0)
    assert np.allclose(masses.sum(axis=1) / entropy._normaliser(prior), 1.0, atol=1e-9)
    bits = entropy.step_element_bits(k, prior)
    assert np.all(np.isfinite(bits)) and np.all(bits >= 0)
    plain = entropy.StepPrior(loc, scale, prior.dither, prior.quant_step, prior.bound)
    assert bits.sum() < entropy.step_element_bits(k, plain).sum()  # knowing more costs less
    mean = entropy.step_posterior_mean(entropy.reconstruct(k, prior), prior)
    assert np.all((mean >= lower) & (mean <= upper))


def test_ideal_bits_stay_finite_when_the_known_interval_lies_far_in_the_tail():
    """A confident location far beyond the end of an element's known interval leaves the truncated
    prior no mass in float64; the encoder's bit estimate (which places chunk cuts) must not turn
    into NaN there (it crashed the encoder on a 512 px crop of skimage's astronaut photo), and the
    coder must still round-trip the element."""
    loc = np.array([60.0, 0.0, -60.0, 0.0])
    scale = np.array([0.05, 1.0, 0.05, 1.0])
    lower = np.array([-16.0, -16.0, 10.0, -16.0])  # elements 0 and 2: interval 60 / 70 scales past
    upper = np.array([-10.0, 16.0, 16.0, 16.0])  # the location on either side
    prior = entropy.StepPrior(
        loc, scale, np.zeros(4), np.full(4, 1.0), np.full(4, 16.0), lower_known=lower, upper_known=upper
    )
    k = np.array([-70, 0, 71, 1])
    bits = entropy.step_element_bits(k, prior)
    assert np.all(np.isfinite(bits)) and np.all(bits >= 0)
    assert bits[0] == pytest.approx(np.log2(7)) and bits[2] == pytest.approx(np.log2(7))
    assert np.array_equal(entropy.decode_step(entropy.encode_step(k, prior), prior), k)

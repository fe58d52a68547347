"""The training objective: the UQDM negative ELBO in bits, differentiable (torch).

Each step's KL equals the expected code length of its universally quantised symbols (see
docs/FORMAT.md, "Probability model"), so the loss below is what the codec pays, in expectation.
The codec's numpy twin of these formulas is `entropy.py`; tests check the two agree.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import haar
from .corrections import colour_context, display_filter
from .model import PIXEL_SIGMA_DATA, UQDM

LN2 = math.log(2.0)
PIXEL_HALF_BIN = 1.0 / 256.0  # half the width of one 8-bit level in data units


def to_data_units(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 levels 0..255 -> bin centres in (-1, 1)."""
    return (2.0 * pixels.float() + 1.0) / 256.0 - 1.0


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round((x + 1.0) * 128.0 - 0.5), 0, 255)


def log_sigmoid_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, stable in both tails."""
    gap = torch.clamp(a - b, min=1e-12)
    return -F.softplus(-a) - F.softplus(b) + torch.log(-torch.expm1(-gap))


def interval_log_mass(lo, hi, loc, log_scale, bound: float = 1.0) -> torch.Tensor:
    """log P(lo < X < hi) for X ~ logistic(loc, scale) truncated to [-bound, bound]."""
    inv = torch.exp(-log_scale)
    num = log_sigmoid_diff((hi - loc) * inv, (lo - loc) * inv)
    den = log_sigmoid_diff((bound - loc) * inv, (-bound - loc) * inv)
    return num - den


def step_bits(x_tilde, quant_step, loc, log_scale, bound: float = 1.0) -> torch.Tensor:
    # quant_step: a float or a tensor shaped like x_tilde
    """Code length (bits) of each symbol of a step: prior mass over the dithered bin."""
    lo = torch.clamp(x_tilde - 0.5 * quant_step, -bound, bound)
    hi = torch.clamp(x_tilde + 0.5 * quant_step, -bound, bound)
    return -interval_log_mass(lo, hi, loc, log_scale, bound) / LN2


def _candidates(x_tilde, quant_step: float, loc, log_scale):
    """Pixel levels consistent with the last step's x_tilde and their prior log-masses.

    Returns (levels, centres, valid, log_pi) with a leading candidate axis."""
    margin = 1e-6  # float32 rounding: |x - x_tilde| can come out a hair above quant_step / 2
    n_cand = int(math.ceil(quant_step * 128.0)) + 2
    first = torch.ceil((x_tilde - 0.5 * quant_step - margin + 1.0) * 128.0 - 0.5)
    offsets = torch.arange(n_cand, device=x_tilde.device, dtype=x_tilde.dtype)
    levels = first.unsqueeze(0) + offsets.view(-1, *([1] * x_tilde.dim()))
    centres = (2.0 * levels + 1.0) / 256.0 - 1.0
    near = (centres - x_tilde.unsqueeze(0)).abs() < 0.5 * quant_step + margin
    valid = (levels >= 0) & (levels <= 255) & near
    log_pi = interval_log_mass(
        centres - PIXEL_HALF_BIN, centres + PIXEL_HALF_BIN, loc.unsqueeze(0), log_scale.unsqueeze(0)
    )
    log_pi = torch.where(valid, log_pi, torch.full_like(log_pi, -1e30))
    return levels, centres, valid, log_pi


def final_bits(x, x_tilde, quant_step: float, loc, log_scale) -> torch.Tensor:
    """Code length (bits) of the lossless layer: the pixel among the levels consistent with x_tilde."""
    levels, _, valid, log_pi = _candidates(x_tilde, quant_step, loc, log_scale)
    log_norm = torch.logsumexp(log_pi, dim=0)
    is_true = (levels == torch.round((x + 1.0) * 128.0 - 0.5).unsqueeze(0)) & valid
    log_p = torch.where(is_true, log_pi, torch.zeros_like(log_pi)).sum(0) - log_norm
    return -log_p / LN2


def box_mean(x_tilde, quant_step: float, loc, log_scale) -> torch.Tensor:
    """Posterior mean of x over the levels consistent with the last step: the display before the
    lossless layer, computed without the network."""
    _, centres, _, log_pi = _candidates(x_tilde, quant_step, loc, log_scale)
    return (torch.softmax(log_pi, dim=0) * centres).sum(0)


@dataclass
class ChainState:
    """The decoder's knowledge: Haar-band latents z and, per coefficient, the last step that coded
    it (0 = never)."""

    z: list[torch.Tensor]
    state: list[torch.Tensor]

    def detach(self) -> ChainState:
        return ChainState([t.detach() for t in self.z], self.state)


def start_chain(x_bands: list[torch.Tensor], generator=None) -> ChainState:
    z = [torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) for t in x_bands]
    return ChainState(z, [torch.zeros(t.shape, dtype=torch.long, device=t.device) for t in x_bands])


def jump_tables(model: UQDM, device, dtype) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, device=device, dtype=dtype) for k, v in model.schedule.jump_table().items()}


def haar_step(
    model: UQDM,
    tables,
    chain: ChainState,
    i: int,
    x_bands,
    locs,
    log_scales,
    generator=None,
    shown_locs=None,
    colour: bool = False,
):
    """Step i (Haar basis): code the coefficients whose prior scale is >= threshold * q.

    With `colour` (run_chain's `corrections`), each band's coded bits are the codec's: the colour
    context applied and, given `shown_locs` (the Haar bands of the filtered image the decoder
    shows), the locations taken per sample from the network or from the shown image, whichever
    costs less (the encoder's band mask). Returns (bits of coded coefficients, bits the skipped ones would
    have cost, both per sample; the new chain state; the fraction of coefficients coded)."""
    sched = model.schedule
    coded = skipped = 0.0
    z_new, st_new, n_coded, n_all = [], [], 0, 0
    for b, (z, st, xb) in enumerate(zip(chain.z, chain.state, x_bands)):
        q = tables["quant_step"][st, i]
        bound = haar.band_bound(b, model.haar_levels)
        loc, ls = locs[b].clamp(-bound, bound), log_scales[b]
        mask = (torch.exp(ls) >= sched.threshold * q).detach()
        u = torch.rand(xb.shape, generator=generator, device=xb.device, dtype=xb.dtype) - 0.5
        x_tilde = xb + q * u
        bits = step_bits(x_tilde, q, loc, ls, bound)
        skipped = skipped + torch.where(mask, 0.0, bits).flatten(1).sum(1)
        if not colour:
            coded = coded + torch.where(mask, bits, 0.0).flatten(1).sum(1)
        else:
            options = []
            for where in (loc,) if shown_locs is None else (loc, shown_locs[b].clamp(-bound, bound)):
                cl, cs = colour_context(x_tilde, where, ls, mask)
                options.append(torch.where(mask, step_bits(x_tilde, q, cl, cs, bound), 0.0).flatten(1).sum(1))
            coded = coded + (options[0] if len(options) == 1 else torch.minimum(*options))
        z_new.append(torch.where(mask, tables["coef_z"][st, i] * z + tables["coef_x"][st, i] * x_tilde, z))
        st_new.append(torch.where(mask, torch.full_like(st, i), st))
        n_coded += int(mask.sum())
        n_all += mask.numel()
    return coded, skipped, ChainState(z_new, st_new), n_coded / n_all


def display_weight(model: UQDM, step: int) -> float:
    """1 / c_out^2 at the global noise after `step` steps: makes the display MSE comparable
    across steps (EDM weighting)."""
    n2 = model.schedule.noise(step) ** 2
    return (n2 + PIXEL_SIGMA_DATA**2) / (n2 * PIXEL_SIGMA_DATA**2)


def network_steps(model: UQDM) -> range:
    """The steps whose prior comes from the network: 2 .. T (step 1's prior is learnt, fixed)."""
    return range(2, model.schedule.num_steps + 1)


def random_grad_steps(model: UQDM, k: int, rng: np.random.Generator) -> frozenset[int] | None:
    """k network steps drawn at random, without repetition, for run_chain's `grad_steps`
    (`uqdm train --grad-steps k`); None (all of them) for k = 0."""
    if not k:
        return None
    return frozenset(int(i) for i in rng.choice(network_steps(model), k, replace=False))


def run_chain(
    model: UQDM,
    pixels: torch.Tensor,
    *,
    generator=None,
    net=None,
    backward: bool = False,
    display_lambda: float = 1.0,
    skip_lambda: float = 0.1,
    sync=None,
    grad_steps: frozenset[int] | None = None,
    corrections: bool = False,
    filter_from: int = 1,
    raw_display: float = 0.0,
) -> dict:
    """Run the whole chain on a batch the way the codec does, step by step.

    With backward=True, each step's loss (bits of its coded coefficients + skip_lambda x the bits
    the skipped ones would have cost, which keeps the scales calibrated everywhere + the weighted
    display MSE) is back-propagated at once, the state being treated as data. `sync(last)` gives
    the context each step's forward/backward runs in (DDP: no gradient sync until the last step).
    Returns per-step bits per dim, display PSNR after each step and the fraction of coefficients
    coded. `grad_steps`: back-propagate only these network steps (2 .. T), run the others without
    autograd (the state still needs their scales), and weight the chosen ones' losses by the
    number of network steps over the number chosen, so the gradient's expectation is unchanged.
    `corrections`: measure what the codec codes (corrections.py): the display filter fitted per
    crop gives the image shown, the display loss, the pixel step's location and, band by band
    where it costs less, a Haar step's locations; the colour context moves the locations of
    colours 1 and 2 in every step. `filter_from`: the first step after which the display filter is
    applied (the codec sends none where it gains less than it costs: on photos, after steps 1-3 and
    mostly after step 4); `raw_display`: the share of the display loss taken on the unfiltered image
    where a filter is applied (the images inside a layer are the unfiltered network's)."""
    sched = model.schedule
    x = to_data_units(pixels)
    x_bands = haar.forward(x, model.haar_levels)
    chain = start_chain(x_bands, generator)
    tables = jump_tables(model, x.device, x.dtype)
    out = {"bits": [], "psnr": [], "coded": [], "loss": 0.0}
    net_steps = network_steps(model)
    chosen = set(net_steps) if grad_steps is None else set(grad_steps) & set(net_steps)
    last = max(chosen, default=1)
    weight = len(net_steps) / len(chosen) if chosen else 1.0
    for i in range(1, sched.num_steps + 1):
        grad = i == 1 or i in chosen
        with sync(i == last) if sync else nullcontext(), nullcontext() if grad else torch.no_grad():
            chain = _run_step(
                model,
                net,
                i,
                x,
                x_bands,
                chain,
                tables,
                pixels,
                generator,
                (1.0 if i == 1 else weight) if backward and grad else 0.0,
                display_lambda,
                skip_lambda,
                out,
                (filter_from, raw_display) if corrections else None,
            )
    out["nelbo_bpp"] = 3 * sum(out["bits"])
    out["bpp"] = [3 * sum(out["bits"][: k + 1]) for k in range(sched.num_steps)]
    return out


def _run_step(
    model,
    net,
    i,
    x,
    x_bands,
    chain,
    tables,
    pixels,
    generator,
    grad_weight,
    display_lambda,
    skip_lambda,
    out,
    corrections: tuple[int, float] | None = None,
) -> ChainState:
    """One step of run_chain: prediction, bits, loss (and, where grad_weight > 0, the backward of
    grad_weight x the loss), the next state. `corrections`: (filter_from, raw_display) of run_chain,
    or None for the bare chain."""
    sched = model.schedule
    batch, dims = x.shape[0], x[0].numel()
    shown = shown_locs = None
    filtered = False
    if i == 1:
        locs, log_scales = model.first_prior(chain.z)
        pred = None
    else:
        pred = (net or model)(chain.z, chain.state, torch.full((batch,), i - 1, device=x.device))
        locs, log_scales = pred[0], pred[1]
        filtered = corrections is not None and (i - 1 >= corrections[0] or sched.is_pixel_step(i))
        shown = display_filter(pred[3], x) if filtered else pred[3]
        if filtered:
            shown_locs = haar.forward(shown, model.haar_levels)
        out["psnr"].append(psnr(shown, pixels))
    if not sched.is_pixel_step(i):
        coded, skipped, new_chain, frac = haar_step(
            model, tables, chain, i, x_bands, locs, log_scales, generator, shown_locs, corrections is not None
        )
        loss = (coded + skip_lambda * skipped).sum() / (batch * dims)
        out["bits"].append(coded.sum().item() / (batch * dims))
        out["coded"].append(frac)
    else:
        q = sched.pixel_quant
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 0.5
        x_tilde = x + q * u
        loc, log_scale = shown, pred[2]
        if corrections is not None:
            loc, log_scale = colour_context(x_tilde, shown, pred[2], torch.ones_like(x, dtype=torch.bool))
        bits = step_bits(x_tilde, q, loc, log_scale).flatten(1).sum(1)
        fin = final_bits(x, x_tilde, q, shown, pred[2]).flatten(1).sum(1)
        loss = (bits + fin).sum() / (batch * dims)
        out["bits"] += [bits.sum().item() / (batch * dims), fin.sum().item() / (batch * dims)]
        out["coded"].append(1.0)
        with torch.no_grad():
            out["psnr"].append(psnr(box_mean(x_tilde, q, shown, pred[2]), pixels))
        new_chain = chain
    if pred is not None:
        mse = ((shown - x) ** 2).mean()
        if filtered and corrections[1]:
            mse = (1 - corrections[1]) * mse + corrections[1] * ((pred[3] - x) ** 2).mean()
        loss = loss + display_lambda * display_weight(model, i - 1) * mse
    if grad_weight:
        (loss * grad_weight).backward()
    out["loss"] += loss.item()
    return new_chain.detach()


def psnr(x_data: torch.Tensor, pixels: torch.Tensor) -> float:
    mse = ((to_pixels(x_data) - pixels.float()) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))

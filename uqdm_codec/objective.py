"""The training objective: the UQDM negative ELBO in bits, differentiable (torch).

Each step's KL equals the expected code length of its universally quantised symbols (see
docs/FORMAT.md, "Probability model"), so the loss below is what the codec pays, in expectation.
The codec's numpy twin of these formulas is `entropy.py`; tests check the two agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import haar
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


def sample_chain(x: torch.Tensor, model: UQDM, generator: torch.Generator | None = None):
    """Run the forward chain on x (B,3,H,W). Returns the Haar-band latents of states 0..T and, for
    steps 1..T, x_tilde (a dict band -> tensor for Haar steps, a pixel tensor for pixel steps)."""
    sched, levels = model.schedule, model.haar_levels
    x_bands = haar.forward(x, levels)

    def noise_like(t, uniform):
        fn = torch.rand if uniform else torch.randn
        r = fn(t.shape, generator=generator, device=t.device, dtype=t.dtype)
        return r - 0.5 if uniform else r

    z = [noise_like(t, False) for t in x_bands]
    states, tildes = [z], [None]
    for i in range(1, sched.num_steps + 1):
        if sched.is_pixel_step(i):
            c = sched.pixel_step(i)
            x_tilde = x + c.quant_step * noise_like(x, True)
            z_pix = c.coef_z * haar.inverse(z) + c.coef_x * x_tilde
            z = haar.forward(z_pix, levels)
            tildes.append(x_tilde)
        else:
            z = list(z)
            step_tildes = {}
            for b, c in sched.band_steps(i):
                xt = x_bands[b] + c.quant_step * noise_like(x_bands[b], True)
                z[b] = c.coef_z * z[b] + c.coef_x * xt
                step_tildes[b] = xt
            tildes.append(step_tildes)
        states.append(z)
    return x_bands, states, tildes


def first_step_bits(model: UQDM, x_tilde_ll: torch.Tensor) -> torch.Tensor:
    """Bits of step 1 (LL only, prior independent of the data) per sample."""
    c = model.schedule.band_steps(1)[0][1]
    loc = model.first_loc.view(1, 3, 1, 1).expand_as(x_tilde_ll)
    ls = model.first_log_scale.view(1, 3, 1, 1).expand_as(x_tilde_ll)
    bound = haar.band_bound(0, model.haar_levels)
    return step_bits(x_tilde_ll, c.quant_step, loc, ls, bound).flatten(1).sum(1)


def step_and_final_bits(model: UQDM, i: int, x, tildes_i, pred) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits of step i (>= 2) and of the lossless layer (0 unless i == T), per sample, given the
    prediction `pred` = model.predict(state i-1)."""
    sched = model.schedule
    locs, log_scales, pixel_log_scale, display = pred
    zero = torch.zeros(x.shape[0], device=x.device)
    if sched.is_pixel_step(i):
        c = sched.pixel_step(i)
        bits = step_bits(tildes_i, c.quant_step, display, pixel_log_scale).flatten(1).sum(1)
        if i < sched.num_steps:
            return bits, zero
        fin = final_bits(x, tildes_i, c.quant_step, display, pixel_log_scale).flatten(1).sum(1)
        return bits, fin
    bits = zero
    for b, c in sched.band_steps(i):
        bound = haar.band_bound(b, model.haar_levels)
        sb = step_bits(tildes_i[b], c.quant_step, locs[b].clamp(-bound, bound), log_scales[b], bound)
        bits = bits + sb.flatten(1).sum(1)
    return bits, zero


def uqdm_loss(
    model: UQDM, pixels: torch.Tensor, step_of_sample: torch.Tensor, display_lambda: float = 1.0, net=None
):
    """Random-step estimate of the negative ELBO (bits per dim) plus a weighted display MSE.

    Every sample pays step 1 exactly (it needs no network) and one network step
    `step_of_sample[b]` in 2..T, scaled by T-1; the lossless layer is paid with step T.
    `net` runs the prediction (a DDP wrapper under torchrun); default `model`.
    """
    sched = model.schedule
    T = sched.num_steps
    x = to_data_units(pixels)
    x_bands, states, tildes = sample_chain(x, model)
    dims = x[0].numel()
    bits_first = first_step_bits(model, tildes[1][0])

    idx = step_of_sample.to(x.device)
    z_in = [
        torch.stack([states[int(i) - 1][b][k] for k, i in enumerate(idx.tolist())])
        for b in range(len(x_bands))
    ]
    pred = (net or model)(z_in, idx - 1)
    bits_step = torch.zeros(x.shape[0], device=x.device)
    bits_final = torch.zeros(x.shape[0], device=x.device)
    for i in sorted(set(idx.tolist())):
        sel = idx == i
        sub_pred = tuple([t[sel] for t in p] if isinstance(p, list) else p[sel] for p in pred)
        tl = tildes[i]
        sub_tildes = tl[sel] if torch.is_tensor(tl) else {b: t[sel] for b, t in tl.items()}
        s, f = step_and_final_bits(model, i, x[sel], sub_tildes, sub_pred)
        bits_step[sel] = s
        bits_final[sel] = f

    noise = torch.tensor([sched.noise(int(i) - 1) for i in idx.tolist()], device=x.device)
    c_out2 = noise**2 * PIXEL_SIGMA_DATA**2 / (noise**2 + PIXEL_SIGMA_DATA**2)
    disp = ((pred[3] - x) ** 2).flatten(1).mean(1) / c_out2

    per_sample = (bits_first + (T - 1) * (bits_step + bits_final)) / dims
    loss = per_sample.mean() + display_lambda * (T - 1) * disp.mean()
    metrics = {
        "nelbo_bpd": per_sample.mean().item(),
        "first_bpd": (bits_first / dims).mean().item(),
        "step_bpd": (bits_step / dims).tolist(),
        "final_bpd": (bits_final / dims).tolist(),
        "display": disp.mean().item(),
    }
    return loss, metrics


@torch.no_grad()
def chain_metrics(model: UQDM, pixels: torch.Tensor, seed: int = 0) -> dict:
    """Full chain on a batch: expected bits per dim of every layer and the PSNR of the decoder's
    display after every step (training logs)."""
    sched = model.schedule
    T = sched.num_steps
    x = to_data_units(pixels)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    _, states, tildes = sample_chain(x, model, gen)
    dims = x.numel()
    bits = [first_step_bits(model, tildes[1][0]).sum().item() / dims]
    psnrs = []
    b = x.shape[0]
    for i in range(2, T + 1):
        pred = model.predict(states[i - 1], torch.full((b,), i - 1, device=x.device))
        psnrs.append(psnr(pred[3], pixels))
        s, f = step_and_final_bits(model, i, x, tildes[i], pred)
        bits.append(s.sum().item() / dims)
    c = sched.pixel_step(T)
    psnrs.append(psnr(box_mean(tildes[T], c.quant_step, pred[3], pred[2]), pixels))
    bits.append(f.sum().item() / dims)
    cum = [3 * sum(bits[: k + 1]) for k in range(T)]
    return {
        "bpp": [round(v, 4) for v in cum],
        "psnr": [round(p, 2) for p in psnrs],
        "lossless_bpp": round(3 * sum(bits), 4),
    }


def psnr(x_data: torch.Tensor, pixels: torch.Tensor) -> float:
    mse = ((to_pixels(x_data) - pixels.float()) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))

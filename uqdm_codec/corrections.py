"""The codec's per-image corrections, as the trainer's objective sees them (torch, differentiable).

Why: the encoder fits a colour context (colour.py) and a display filter (display_filter.py) to
every image it codes, and together they take about a quarter off the bits (docs/MODEL.md sections
12, 13). A trainer that measures the chain without them spends its capacity on errors those fits
remove anyway (run v11w: -0.72 % on the bare chain, +0.02 % in real files; section 8). Here the
same least-squares fits are made per crop inside the training step, so the loss is what the codec
pays: the fitted parameters are treated as constants (no gradient through the solve), while the
locations, scales and residuals they act on carry gradient to the network.

Unlike the codec's, these fits are unquantised, in-sample per crop and free of side information
(the codec rounds taps to 2^-14, beta and f to 1/64, searches f instead of taking a variance
ratio, and sends a filter only where it repays its bytes), and the codec's lossless context and
known intervals are not modelled: measured, the corrected estimate's gains are about twice what
real files show (docs/MODEL.md section 19).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .colour import CLIP, MIN_FIT

FILTER_RADIUS = 2  # the codec sends radius 1 or 2; the larger window contains the smaller
RIDGE = 1e-6  # relative Tikhonov term: keeps the normal equations of flat or grey crops solvable
FACTOR_RANGE = (0.25, 1.25)  # the scale factors the codec can send (colour.FACTOR_CODES)


def display_filter(image: torch.Tensor, target: torch.Tensor, radius: int = FILTER_RADIUS) -> torch.Tensor:
    """image (B, 3, H, W) -> the image the decoder would show: image + a cross-colour filter over
    a (2r+1)^2 window + a bias, fitted per sample by least squares against `target`, clipped to
    [-1, 1] (display_filter.apply's form; edge pixels repeated outside the image)."""
    b, c, h, w = image.shape
    k = 2 * radius + 1
    window = F.unfold(F.pad(image, (radius,) * 4, mode="replicate"), k)  # (B, C k k, H W)
    feats = torch.cat([window, torch.ones_like(window[:, :1])], dim=1)
    with torch.no_grad():
        f = feats.detach().double()
        gram = f @ f.transpose(1, 2)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        scale = gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
        rhs = f @ (target - image).detach().double().flatten(2).transpose(1, 2)
        taps = torch.linalg.solve(gram + RIDGE * scale * eye, rhs).to(image.dtype)  # (B, P, 3)
    return (image + (taps.transpose(1, 2) @ feats).view(b, c, h, w)).clamp(-1.0, 1.0)


def _sums(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of a * b over every axis but the batch."""
    return (a * b).flatten(1).sum(1)


def colour_context(x_tilde, loc, log_scale, coded) -> tuple[torch.Tensor, torch.Tensor]:
    """(loc, log_scale) with colour 1's location moved by beta10 * s * r0 and colour 2's by
    s * (beta20 r0 + beta21 r1), and their scales multiplied by f1, f2: colour.py's context, r being
    the clipped residuals (x~ - m) / s of the coded elements of the colours before (0 where the
    partner is not coded). beta by least squares per sample over the coded elements, f the ratio of
    the residuals' RMS after and before, in the codec's range; a sample with fewer than MIN_FIT
    coded elements of a colour gets none (beta 0, f 1), as in the codec. The colour axis is -3
    (haar.py)."""
    s = torch.exp(log_scale)
    w = coded.to(loc.dtype)
    r = ((x_tilde - loc) / s).clamp(-CLIP, CLIP) * w
    r0, r1 = r.select(-3, 0), r.select(-3, 1)
    with torch.no_grad():  # float64: a grey crop has r0 = r1 = r2, a singular 2x2 system
        d0, d1, d2 = (t.detach().double() for t in r.unbind(-3))
        m1, m2 = (w.select(-3, c).double() for c in (1, 2))
        tiny = 1e-6
        b10 = _sums(m1 * d0, d1) / (_sums(m1 * d0, d0) + tiny)
        a00, a01, a11 = _sums(m2 * d0, d0), _sums(m2 * d0, d1), _sums(m2 * d1, d1)
        ridge = RIDGE * (a00 + a11) + tiny  # splits the weight where colours 0 and 1 are the same
        a00, a11 = a00 + ridge, a11 + ridge
        y0, y1 = _sums(m2 * d0, d2), _sums(m2 * d1, d2)
        det = a00 * a11 - a01 * a01
        b20, b21 = (a11 * y0 - a01 * y1) / det, (a00 * y1 - a01 * y0) / det
        shape = (-1,) + (1,) * (d0.dim() - 1)
        b10, b20, b21 = (v.view(shape) for v in (b10, b20, b21))
        e1, e2 = d1 - b10 * d0, d2 - b20 * d0 - b21 * d1
        f1 = (_sums(m1 * e1, e1) / (_sums(m1 * d1, d1) + tiny)).sqrt().clamp(*FACTOR_RANGE).view(shape)
        f2 = (_sums(m2 * e2, e2) / (_sums(m2 * d2, d2) + tiny)).sqrt().clamp(*FACTOR_RANGE).view(shape)
        few1 = (m1.flatten(1).sum(1) < MIN_FIT).view(shape)
        few2 = (m2.flatten(1).sum(1) < MIN_FIT).view(shape)
        b10, f1 = torch.where(few1, 0.0, b10), torch.where(few1, 1.0, f1)
        b20, b21, f2 = torch.where(few2, 0.0, b20), torch.where(few2, 0.0, b21), torch.where(few2, 1.0, f2)
        b10, b20, b21, f1, f2 = (v.to(loc.dtype) for v in (b10, b20, b21, f1, f2))
    l0, l1, l2 = loc.unbind(-3)
    s1, s2 = s.select(-3, 1), s.select(-3, 2)
    new_loc = torch.stack([l0, l1 + s1 * b10 * r0, l2 + s2 * (b20 * r0 + b21 * r1)], dim=-3)
    ls0, ls1, ls2 = log_scale.unbind(-3)
    new_ls = torch.stack([ls0, ls1 + torch.log(f1), ls2 + torch.log(f2)], dim=-3)
    return new_loc, new_ls

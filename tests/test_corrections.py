"""The trainer's twins of the codec's per-image corrections (corrections.py)."""

from __future__ import annotations

import numpy as np
import torch

from uqdm_codec import corrections, display_filter
from uqdm_codec.objective import run_chain, step_bits, to_data_units

from .conftest import make_tiny_model, synthetic_image


def _image(seed: int, size: int = 48) -> torch.Tensor:
    pixels = synthetic_image(size, size, seed=seed).transpose(2, 0, 1)
    return to_data_units(torch.from_numpy(np.ascontiguousarray(pixels)))


def _tiny_model_and_photos():
    """conftest's tiny model and 2 synthetic photos, as (B, 3, H, W) uint8."""
    pixels = np.stack([synthetic_image(32, 32, seed=k) for k in range(2)]).transpose(0, 3, 1, 2)
    return make_tiny_model(), torch.from_numpy(np.ascontiguousarray(pixels))


def test_display_filter_removes_colour_speckle_and_keeps_a_clean_image():
    """Per-colour noise on an image is what the codec's filter removes; the fit is per sample, the
    filtered image is never worse in-sample, and an image equal to the target stays itself."""
    target = torch.stack([_image(0), _image(1)])
    noisy = (target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))).clamp(
        -1, 1
    )
    shown = corrections.display_filter(noisy, target)
    before = ((noisy - target) ** 2).flatten(1).mean(1)
    after = ((shown - target) ** 2).flatten(1).mean(1)
    assert shown.shape == noisy.shape and bool((after < 0.8 * before).all())
    assert torch.allclose(corrections.display_filter(target, target), target, atol=1e-4)


def test_display_filter_matches_the_codec_filter_of_the_same_taps():
    """The trainer's filtered image is display_filter.apply's with the least-squares taps: fit the
    codec's (quantised) filter on the same images and the two agree to the rounding of the taps."""
    target = _image(2)
    noisy = (target + 0.04 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(
        -1, 1
    )
    ours = corrections.display_filter(noisy[None], target[None], radius=1)[0].numpy()
    codec = display_filter.fit(noisy.double().numpy(), target.double().numpy(), radii=(1,))[0]
    theirs = display_filter.apply(codec, noisy.double().numpy())
    assert np.abs(ours - theirs).max() < 2e-3


def test_display_filter_passes_gradient_to_the_image():
    target = _image(3)[None]
    image = (target * 0.9).requires_grad_()
    ((corrections.display_filter(image, target) - target) ** 2).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_colour_context_uses_correlated_residuals_and_leaves_colour_0():
    """Residuals of colour 1 that follow colour 0's (slope 0.8) are mostly removed: colour 1's
    location moves towards x~, its scale narrows, its bits fall; colour 0 is untouched, and where
    too few elements are coded (colour.MIN_FIT) nothing moves."""
    gen = torch.Generator().manual_seed(0)
    shape = (2, 3, 3, 16, 16)  # batch, orientation, colour, rows, columns (haar.py's detail bands)
    r0 = torch.randn(shape[:2] + shape[3:], generator=gen)
    err = torch.stack([r0, 0.8 * r0 + 0.3 * torch.randn(r0.shape, generator=gen), 0.5 * r0], dim=2)
    loc, log_scale = torch.zeros(shape), torch.zeros(shape)
    x_tilde = loc + err
    coded = torch.ones(shape, dtype=torch.bool)
    new_loc, new_ls = corrections.colour_context(x_tilde, loc, log_scale, coded)
    assert torch.equal(new_loc[:, :, 0], loc[:, :, 0]) and torch.equal(new_ls[:, :, 0], log_scale[:, :, 0])
    assert ((x_tilde - new_loc)[:, :, 1] ** 2).mean() < 0.2 * ((x_tilde - loc)[:, :, 1] ** 2).mean()
    assert bool((new_ls[:, :, 1] < 0).all())
    before = step_bits(x_tilde, 0.5, loc, log_scale, 8.0)[:, :, 1:].sum()
    after = step_bits(x_tilde, 0.5, new_loc, new_ls, 8.0)[:, :, 1:].sum()
    assert after < 0.8 * before
    none = torch.zeros(shape, dtype=torch.bool)
    same_loc, same_ls = corrections.colour_context(x_tilde, loc, log_scale, none)
    assert torch.equal(same_loc, loc) and torch.equal(same_ls, log_scale)


def test_run_chain_with_corrections_codes_fewer_bits_and_trains():
    """On photos with correlated colours the corrected chain costs less than the bare one, shows
    an image at least as good (in-sample least squares), and back-propagates finite gradients."""
    model, pixels = _tiny_model_and_photos()
    bare = run_chain(model, pixels, generator=torch.Generator().manual_seed(1))
    corr = run_chain(
        model, pixels, generator=torch.Generator().manual_seed(1), corrections=True, backward=True
    )
    assert corr["nelbo_bpp"] < bare["nelbo_bpp"]
    assert all(c >= b - 0.05 for b, c in zip(bare["psnr"], corr["psnr"]))
    grads = [p.grad for p in model.denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_grey_crops_give_finite_corrections():
    """A grey photo has the same residual in every colour: the colour-2 system is singular, and the
    ridge must keep the fit finite (a NaN here would skip every batch holding a grey crop)."""
    grey = _image(4)[:1].expand(3, -1, -1)[None].contiguous()
    shape = (1, 3, 3, 24, 24)
    err = torch.randn((1, 1, 1, 24, 24), generator=torch.Generator().manual_seed(2)).expand(shape)
    loc, log_scale = torch.zeros(shape), torch.zeros(shape)
    new_loc, new_ls = corrections.colour_context(
        loc + err, loc, log_scale, torch.ones(shape, dtype=torch.bool)
    )
    assert torch.isfinite(new_loc).all() and torch.isfinite(new_ls).all()
    assert torch.allclose(new_loc[:, :, 2], err[:, :, 2], atol=1e-3)  # colour 2 follows the others
    noisy = grey + 0.03 * torch.randn(grey.shape, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(corrections.display_filter(noisy, grey)).all()


def test_filter_from_leaves_the_early_images_unfiltered():
    """`filter_from` k: the images after steps 1 .. k-1 are the network's own (the bare chain's
    PSNR), the later ones filtered; colour context still in every step, so the bits still fall."""
    model, pixels = _tiny_model_and_photos()
    bare = run_chain(model, pixels, generator=torch.Generator().manual_seed(1))
    late = run_chain(
        model, pixels, generator=torch.Generator().manual_seed(1), corrections=True, filter_from=5
    )
    full = run_chain(model, pixels, generator=torch.Generator().manual_seed(1), corrections=True)
    # psnr[k] is the image after step k + 1 (the last entry: the pixel step's box mean)
    assert late["psnr"][:4] == bare["psnr"][:4]
    assert late["psnr"][4:7] == full["psnr"][4:7] and late["psnr"][3] != full["psnr"][3]
    assert late["bits"][4] < bare["bits"][4]  # step 5, after an unfiltered image: the colour context

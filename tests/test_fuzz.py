"""Property-based hardening: hostile bytes end in the codec's own error or a correct decode, fast.

A larger campaign (>= 10,000 cases) is scripts/fuzz_campaign.py; this is the CI-sized subset."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from uqdm_codec import container, lossless_tail

from .conftest import synthetic_image
from .fuzz_cases import inner_mutations, mutations, run_case, tail_files, tail_mutations

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def small_file(codec):
    img = synthetic_image(20, 28, seed=5)
    return img, codec.encode(img, seed=9)


@pytest.fixture(scope="module")
def tagged_file(codec):
    from PIL import ImageCms

    from .test_metadata import XMP, block, camera_exif

    img = synthetic_image(20, 28, seed=5)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    alpha = img[:, :, 1] // 2  # a version-9 header with all five extensions (FORMAT.md 1.2)
    exif, xmp = block(camera_exif(gps=True)), XMP
    extras = {"icc_profile": profile, "alpha": alpha, "exif": exif, "xmp": xmp}
    return img, codec.encode(img, seed=9, psnr_index=True, **extras)


@pytest.mark.parametrize("which", ["small_file", "tagged_file"])
def test_mutated_files_never_crash(codec, which, request):
    img, data = request.getfixturevalue(which)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutations(data))
    def check(blob):
        outcome = run_case(codec, blob, time_limit=10.0)
        assert not outcome.startswith(("crash", "slow")), outcome
        if outcome == "ok" and blob == data:
            assert np.array_equal(codec.decode(blob).pixels, img)

    check()


def test_absurd_header_is_refused_without_allocating(codec):
    from .fuzz_cases import header_with

    for w, h in ((100_000, 100_000), (65535, 65535), (1, 10**9 % 2**32)):
        assert run_case(codec, header_with(w, h), time_limit=1.0) == "error:FormatError"


def _never_crash(codec, strategy, examples: int) -> None:
    """Every blob the strategy draws ends in the codec's own error or a decode, within 10 s."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(strategy)
    def check(blob):
        outcome = run_case(codec, blob, time_limit=10.0)
        assert not outcome.startswith(("crash", "slow")), outcome

    check()


@pytest.fixture(scope="module")
def tail_sources(codec):
    img = synthetic_image(20, 28, seed=7)
    return img, tail_files(codec, img)


def test_tail_sources_cover_every_colour_order(tail_sources):
    _, sources = tail_sources
    for name in ("interlaced", "raster", "all raster"):
        params = container.parse(sources[name]).layers[-1].tail_params
        assert params[0] == lossless_tail.GREEN_ORDERS.index(name)


@pytest.mark.parametrize("name", ["interlaced", "raster", "all raster", "after step 3"])
def test_damaged_tails_inside_their_checksums_never_crash(codec, tail_sources, name):
    img, sources = tail_sources
    data = sources[name]
    assert np.array_equal(codec.decode(data).pixels, img)
    _never_crash(codec, tail_mutations(data), examples=40)


def test_damaged_layers_inside_their_checksums_never_crash(codec, small_file):
    img, data = small_file
    parsed = container.parse(data)
    for layer, end in zip(parsed.layers, parsed.layer_offsets):  # the strategy rebuilds layers from these
        assert data[end - layer.size : end] == layer.to_bytes()
    _never_crash(codec, inner_mutations(data), examples=120)

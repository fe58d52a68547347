"""docs/FORMAT.md implemented a second time from the text alone (tests/spec_*.py, NumPy, importing
nothing of uqdm_codec) agrees with the codec bit for bit: the document is complete enough to write
a decoder from, and the arithmetic does not depend on how it is done (int64 tensors and float64
sums here, float32 convolutions in the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from uqdm_codec import portable
from uqdm_codec.exactmodel import load_codec_model, save_exact

from . import spec_network as spec
from .conftest import gray_icc_profile

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "uqdm-small.safetensors"


def arguments() -> np.ndarray:
    rng = np.random.default_rng(0)
    special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        1e-300,
        5e-324,
        709.78,
        709.782712893384,
        709.79,
        -745.9,
        -746.0,
        -746.1,
        1e308,
        -1e308,
        np.inf,
        -np.inf,
        np.nan,
        0.5,
        0.7071067811865476,
        2.0**-30,
    ]
    return np.concatenate(
        [special, rng.normal(0, 3, 20000), rng.normal(0, 300, 5000), np.exp(rng.uniform(-700, 700, 5000))]
    )


@pytest.mark.parametrize("name", ["exp", "log", "log1p", "sigmoid", "softplus", "silu"])
def test_portable_functions_follow_the_text(name):
    x = arguments()
    if name == "log":
        x = np.abs(x)
    with np.errstate(all="ignore"):  # inf - inf and 0 * inf at the edges are part of the test
        ours, theirs = getattr(portable, name)(x), getattr(spec, f"{name}_p")(x)
    assert np.array_equal(ours, theirs, equal_nan=True)
    assert ours.view(np.int64)[~np.isnan(ours)].tolist() == theirs.view(np.int64)[~np.isnan(theirs)].tolist()


def inputs(multiple: int, h: int, w: int, seed: int, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1.2, 1.2, (3, h, w)) * spread
    maps = [rng.uniform(0, 1, (9, h >> lv, w >> lv)) for lv in range(1, 4)]
    maps.append(rng.uniform(0, 1, (12, h // multiple, w // multiple)))
    return image, maps


def reference(model, image, maps, step):
    qi, qm = model.denoiser.quantize_inputs(image, maps)
    put = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # noqa: E731
    with torch.inference_mode():
        bands, pixel = model.denoiser(put(qi), [put(m) for m in qm], step)
    return [b[0].numpy() for b in bands], pixel[0].numpy()


def assert_same(model, path, h, w, steps, spread=1.0):
    net = spec.SpecNetwork.load(path)
    for step in steps:
        image, maps = inputs(model.multiple, h, w, seed=step, spread=spread)
        bands, pixel = reference(model, image, maps, step)
        s_bands, s_pixel = net(image, maps, step)
        assert len(bands) == len(s_bands) == 5
        for ours, theirs in zip(bands, s_bands):
            assert ours.shape == theirs.shape and np.array_equal(ours.astype(np.int64), theirs)
        assert pixel.shape == s_pixel.shape and np.array_equal(pixel.astype(np.int64), s_pixel)
        assert any(np.abs(b).max() > 0 for b in s_bands)


def test_the_shipped_network_follows_the_text():
    """Every diffusion step's row of the shipped model, on a 48x32 input (not square, 3x2 at 1/16)."""
    assert_same(load_codec_model(SHIPPED), SHIPPED, 48, 32, steps=range(1, 8))


def test_clipped_streams_follow_the_text(tiny_model, tmp_path):
    """Inputs far outside the calibrated range, so inputs, streams and heads hit their clips."""
    path = tmp_path / "tiny.safetensors"
    save_exact(tiny_model, path)
    assert_same(tiny_model, path, 32, 64, steps=(1, 7), spread=300.0)


def test_the_priors_follow_the_text():
    """5.1-5.3 on a random state of the shipped model (every coefficient in a random state, some
    never coded): locations and scales of every band, and the pixel step's scales, bit for bit."""
    import json

    from uqdm_codec.inference import PriorNetwork

    model = load_codec_model(SHIPPED)
    config = json.loads(SHIPPED.with_suffix(".json").read_text())
    net = spec.SpecNetwork(config, {f"net.{k}": v.numpy() for k, v in model.denoiser.params.items()})
    rng = np.random.default_rng(5)
    h, w = 32, 48
    shapes = [(3, h // 16, w // 16), (3, 3, h // 16, w // 16)] + [
        (3, 3, h >> lv, w >> lv) for lv in (3, 2, 1)
    ]
    for step in (1, 4, 7):
        z = [rng.normal(0, 1, s) * 2.0 ** -(b - 1) for b, s in enumerate(shapes)]
        states = [rng.integers(0, step + 1, s).astype(np.uint8) for s in shapes]
        ours = PriorNetwork(model, "cpu").predict(z, states, step)
        locs, scales, pixel = spec.priors(config, net, z, states, step)
        for b in range(5):
            assert np.array_equal(ours.locs[b], locs[b]) and np.array_equal(ours.scales[b], scales[b])
        assert np.array_equal(ours.pixel_scale, pixel)


# ----------------------------------------------------------------------------- sections 1 and 2


@pytest.fixture(scope="module")
def spec_files(tiny_model):
    """Files of every header form: plain, tiled, tails, an early tail, mirrors, extensions."""
    from uqdm_codec.codec import Codec

    from .conftest import synthetic_image

    img = synthetic_image(24, 40, seed=2)
    codec = Codec(tiny_model, "cpu")
    alpha = (np.arange(24 * 40).reshape(24, 40) % 251).astype(np.uint8)
    return {
        "plain": codec.encode(img, seed=1),
        "tiled": Codec(tiny_model, "cpu", region=16).encode(synthetic_image(20, 40, seed=4), seed=2),
        "tail": codec.encode(img, seed=3, tail=True),
        "early tail": codec.encode(img, seed=4, tail_after=2),
        "mirrors": codec.encode(img, seed=5, mirrors=2, fast=True),
        "extensions": codec.encode(img, seed=6, alpha=alpha, xmp=b"<x:xmpmeta/>", psnr_index=True),
    }


def assert_reads_alike(data: bytes):
    from uqdm_codec import files
    from uqdm_codec.errors import FormatError

    from . import spec_container

    try:
        ref = files.info(data)
    except FormatError:
        with pytest.raises((spec_container.Refused, spec_container.Short)):
            spec_container.read(data)
        return None
    ours = spec_container.read(data)
    head = ref.header
    assert (ours.width, ours.height, ours.steps, ours.seed, ours.name, 16 * ours.tile16) == (
        head.width,
        head.height,
        head.num_steps,
        head.seed,
        head.model_name,
        head.tile,
    )
    assert ours.region_size == head.region and (ours.tail_step is not None) == head.tail
    if head.tail:
        assert ours.tail_form == head.tail_form
    if 1 in ours.extensions:
        assert spec_container.alpha(ours.extensions[1], ours.width, ours.height) == head.alpha
    if 3 in ours.extensions:
        assert spec_container.inflate_whole(ours.extensions[3]) == head.xmp
    if 4 in ours.extensions:
        assert spec_container.psnr_index(ours.extensions[4]) == head.psnr_index
    assert ours.fingerprint.hex() == ref.to_dict()["fingerprint"] and ours.regions == ref.to_dict()["regions"]
    assert ours.mirrors == ref.to_dict()["mirrors"] and ours.header_end == ref.header_bytes
    assert ours.chunk_boundaries() == ref.cut_points
    assert [(c.start, c.end) for r in ours.records for c in r.chunks] == sorted(ref.chunk_spans)
    assert ours.layer_ends() == [layer.end for layer in ref.layers]
    assert ours.complete == ref.to_dict()["complete"]
    assert (
        bool(ours.records and ours.records[-1].chunks and ours.records[-1].chunks[-1].cut)
        == ref.ends_in_cut_chunk
    )
    if ours.tail_step is not None:
        assert ours.tail_step == ref.to_dict()["tail_follows_step"]
    return ours


@pytest.mark.parametrize("name", ["plain", "tiled", "tail", "early tail", "mirrors", "extensions"])
def test_the_container_follows_the_text(spec_files, name):
    """Every chunk boundary, element count and flag of whole files, of their prefixes (on and off
    chunk boundaries), and of files cut inside a chunk by truncate, read from sections 1-2 alone."""
    from uqdm_codec import files

    data = spec_files[name]
    ours = assert_reads_alike(data)
    assert ours.complete and len(ours.records) == ours.layers * ours.regions
    if name == "extensions":
        assert sorted(ours.extensions) == [1, 3, 4]
    cuts = ours.chunk_boundaries()
    lengths = set(cuts) | {c + d for c in cuts for d in (-5, -1, 1, 3, 6)} | set(range(0, len(data), 97))
    for n in sorted(k for k in lengths if 0 <= k <= len(data)):
        assert_reads_alike(data[:n])
    for budget in range(cuts[1] + 9, len(data), max(1, len(data) // 23)):
        assert_reads_alike(files.truncate(data, max_bytes=budget))


def test_damaged_files_are_refused_alike(spec_files):
    """A flipped bit anywhere in a file: both readers refuse it (a CRC covers every byte), and a
    byte appended to a whole file is refused by both as bytes after the last layer."""
    from . import spec_container

    for name in ("plain", "tiled", "extensions"):
        data = spec_files[name]
        for pos in np.random.default_rng(len(data)).choice(len(data), 40, replace=False):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << int(pos % 8)
            assert assert_reads_alike(bytes(damaged)) is None, (name, pos)
        assert assert_reads_alike(data + b"\0") is None
        with pytest.raises(spec_container.Refused):
            spec_container.read(data + b"\0")


# ----------------------------------------------------------------------------- sections 3 to 7

CROP = (slice(200, 325), slice(500, 690))  # of kodim23: 125 x 190, colour contexts, two display
# filters, priors from the shown image; tails in both green orders
GRAY_PROFILE = gray_icc_profile()  # 1.2 bit 6, after bits 4 and 5
DECODER_CASES = {  # name: (model, image, encode options, the tail's green order O or None)
    "plain": ("tiny", "synthetic", {}, None),
    "tiled": ("tiny", "synthetic", {"region": 16}, None),
    "mirrors 2": ("tiny", "synthetic", {"mirrors": 2}, None),
    "mirrors 4": ("tiny", "synthetic", {"mirrors": 4, "fast": True}, None),
    "photo": ("shipped", "crop", {"fast": True}, None),
    "tail, raster": ("tiny", "synthetic", {"tail": True}, 2),
    "early tail": ("tiny", "synthetic", {"tail_after": 2}, 2),
    "tail, interlaced": ("tiny", "gray", {"tail": True, "fast": True}, 0),
    "tail, split passes": ("tiny", "noise", {"tail": True, "fast": True}, 0),
    "tail, green raster": ("tiny", "small noise", {"tail": True, "fast": True}, 1),
    "photo, tail": ("shipped", "crop", {"tail": True, "fast": True}, 1),
    "photo, early tail": ("shipped", "crop", {"tail_after": 3, "fast": True}, 2),
    "gray": (
        "tiny",
        "gray",
        {"gray": True, "tail": False, "icc_profile": GRAY_PROFILE, "psnr_index": True},
        None,
    ),
}


def case_image(kind: str) -> np.ndarray:
    from PIL import Image

    from .conftest import synthetic_image

    if kind == "synthetic":
        return synthetic_image(24, 40, seed=2)
    if kind == "gray":
        return np.repeat(synthetic_image(32, 48, seed=1)[:, :, :1], 3, axis=2)
    if kind == "noise":  # 256 x 512: the passes of 6.6 with 32768 pixels or more are split in two
        return np.random.default_rng(0).integers(0, 256, (256, 512, 3)).astype(np.uint8)
    if kind == "small noise":
        return np.random.default_rng(0).integers(0, 256, (32, 48, 3)).astype(np.uint8)
    photo = Image.open(Path(__file__).resolve().parents[1] / "samples" / "kodim23.png").convert("RGB")
    return np.asarray(photo)[CROP]


@pytest.fixture(scope="module")
def tiny_file(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.safetensors"
    save_exact(tiny_model, path)
    return path


def encode_case(name: str, tiny_model, tiny_file, network_flags: bool = False):
    """(model, its path, the image, the file) of DECODER_CASES[name]; network_flags: without
    --fast where the case has no tail, so that inner chunks carry NETWORK flags too."""
    from uqdm_codec.codec import DEFAULT_REGION, Codec

    which, kind, options, _ = DECODER_CASES[name]
    model, model_path = (tiny_model, tiny_file) if which == "tiny" else (load_codec_model(SHIPPED), SHIPPED)
    options = dict(options)
    if network_flags and not options.get("tail"):
        options.pop("fast", None)
    original = case_image(kind)
    codec = Codec(model, "cpu", region=options.pop("region", DEFAULT_REGION))
    return model, model_path, original, codec.encode(original, seed=1, **options)


@pytest.mark.parametrize("name", list(DECODER_CASES))
def test_a_second_decoder_follows_the_text(tiny_model, tiny_file, name):
    """tests/spec_decoder.py, written from sections 3-7 alone, decodes whole files: every layer's
    display check holds (the step images are the encoder's, bit for bit), the last image is the
    original, and each step image equals the reference decoder's where the layer's last chunk
    shows its candidate."""
    from uqdm_codec import decode

    from . import spec_container
    from .spec_decoder import SpecDecoder

    model, model_path, original, data = encode_case(name, tiny_model, tiny_file)
    order = DECODER_CASES[name][3]
    f = spec_container.read(data)
    if order is not None:  # the tail's green order (6.6.1) this case is here to cover
        assert f.tail_step is not None and f.records[-1].fields["tail"][0] == order
    images = SpecDecoder(model_path).decode(data)
    steps = f.steps if f.tail_step is None else f.tail_step
    assert len(images) == steps + 1 and np.array_equal(images[-1].transpose(1, 2, 0), original)
    compared = 0
    for step in range(1, steps + 1):
        if all(r.chunks[-1].flags & 1 for r in f.records if r.layer == step):
            ref = np.asarray(decode(data, steps=step, model=model).convert("RGB"))  # a gray file's: L
            assert np.array_equal(images[step - 1].transpose(1, 2, 0), ref), step
            compared += 1
    assert compared >= steps - 2
    if name == "photo":
        layers = [r.fields for r in f.records]
        assert any(fl.get("from_display") for fl in layers) and any(fl.get("filter") for fl in layers)
        assert any(len(fl.get("colour", {})) > 1 for fl in layers) and layers[-1]["lossless"] is not None


def prefixes(data: bytes, every: int, budgets: int, last_layer_only: bool = False) -> list[bytes]:
    """Every `every`-th chunk boundary, 7 bytes past some (a truncated tail), and `budgets` cuts
    by truncate (most end in a cut chunk, 2.1); of the last layer only if asked."""
    from uqdm_codec import files

    from . import spec_container

    f = spec_container.read(data)
    cuts = f.chunk_boundaries()
    start = f.records[-1].start if last_layer_only else cuts[0]
    cuts = [c for c in cuts if c >= start]
    ends = sorted({*cuts[::every], *(c + 7 for c in cuts[::every] if c + 7 < len(data)), len(data)})
    first = max(start, cuts[1] if len(cuts) > 1 else start) + 9
    return [data[:n] for n in ends] + [
        files.truncate(data, max_bytes=b) for b in np.linspace(first, len(data) - 1, budgets).astype(int)
    ]


PREFIX_CASES = {  # name: (every how many chunk boundaries, how many budgets, the last layer only)
    "plain": (1, 12, False),
    "tiled": (6, 4, False),
    "photo": (16, 3, False),
    "tail, raster": (2, 6, False),
    "tail, interlaced": (2, 6, False),
    "tail, green raster": (2, 4, True),
    "gray": (1, 6, False),
}
SHOWN = {  # what a case's prefixes must have shown between them (section 7)
    "plain": {"blank", "step", "network", "estimates", "pixel step", "lossless", "exact"},
    "tiled": {"step", "lossless"},  # (of a tiled file: what its last region shows)
    "photo": {"step", "network", "pixel step", "lossless"},
    "tail, raster": {"blank", "step", "estimates", "tail", "exact"},
    "tail, interlaced": {"blank", "step", "estimates", "tail", "exact"},
    "tail, green raster": {"tail", "exact"},
    "gray": {"blank", "step", "pixel step", "lossless", "exact"},
}


@pytest.mark.parametrize("name", list(PREFIX_CASES))
def test_prefixes_show_what_the_text_says(tiny_model, tiny_file, name):
    """The image on screen (section 7) after prefixes of a file that end anywhere: on chunk
    boundaries inside steps (the network's image, or the per-coefficient estimates), inside the
    pixel step, the lossless layer and the tail (O = 0, 1 and 2), in cut chunks and in truncated
    tails, from the second decoder, equals the reference decoder's."""
    from uqdm_codec import decode

    from .spec_decoder import SpecDecoder

    model, model_path, _, data = encode_case(name, tiny_model, tiny_file, network_flags=True)
    spec, kinds = SpecDecoder(model_path), set()
    for prefix in prefixes(data, *PREFIX_CASES[name]):
        ours = spec.screen(prefix)
        theirs = np.asarray(decode(prefix, model=model).convert("RGB"))  # a gray file's images are L
        assert np.array_equal(ours.transpose(1, 2, 0), theirs), len(prefix)
        kinds.add(spec.shown_kind)
    assert kinds >= SHOWN[name], kinds


GOLDEN = Path(__file__).resolve().parent / "data"
RETIRED_V7 = SHIPPED.parent / "retired" / "uqdm-small-7cca456ccf3075f8185e0abdb787ad41.safetensors"


@pytest.mark.parametrize(
    "name",
    ["v7-kodim23-96x128-m1", "v7-kodim23-96x128-m2"]
    + [f"v8-kodim23-96x128-uqdm0{v}-tail" for v in range(25, 35)],
)
def test_older_files_follow_the_text(name):
    """Files of earlier releases (tests/data: version 7 with and without mirrors, made with
    retired weights; lossless tails of forms 1 to 10): the second decoder gives the reference's
    pixels for the whole file and for a prefix cut inside its last layer."""
    from uqdm_codec import decode, files

    from . import spec_container
    from .spec_decoder import SpecDecoder

    model_path = RETIRED_V7 if name.startswith("v7") else SHIPPED
    model = load_codec_model(model_path)
    data = (GOLDEN / f"{name}.uqd").read_bytes()
    f = spec_container.read(data)
    assert (f.version, f.tail_form) == ((7, None) if name.startswith("v7") else (8, int(name[-7:-5]) - 24))
    last = f.records[-1]
    cut = files.truncate(data, max_bytes=(last.start + len(data)) // 2)
    spec = SpecDecoder(model_path)
    for prefix in (data, cut):
        assert np.array_equal(spec.screen(prefix).transpose(1, 2, 0), np.asarray(decode(prefix, model=model)))

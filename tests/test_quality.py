"""Encoding to a quality or a size (quality.py): the encoder's record of what a decoder shows at
every chunk boundary must be what decoders really show, and a target must give the prefix it
promises, the same bytes as cutting the whole file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import cut_judge, files, quality
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import UqdmError
from uqdm_codec.quality import ScreenTrace, Target, file_order, psnr_of

from .conftest import synthetic_image


def sse(a: np.ndarray, b: np.ndarray) -> int:
    d = a.astype(np.int64) - b
    return int((d * d).sum())


def shown(codec: Codec, data: bytes) -> np.ndarray:
    """The image a decoder shows from these bytes (the blank image from a header alone)."""
    return codec.decode(data).pixels


def check_screen(codec: Codec, img: np.ndarray, data: bytes, screen: list, every: int = 4) -> None:
    """The encoder's record against what decoders show: a streaming decoder fed boundary by
    boundary at every chunk boundary, and a fresh decoder of the prefix alone at every `every`-th
    one and the last (a fresh decode of every prefix costs minutes on a tiled file)."""
    cuts = files.info(data).cut_points
    assert len(screen) == len(cuts) and screen[-1] == 0  # a complete file decodes exactly
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
        decoder, start, streamed = uqdm_codec.Decoder(), 0, []
        for end in cuts:
            decoder.feed(data[start:end])
            start = end
            streamed.append(sse(decoder.latest.pixels, img))
    assert streamed == screen
    for k in sorted({*range(0, len(cuts), every), len(cuts) - 1}):
        assert sse(shown(codec, data[: cuts[k]]), img) == screen[k], cuts[k]
    assert all(a >= b for a, b in zip(screen, screen[1:]))  # quality never falls at a boundary


@pytest.mark.parametrize("options", [{}, {"tail": True}, {"tail_after": 2}, {"tail": None, "fast": True}])
def test_screen_errors_are_what_decoders_show(codec, options):
    img = synthetic_image(40, 56, seed=7)
    screen: list = []
    data = codec.encode(img, seed=11, screen=screen, **options)
    assert data == codec.encode(img, seed=11, **options)  # recording changes no byte
    check_screen(codec, img, data, screen)


def test_screen_errors_of_a_tiled_file(tiny_model):
    tiled = Codec(tiny_model, device="cpu", region=32)
    img = synthetic_image(40, 72, seed=2)
    for options in ({}, {"tail": None}):
        screen: list = []
        data = tiled.encode(img, seed=5, screen=screen, **options)
        assert files.info(data).regions == 6
        check_screen(tiled, img, data, screen)


def test_file_order_interleaves_regions():
    a = ScreenTrace(10, [[8, 6], [5]])
    b = ScreenTrace(20, [[15], [9, 4]])
    # layer 1 of a, layer 1 of b, layer 2 of a, layer 2 of b
    assert file_order([a, b]) == [30, 28, 26, 21, 20, 14, 9]
    assert file_order([ScreenTrace(7)]) == [7]
    with pytest.raises(AssertionError):
        ScreenTrace(1, [[0]]).use_tail(1)


def test_psnr_target_gives_the_shortest_prefix_that_reaches_it(codec, monkeypatch):
    img = synthetic_image(40, 56, seed=4)
    screen: list = []
    full = codec.encode(img, seed=3, screen=screen)
    cuts = files.info(full).cut_points
    pixels = img.shape[0] * img.shape[1]
    values = [psnr_of(e, pixels) for e in screen]
    k = len(values) // 2
    while k and values[k - 1] == values[k]:  # a boundary whose image differs from the one before
        k -= 1
    for target in (values[k], (values[k - 1] + values[k]) / 2):  # exactly reached, or in between
        got: list = []
        data = codec.encode(img, seed=3, target=Target(psnr=target), screen=got)
        # the first boundary that reaches the target, or a cut inside the chunk before it that does
        assert cuts[k - 1] < len(data) <= cuts[k]
        assert data == files.truncate(full, max_bytes=len(data))
        assert got[:-1] == screen[:k] and len(got) == k + 1
        assert sse(shown(codec, data), img) == got[-1] <= screen[k - 1]
        assert psnr_of(got[-1], pixels) >= target
        with monkeypatch.context() as m:  # cuts on chunk boundaries only, as uqdm 0.39
            m.setattr(cut_judge, "MAX_TRIES", 0)
            assert codec.encode(img, seed=3, target=Target(psnr=target)) == full[: cuts[k]]
    # a target beyond every step: the whole file; below the blank image's: the header alone
    assert codec.encode(img, seed=3, target=Target(psnr=400.0)) == full
    assert codec.encode(img, seed=3, target=Target(psnr=values[0] / 2)) == full[: cuts[0]]


@pytest.mark.parametrize("options", [{}, {"tail": True}, {"tail_after": 1}, {"tail": None, "fast": True}])
def test_psnr_cuts_inside_chunks_show_what_was_judged(codec, options):
    """A file cut inside a chunk for a quality (cut_judge.py): the encoder's record of its image is
    what a decoder shows, at or above the target, and the file is what truncate keeps of the whole
    one at its size; in every kind of layer a target can fall in (Haar steps, the pixel step, the
    lossless layer, tails)."""
    img = synthetic_image(40, 56, seed=12)
    screen: list = []
    full = codec.encode(img, seed=5, screen=screen, **options)
    cuts = files.info(full).cut_points
    pixels = 40 * 56
    values = [psnr_of(e, pixels) for e in screen]
    auto, inside = options.get("tail", False) is None, 0
    for k in range(1, len(values)):
        if not values[k - 1] < values[k] < math.inf:
            continue
        target = (values[k - 1] + 2 * values[k]) / 3
        encoded = codec.encode_judged(img, seed=5, target=Target(psnr=target), **options)
        data = encoded.data
        assert encoded.screen[-1] == sse(shown(codec, data), img) and encoded.psnr >= target
        inside += files.info(data).ends_in_cut_chunk
        if auto:  # stopped early, it writes the plain file's header (no TAIL fields) where the
            continue  # whole file chose the tail: not a prefix of that one
        assert cuts[k - 1] < len(data) <= cuts[k], k
        assert data == files.truncate(full, max_bytes=len(data))
        assert encoded.screen[:-1] == screen[:k]
        # the search on the whole file's prefix (scripts/target_curve.py) finds the same cut
        at = quality.Encoded(full[: cuts[k]], screen[: k + 1], 56, 40)
        assert cut_judge.shortest_cut(codec, img, at, target).data == data
    assert inside >= 1  # some target is reached inside a chunk


def test_bpp_and_steps_targets_are_truncate_of_the_whole_file(codec):
    img = synthetic_image(40, 56, seed=9)
    full = codec.encode(img, seed=8)
    size = len(full)
    for bpp in (0.5, 8.0 * size / 40 / 56 * 0.6, 100.0):
        encoded = codec.encode_judged(img, seed=8, target=Target(bpp=bpp))
        assert encoded.data == files.truncate(full, bpp=bpp)
        cut = files.info(encoded.data)
        assert len(encoded.screen) == len(cut.cut_points)  # a cut chunk's end is one of them
        assert encoded.screen[-1] == sse(shown(codec, encoded.data), img)  # judged, cut chunk or not
    for steps in (0, 1, 3, codec.num_steps):
        assert codec.encode(img, seed=8, target=Target(steps=steps)) == files.truncate(full, steps=steps)
    with pytest.raises(UqdmError, match="steps must be between"):
        codec.encode(img, seed=8, target=Target(steps=codec.num_steps + 1))
    coded: list[int] = []
    with pytest.raises(UqdmError, match="smaller than the file header"):
        codec.encode(img, seed=8, target=Target(bpp=0.0), progress=lambda i, n: coded.append(i))
    assert coded == []  # refused before any layer is coded


def test_targets_stop_the_encoder(codec):
    img = synthetic_image(40, 56, seed=1)
    T = codec.num_steps
    for target, options in ((Target(steps=2), {}), (Target(bpp=0.3), {}), (Target(steps=2), {"tail": None})):
        calls: list[tuple[int, int]] = []
        record = lambda i, n, seen=calls: seen.append((i, n))  # noqa: E731
        codec.encode(img, seed=2, target=target, progress=record, **options)
        assert calls[-1] == (T + 1, T + 1)  # the bar ends full
        coded = [i for i, _ in calls[:-1]]
        assert coded == list(range(1, len(coded) + 1)) and len(coded) < T
        if target.steps:
            assert len(coded) == 2  # auto's two ends are never coded


def test_the_bar_is_full_only_once_the_cut_is_judged(codec, monkeypatch):
    """After its last layer a psnr (or bpp) encode still decodes cuts (cut_judge.py): the bar
    stays where the layers left it until that is done."""
    img = synthetic_image(40, 56, seed=1)
    T = codec.num_steps
    whole: list = []
    full = codec.encode(img, seed=2, screen=whole)
    target = psnr_of(whole[len(whole) // 2], 40 * 56) + 0.01
    start, end = max(files.info(full).chunk_spans, key=lambda s: s[1] - s[0])
    inside = 8.0 * ((start + end) // 2) / (40 * 56)  # a budget that ends inside a chunk
    events: list = []
    for name in ("shortest_cut", "judge_end"):
        real = getattr(cut_judge, name)
        wrapped = lambda *a, real=real, name=name, **k: (events.append(name), real(*a, **k))[1]  # noqa: E731
        monkeypatch.setattr(cut_judge, name, wrapped)
    for aim in (Target(psnr=target), Target(bpp=inside), Target()):
        events.clear()
        codec.encode(img, seed=2, target=aim, progress=lambda i, n: events.append((i, n)))
        assert events[-1] == (T + 1, T + 1) and (T + 1, T + 1) not in events[:-1]
        if aim.given:
            assert events[-2] in ("shortest_cut", "judge_end")  # judged before the bar is full
            assert all(i < n for i, n in events[:-2])


def test_a_budget_counts_the_header_extensions(codec):
    """The encoder stops once the file with its header's extensions fills a bpp budget (the layers'
    sizes are counted without them, so that extensions move no chunk boundary)."""
    img = synthetic_image(40, 56, seed=5)
    xmp = np.random.default_rng(0).bytes(1500)  # incompressible: about as many bytes in the header
    full = codec.encode(img, seed=6, xmp=xmp)
    header_end = files.info(full).header_bytes
    budget = 8.0 * (header_end + 1) / (40 * 56)  # one byte past the header: step 1 overflows it
    calls: list[int] = []
    aim = Target(bpp=budget)
    data = codec.encode(img, seed=6, xmp=xmp, target=aim, progress=lambda i, n: calls.append(i))
    assert data == files.truncate(full, bpp=budget)
    assert calls[0] == 1 and calls[1] == codec.num_steps + 1  # one layer coded, then the bar ends full


def test_tiled_targets(tiny_model):
    tiled = Codec(tiny_model, device="cpu", region=32)
    img = synthetic_image(40, 72, seed=6)
    screen: list = []
    full = tiled.encode(img, seed=4, screen=screen)
    assert tiled.encode(img, seed=4, target=Target(steps=2)) == files.truncate(full, steps=2)
    assert tiled.encode(img, seed=4, target=Target(bpp=1.5)) == files.truncate(full, bpp=1.5)
    cut = tiled.encode_judged(img, seed=4, target=Target(bpp=1.5))
    assert cut.screen[-1] == sse(shown(tiled, cut.data), img)  # a region's cut chunk, judged
    values = [psnr_of(e, 40 * 72) for e in screen]
    cuts = files.info(full).cut_points
    inside = 0
    rising = [k for k in range(1, len(values)) if values[k - 1] < values[k] < math.inf]
    assert len(rising) > 20
    for k in rising[:: len(rising) // 8]:  # the cut inside a region's chunk: the whole image's error
        target = (values[k - 1] + 2 * values[k]) / 3
        got = tiled.encode_judged(img, seed=4, target=Target(psnr=target))
        assert cuts[k - 1] < len(got.data) <= cuts[k]
        assert got.data == files.truncate(full, max_bytes=len(got.data))
        assert got.screen[-1] == sse(shown(tiled, got.data), img) and got.psnr >= target
        inside += files.info(got.data).ends_in_cut_chunk
    assert inside >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"psnr": 30, "bpp": 1.0}, "at most one"),
        ({"psnr": -1.0}, "positive number of dB"),
        ({"psnr": math.inf}, "positive number of dB"),
        ({"psnr": math.nan}, "positive number of dB"),
        ({"psnr": "30"}, "positive number of dB"),
        ({"bpp": -0.1}, "non-negative"),
        ({"bpp": math.nan}, "non-negative"),
        ({"steps": 1.5}, "whole number"),
        ({"steps": True}, "whole number"),
    ],
)
def test_bad_targets(kwargs, message):
    with pytest.raises(UqdmError, match=message):
        Target(**kwargs)


def test_given_and_psnr():
    assert not Target().given and Target(steps=0).given
    assert psnr_of(0, 10) == math.inf
    assert psnr_of(3 * 255 * 255 * 10, 10) == 0.0
    assert Target(bpp=1.0).byte_budget(10, 8) == 10


def test_library_encode_with_a_target(tmp_path, tiny_model_path):
    img = synthetic_image(24, 32, seed=2)
    full = uqdm_codec.encode(img, tiny_model_path, seed=1)
    assert uqdm_codec.encode(img, tiny_model_path, seed=1, steps=2) == uqdm_codec.truncate(full, steps=2)
    with pytest.raises(UqdmError, match="at most one"):
        uqdm_codec.encode(tmp_path / "missing.png", tiny_model_path, psnr=30, steps=2)  # before reading


def test_cli_encode_to_a_quality(tmp_path, tiny_model_path, codec):
    photo = tmp_path / "photo.png"
    img = synthetic_image(32, 48, seed=3)
    Image.fromarray(img).save(photo)
    runner = CliRunner()
    r = runner.invoke(
        app, ["encode", str(photo), "-m", tiny_model_path, "--seed", "1", "-o", str(tmp_path / "a.uqd")]
    )
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.stdout and "exact" in r.stdout  # every layer's quality in the table
    full = (tmp_path / "a.uqd").read_bytes()
    screen: list = []
    assert codec.encode(img, seed=1, screen=screen) == full  # the same model as tiny_model_path
    target = psnr_of(screen[len(screen) // 2], 32 * 48)
    out = tmp_path / "b.uqd"
    r = runner.invoke(
        app,
        ["encode", str(photo), "-m", tiny_model_path, "--seed", "1", "--psnr", repr(target), "-o", str(out)],
    )
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert files.truncate(full, max_bytes=len(data)) == data and len(data) < len(full)
    assert f"{psnr_of(sse(shown(codec, data), img), 32 * 48):.2f} dB" in r.stdout
    for bad in (["--psnr", "-3"], ["--psnr", "30", "--steps", "2"]):
        r = runner.invoke(
            app, ["encode", str(photo), "-m", tiny_model_path, "-o", str(tmp_path / "c.uqd"), *bad]
        )
        assert r.exit_code != 0 and "Traceback" not in r.output
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "c.uqd").exists()
    # several files: each its own prefix, the status says its quality
    second = tmp_path / "second.png"
    Image.fromarray(synthetic_image(32, 48, seed=4)).save(second)
    r = runner.invoke(
        app,
        [
            "encode",
            str(photo),
            str(second),
            "-m",
            tiny_model_path,
            "--steps",
            "2",
            "--out-dir",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 0, r.output
    for name in ("photo", "second"):
        kept = (tmp_path / "o" / f"{name}.uqd").read_bytes()
        assert len(files.info(kept).layers) == 2 and not files.info(kept).complete
    assert r.stdout.count(" dB") >= 2


def test_quality_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, uqdm_codec.quality; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert quality.PEAK == 255.0

"""`decode --stream` and `streaming.decode_stream`: images while the bytes still arrive, each the
image of the bytes received so far, the last one what `decode` gives for all of them; a pipe's
first chunks decode before its sender has finished; one-line errors where a stream cannot work."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import streaming
from uqdm_codec.cli import app
from uqdm_codec.codec import Codec
from uqdm_codec.errors import FormatError, UqdmError

from .conftest import synthetic_image

runner = CliRunner()


def run(*args, stdin: bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


@pytest.fixture(scope="module")
def coded(tiny_model):
    codec = Codec(tiny_model, "cpu")
    img = synthetic_image(40, 56, seed=3)
    return codec, img, codec.encode(img, seed=2)


@pytest.fixture
def same_codec(coded, monkeypatch):
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: coded[0])
    return coded


def pieces_of(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("size", [1, 53, 1000, 10**6])
def test_each_image_is_the_decode_of_what_came(same_codec, size):
    codec, img, data = same_codec
    images = list(streaming.decode_stream(pieces_of(data, size)))
    assert images[-1].lossless and np.array_equal(images[-1].pixels, img)
    sizes = [im.nbytes for im in images]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # each one news
    if size == 1:  # every chunk shows up, from the header's blank image on
        assert images[0].layer == 0 and len(images) > 8
    if size == 10**6:  # all at once: every step as it is decoded, not only the last image
        layers = len(uqdm_codec.files.info(data).layers)
        assert [im.layer for im in images] == list(range(1, layers + 1))
        assert all(im.complete for im in images)
    for image in images[:: max(1, len(images) // 5)]:
        assert np.array_equal(image.pixels, codec.decode(data[: image.nbytes]).pixels)


def test_bytes_are_one_piece(same_codec):
    """decode_stream(data) iterated the bytes as ints: 'a decoder is fed bytes, not int'."""
    _, img, data = same_codec
    for given in (data, bytearray(data), memoryview(data)):
        images = list(streaming.decode_stream(given))
        assert images[-1].lossless and np.array_equal(images[-1].pixels, img)
    assert list(streaming.decode_stream(data, steps=2))[-1].steps == 2


@pytest.mark.parametrize("fraction", [0.3, 0.55, 0.999])
def test_a_stream_that_stops_early_ends_on_decode_of_its_bytes(same_codec, fraction):
    codec, _, data = same_codec
    cut = data[: int(len(data) * fraction)]
    last = list(streaming.decode_stream(pieces_of(cut, 41)))[-1]
    whole = codec.decode(cut)
    assert np.array_equal(last.pixels, whole.pixels) and last.steps == whole.steps
    assert last.nbytes <= len(cut) and not last.lossless


class _Counted:
    """Pieces of `data`, counting how many bytes were taken: a stream that stops must stop reading."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.taken = data, size, 0

    def __iter__(self):
        for i in range(0, len(self.data), self.size):
            piece = self.data[i : i + self.size]
            self.taken += len(piece)
            yield piece


@pytest.mark.parametrize("size", [1, 97, 10**6])
@pytest.mark.parametrize("steps", [0, 1, 3, 7, 8])
def test_a_stream_with_steps_ends_on_decode_steps_and_reads_no_further(same_codec, size, steps):
    codec, img, data = same_codec
    source = _Counted(data, size)
    images = list(streaming.decode_stream(source, steps=steps))
    want = codec.decode(data, steps)
    assert np.array_equal(images[-1].pixels, want.pixels) and images[-1].steps == want.steps
    assert images[-1].lossless == want.lossless
    end = uqdm_codec.files.info(uqdm_codec.files.truncate(data, steps=steps)).total_bytes
    assert images[-1].nbytes == end and all(im.nbytes <= end for im in images)
    assert source.taken < end + size  # the piece that held the end was the last one read


def _budgets(data: bytes) -> list[int]:
    """Budgets that end inside chunks (truncate cuts those), on a chunk end, and past the file."""
    fi = uqdm_codec.files.info(data)
    inside = [(a + b) // 2 + 1 for a, b in fi.chunk_spans if b - a > 64]
    return [inside[0], inside[len(inside) // 2], inside[-1], fi.cut_points[5], len(data) + 100]


@pytest.mark.parametrize("size", [1, 97, 10**6])
def test_a_stream_with_a_byte_budget_ends_on_decode_bytes(same_codec, size):
    codec, _, data = same_codec
    for budget in _budgets(data):
        source = _Counted(data, size)
        images = list(streaming.decode_stream(source, max_bytes=budget))
        cut = uqdm_codec.files.truncate(data, max_bytes=budget)
        assert images[-1].nbytes == len(cut) <= budget
        assert np.array_equal(images[-1].pixels, codec.decode(cut).pixels)
        whole_chunk = min(
            [b for _, b in uqdm_codec.files.info(data).chunk_spans if b >= budget] or [len(data)]
        )
        assert source.taken < whole_chunk + size  # no piece after the one that completed that chunk
    h, w = codec.decode(data, 0).pixels.shape[:2]
    bpp = 8.0 * _budgets(data)[1] / (h * w)
    last = list(streaming.decode_stream(pieces_of(data, 50), bpp=bpp))[-1]
    assert np.array_equal(last.pixels, codec.decode(uqdm_codec.files.truncate(data, bpp=bpp)).pixels)
    with pytest.raises(UqdmError, match="smaller than the file header"):
        list(streaming.decode_stream(pieces_of(data, 50), max_bytes=30))


def test_a_stream_with_a_budget_that_ends_before_it(same_codec):
    """Bytes that end before the budget: the image of what truncate keeps of them, no error."""
    codec, _, data = same_codec
    short = data[: len(data) // 2 + 7]  # ends inside a chunk, as a transfer cut off would
    last = list(streaming.decode_stream(pieces_of(short, 33), max_bytes=len(data)))[-1]
    assert np.array_equal(last.pixels, codec.decode(short).pixels)
    with pytest.raises(FormatError, match="too short"):
        list(streaming.decode_stream(pieces_of(data[:30], 7), max_bytes=10**6))


def test_a_stream_with_steps_on_a_tiled_file(tiny_model, monkeypatch):
    codec = Codec(tiny_model, "cpu", region=32)
    img = synthetic_image(40, 56, seed=8)
    data = codec.encode(img, seed=1)
    assert uqdm_codec.files.info(data).regions > 1
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    for steps in (2, 5):
        last = list(streaming.decode_stream(pieces_of(data, 113), steps=steps))[-1]
        assert np.array_equal(last.pixels, codec.decode(data, steps).pixels)
    for budget in _budgets(data):
        last = list(streaming.decode_stream(pieces_of(data, 113), max_bytes=budget))[-1]
        cut = uqdm_codec.files.truncate(data, max_bytes=budget)
        assert last.nbytes == len(cut) and np.array_equal(last.pixels, codec.decode(cut).pixels)


def test_a_stream_with_psnr_ends_on_the_indexed_prefix(same_codec):
    codec, img, _ = same_codec
    data = codec.encode(img, seed=2, psnr_index=True)
    table = uqdm_codec.files.info(data).psnr_table
    finite = sorted(v for v in table.values() if v != float("inf"))
    target = finite[len(finite) // 2]
    source = _Counted(data, 61)
    last = list(streaming.decode_stream(source, psnr=target))[-1]
    cut = uqdm_codec.files.truncate(data, psnr=target)
    assert last.nbytes == len(cut) and np.array_equal(last.pixels, codec.decode(cut).pixels)
    assert source.taken < len(cut) + 61
    with pytest.raises(
        UqdmError, match=r"known to reach 99 dB: its best is .* \(the file is itself a prefix\)"
    ):
        list(streaming.decode_stream(pieces_of(uqdm_codec.files.truncate(data, steps=3), 50), psnr=99))


def test_streams_that_stop_short_of_their_steps_or_have_no_index(same_codec):
    codec, _, data = same_codec
    short = uqdm_codec.files.truncate(data, steps=2)
    images = []
    with pytest.raises(UqdmError, match="holds only 2 complete steps; cannot decode 4"):
        for image in streaming.decode_stream(pieces_of(short, 70), steps=4):
            images.append(image)
    assert images and np.array_equal(images[-1].pixels, codec.decode(short).pixels)  # shown before
    with pytest.raises(UqdmError, match="no PSNR index"):
        list(streaming.decode_stream(pieces_of(data, 70), psnr=30))
    with pytest.raises(UqdmError, match="steps must be between 0 and"):
        list(streaming.decode_stream(pieces_of(data, 70), steps=99))
    with pytest.raises(UqdmError, match="at most one"):
        list(streaming.decode_stream(pieces_of(data, 70), steps=2, max_bytes=3000))
    for bad in (True, 2.0, "2"):  # as decode refuses them
        with pytest.raises(UqdmError, match="steps must be a whole number"):
            list(streaming.decode_stream(pieces_of(data, 70), steps=bad))
    numpy_steps = list(streaming.decode_stream(pieces_of(data, 7000), steps=np.int64(2)))  # as decode takes
    assert np.array_equal(numpy_steps[-1].pixels, codec.decode(data, 2).pixels)


def test_streams_that_are_no_uqd_file(same_codec):
    _, _, data = same_codec
    with pytest.raises(FormatError, match="empty"):
        list(streaming.decode_stream(iter([])))
    with pytest.raises(FormatError, match="too short"):
        list(streaming.decode_stream(pieces_of(data[:20], 7)))
    with pytest.raises(FormatError, match="not a .uqd file"):
        list(streaming.decode_stream([b"\x89PNG\r\n\x1a\n" + bytes(100)]))


def test_a_pipe_decodes_before_its_sender_is_done(same_codec):
    """read_pieces hands over what the pipe holds: the first image comes while the writer still
    waits to send the rest (a reader that waited for full pieces would wait forever here)."""
    _, img, data = same_codec
    half = len(data) // 2
    r, w = os.pipe()
    go_on = threading.Event()

    def sender():
        with open(w, "wb", buffering=0) as pipe:
            pipe.write(data[:half])
            go_on.wait(timeout=60)
            pipe.write(data[half:])

    thread = threading.Thread(target=sender)
    thread.start()
    with open(r, "rb") as source:
        images = streaming.decode_stream(streaming.read_pieces(source, piece=4 * len(data)))
        first = next(images)
        early = not go_on.is_set()
        go_on.set()
        rest = list(images)
    thread.join()
    assert early and first.nbytes <= half and not first.lossless
    assert rest[-1].lossless and np.array_equal(rest[-1].pixels, img)


def test_a_reader_that_fell_behind_takes_all_that_waits():
    """Everything already in the pipe comes as one piece (one decode, one image written), not one
    read's worth at a time; a file object without a descriptor is read a piece at a time."""
    data = bytes(range(256)) * 12
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    with open(r, "rb") as source:
        assert list(streaming.read_pieces(source, piece=500)) == [data]
    pieces = list(streaming.read_pieces(io.BytesIO(data), piece=500))
    assert b"".join(pieces) == data and len(pieces) == 7


def test_bytes_a_buffered_reader_already_holds_come_first():
    """A socket's or pipe's reader whose first line was read (an HTTP header, say) holds part of
    what follows in its buffer: read_pieces hands that on too, before what is still in the pipe."""
    body = bytes(range(256)) * 40
    r, w = os.pipe()
    os.write(w, b"HTTP/1.1 200 OK\n" + body)
    os.close(w)
    with open(r, "rb") as source:
        assert source.readline() == b"HTTP/1.1 200 OK\n"
        assert b"".join(streaming.read_pieces(source, piece=300)) == body


def test_cli_stream_from_standard_input(coded, tiny_model_path, tmp_path):
    _, img, data = coded
    target = tmp_path / "live.png"
    r = run("decode", "-", "--stream", "-o", target, "-m", tiny_model_path, stdin=data)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(target)), img)
    assert "wrote" in r.stdout and "lossless (exact original)" in r.stdout
    assert not list(tmp_path.glob(".*.tmp"))  # every write went through a temporary file

    cut = data[: len(data) // 2 + 3]  # ends inside a chunk
    other = tmp_path / "cut.png"
    r = run("decode", "-", "--stream", "-o", other, "-m", tiny_model_path, stdin=cut)
    assert r.exit_code == 0, r.output
    plain = tmp_path / "plain.png"
    assert run("decode", "-", "-o", plain, "-m", tiny_model_path, stdin=cut).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(other)), np.asarray(Image.open(plain)))
    assert "end inside a chunk" in r.stdout and "warning:" in r.stderr


def test_cli_stream_of_a_file_gets_its_default_name(coded, tiny_model_path, tmp_path):
    _, img, data = coded
    uqd = tmp_path / "photo.uqd"
    uqd.write_bytes(data)
    r = run("decode", uqd, "--stream", "-m", tiny_model_path, "-q")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "photo.decoded.png")), img)
    assert "step" not in r.stdout.replace("wrote", "")  # -q: only the last line


def test_cli_stream_with_steps_writes_what_decode_steps_writes(coded, tiny_model_path, tmp_path):
    codec, _, data = coded
    uqd = tmp_path / "photo.uqd"
    uqd.write_bytes(data)
    r = run("decode", uqd, "--stream", "--steps", "3", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    streamed = np.asarray(Image.open(tmp_path / "photo.step3.png"))  # decode --steps 3's name
    assert np.array_equal(streamed, codec.decode(data, 3).pixels)
    end = uqdm_codec.files.info(data).layers[2].end
    assert f"from the first {end:,} bytes" in r.stdout and "--steps: stopped reading after" in r.stdout, (
        r.stdout
    )
    r = run(
        "decode",
        "-",
        "--stream",
        "--steps",
        "6",
        "-o",
        tmp_path / "s.png",
        "-m",
        tiny_model_path,
        stdin=uqdm_codec.files.truncate(data, steps=4),
    )
    assert r.exit_code == 1 and "cannot decode 6" in r.stderr and "holds the image of the first" in r.stderr


def test_cli_stream_with_bytes_writes_what_decode_bytes_writes(coded, tiny_model_path, tmp_path):
    _, _, data = coded
    uqd = tmp_path / "photo.uqd"
    uqd.write_bytes(data)
    budget = _budgets(data)[1]  # inside a chunk: the output shows the cut chunk too
    r = run("decode", uqd, "--stream", "--bytes", budget, "-m", tiny_model_path, "-q")
    assert r.exit_code == 0, r.output
    r2 = run("decode", uqd, "--bytes", budget, "-o", tmp_path / "plain.png", "-m", tiny_model_path)
    assert r2.exit_code == 0, r2.output
    (streamed,) = [p for p in tmp_path.glob("photo.*.png")]  # decode --bytes's default name
    assert streamed.name == uqdm_codec.batch.output_name("decode", uqd, max_bytes=budget)
    assert np.array_equal(np.asarray(Image.open(streamed)), np.asarray(Image.open(tmp_path / "plain.png")))
    assert "--bytes: stopped reading after" in r.stdout, r.stdout
    assert "warning:" not in r.stderr  # cut on purpose, as decode --bytes says nothing either


def test_cli_stream_interrupted_keeps_a_whole_image(coded, tiny_model_path, tmp_path, monkeypatch):
    codec, _, data = coded

    def interrupted(source, piece=streaming.PIECE):
        yield data[: len(data) // 3]
        raise KeyboardInterrupt

    monkeypatch.setattr(streaming, "read_pieces", interrupted)
    target = tmp_path / "live.png"
    r = run("decode", "-", "--stream", "-o", target, "-m", tiny_model_path, stdin=data)
    assert r.exit_code == 130 and "interrupted" in r.stderr and "holds the image" in r.stderr
    shown = codec.decode(data[: len(data) // 3]).pixels
    assert np.array_equal(np.asarray(Image.open(target)), shown)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--bytes", "2k", "--recon", "sample"], "does not take --recon sample"),
        (["--progression", "x.png"], "does not take --progression"),
        (["--all-steps", "x"], "does not take --all-steps"),
        (["-o", "-"], "not -o -"),
        (["-o", "exists.png"], "already exists"),
        ([], "give -o FILE"),
    ],
)
def test_cli_stream_refusals(coded, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.png").write_bytes(b"mine")
    r = run("decode", "-", "--stream", *args, stdin=coded[2])
    assert r.exit_code == 1 and words in r.stderr and "Traceback" not in r.output, r.output
    assert (tmp_path / "exists.png").read_bytes() == b"mine"
    r = run("decode", "a.uqd", "b.uqd", "--stream")
    assert r.exit_code == 1 and "single input" in r.stderr


def test_cli_stream_shows_the_psnr_index(tiny_model_path, tmp_path):
    """A file encoded with --psnr-index: each line says the PSNR its image reaches."""
    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(32, 48, seed=5)).save(photo)
    assert run("encode", photo, "-m", tiny_model_path, "--psnr-index", "-q").exit_code == 0
    data = photo.with_suffix(".uqd").read_bytes()
    cut = uqdm_codec.files.truncate(data, steps=6)
    r = run("decode", "-", "--stream", "-o", tmp_path / "s.png", "-m", tiny_model_path, stdin=cut)
    assert r.exit_code == 0, r.output
    table = uqdm_codec.files.info(cut).psnr_table
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith(f"from the first {len(cut):,} bytes, {table[len(cut)]:.2f} dB"), last
    assert all(" dB" in line for line in r.stdout.strip().splitlines()[:-1])


def test_cli_stream_of_damaged_bytes_says_what_the_output_shows(
    coded, tiny_model_path, tmp_path, monkeypatch
):
    codec, _, data = coded
    real = streaming.read_pieces
    monkeypatch.setattr(streaming, "read_pieces", lambda source: real(source, piece=300))  # a slow pipe
    ends = [layer.end for layer in uqdm_codec.files.info(data).layers]
    damaged = bytearray(data)
    damaged[ends[4] + 20] ^= 0x10  # inside layer 6: its CRC no longer matches
    target = tmp_path / "live.png"
    r = run("decode", "-", "--stream", "-o", target, "-m", tiny_model_path, stdin=bytes(damaged))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    text = r.stderr.strip()
    assert text.startswith("error:") and "\n" not in text and "holds the image of the first" in text, text
    assert not list(tmp_path.glob(".*.tmp"))
    shown = int(text.rsplit("first ", 1)[1].split()[0].replace(",", ""))
    assert shown <= ends[4] and np.array_equal(
        np.asarray(Image.open(target)), codec.decode(data[:shown]).pixels
    )
    r = run("decode", "-", "-o", tmp_path / "plain.png", "-m", tiny_model_path, stdin=bytes(damaged))
    assert r.exit_code == 1 and not (tmp_path / "plain.png").exists()  # decode itself refuses

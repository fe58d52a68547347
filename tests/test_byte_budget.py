"""Budgets in bytes (`--bytes SIZE`, `max_bytes=`): the sizes people send files in. A byte budget
must keep exactly what the same budget in bits per pixel keeps, in every command and in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import uqdm_codec
from uqdm_codec import files
from uqdm_codec.batch import output_name, plan_outputs, run_batch
from uqdm_codec.cli import app
from uqdm_codec.errors import UqdmError
from uqdm_codec.quality import Target

from .conftest import synthetic_image

runner = CliRunner()
H, W = 24, 40


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, words: str):
    assert result.exit_code == 1, result.output
    text = result.stderr.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    assert words in text, text


@pytest.mark.parametrize(
    "text, size",
    [
        ("20000", 20000),
        (" 20000 ", 20000),
        ("20k", 20000),
        ("20kB", 20000),
        ("20KB", 20000),
        ("20 KiB", 20480),
        ("1.5M", 1_500_000),
        ("1.5MB", 1_500_000),
        ("2MiB", 2 << 20),
        ("0.5k", 500),
        (".5k", 500),
        ("100.9", 100),  # whole bytes, rounded down: never over the budget
        ("0", 0),
        ("7b", 7),
        (1234, 1234),
    ],
)
def test_sizes_as_people_write_them(text, size):
    assert files.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "k", "20x", "-5", "20 k b", "1e3", "twenty", "20GiB2", "nan"])
def test_what_is_not_a_size(text):
    with pytest.raises(UqdmError, match="not a size in bytes"):
        files.parse_size(text)


@pytest.fixture(scope="module")
def full(codec) -> tuple[np.ndarray, bytes]:
    img = synthetic_image(H, W, seed=3)
    return img, codec.encode(img, seed=2)


def test_max_bytes_keeps_what_the_same_bpp_keeps(full):
    _, data = full
    fi = files.info(data)
    for budget in [fi.header_bytes, *range(fi.header_bytes + 1, len(data) + 40, 97), len(data)]:
        cut = files.truncate(data, max_bytes=budget)
        assert cut == files.truncate(data, bpp=8 * budget / (H * W)), budget
        assert len(cut) <= budget and files.truncate(data, max_bytes=np.int64(budget)) == cut
        assert files.budget_prefix(data, None, None, None, budget) == cut
    with pytest.raises(UqdmError, match="smaller than the file header"):
        files.truncate(data, max_bytes=fi.header_bytes - 1)
    for bad in (-1, 2.5, True, "100"):
        with pytest.raises(UqdmError, match="whole number of bytes"):
            files.truncate(data, max_bytes=bad)
    with pytest.raises(UqdmError, match="exactly one"):
        files.truncate(data, max_bytes=100, bpp=1.0)
    with pytest.raises(UqdmError, match="at most one"):
        files.budget_prefix(data, None, 1.0, None, 100)


def test_an_encoder_budget_in_bytes_is_truncate_of_the_whole_file(codec, full):
    img, data = full
    for budget in (files.info(data).header_bytes + 30, len(data) // 3, len(data) - 7, len(data) + 100):
        encoded = codec.encode_judged(img, seed=2, target=Target(max_bytes=budget))
        assert encoded.data == files.truncate(data, max_bytes=budget), budget
        assert len(encoded.screen) == len(files.info(encoded.data).cut_points)
    with pytest.raises(UqdmError, match="smaller than the file header"):
        codec.encode(img, seed=2, target=Target(max_bytes=10))


def test_targets_take_one_budget():
    assert Target(max_bytes=0).given and Target(max_bytes=5).budgeted and not Target(psnr=30).budgeted
    assert Target(max_bytes=77).byte_budget(10, 8) == 77 and Target(bpp=1.0).byte_budget(10, 8) == 10
    with pytest.raises(UqdmError, match="at most one"):
        Target(max_bytes=100, bpp=1.0)
    with pytest.raises(UqdmError, match="whole number of bytes"):
        Target(max_bytes=-3)
    with pytest.raises(UqdmError, match=r"truncate\(data, max_bytes=\)"):
        Target(max_bytes=100).check_psnr_index(True)


def test_library_encode_and_decode_with_max_bytes(tiny_model_path, full):
    img, _ = full
    whole = uqdm_codec.encode(img, tiny_model_path, seed=6)
    budget = len(whole) // 2
    assert uqdm_codec.encode(img, tiny_model_path, seed=6, max_bytes=budget) == uqdm_codec.truncate(
        whole, max_bytes=budget
    )
    ours = np.asarray(uqdm_codec.decode(whole, model=tiny_model_path, max_bytes=budget))
    cut = uqdm_codec.truncate(whole, max_bytes=budget)
    assert np.array_equal(ours, np.asarray(uqdm_codec.decode(cut, model=tiny_model_path)))
    with pytest.raises(UqdmError, match="psnr index|PSNR index"):
        uqdm_codec.encode(img, tiny_model_path, max_bytes=budget, psnr_index=True)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(H, W, seed=9)).save(path)
    return path


def test_the_commands_take_bytes(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4, "-q").exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()
    budget = len(data) // 2
    text = f"{budget / 1000:g}k"  # as a user writes it
    r = run("truncate", uqd, "--bytes", text)
    assert r.exit_code == 0, r.output
    cut = photo.with_name(f"photo.{budget}bytes.uqd")
    assert cut.read_bytes() == files.truncate(data, max_bytes=budget)
    assert f"{len(cut.read_bytes())} bytes" in r.stdout

    r = run("decode", uqd, "--bytes", budget, "-m", tiny_model_path)
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    assert f"from the first {len(cut.read_bytes())} bytes" in r.stdout
    assert run("decode", cut, "-m", tiny_model_path, "-o", photo.with_name("cut.png")).exit_code == 0
    ours = np.asarray(Image.open(photo.with_name(f"photo.{budget}bytes.png")))
    assert np.array_equal(ours, np.asarray(Image.open(photo.with_name("cut.png"))))

    r = run(
        "encode", photo, "-m", tiny_model_path, "--seed", 4, "--bytes", budget, "-o", photo.with_name("e.uqd")
    )
    assert r.exit_code == 0, r.output
    assert photo.with_name("e.uqd").read_bytes() == cut.read_bytes()
    assert f"({len(cut.read_bytes())} bytes," in " ".join(r.stdout.split())

    assert_one_line_error(run("truncate", uqd, "--bytes", "20x"), "not a size in bytes")
    assert_one_line_error(run("truncate", uqd, "--bytes", 5), "smaller than the file header")
    assert_one_line_error(run("truncate", uqd, "--bytes", 500, "--bpp", 1), "exactly one of --bpp, --bytes")
    assert_one_line_error(run("decode", uqd, "--bytes", 500, "--steps", 2), "at most one of --bpp, --bytes")
    assert_one_line_error(run("decode", uqd, uqd, "--bytes", "x"), "not a size in bytes")
    r = run(
        "encode", photo, "-m", tiny_model_path, "--bytes", 500, "--psnr-index", "-o", photo.with_name("n.uqd")
    )
    assert_one_line_error(r, "truncate --bytes")
    assert not photo.with_name("n.uqd").exists()


def test_batches_take_bytes(tmp_path, tiny_model_path):
    sources = []
    for k in range(2):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(synthetic_image(16, 20 + 4 * k, seed=k)).save(path)
        sources.append(path)
    results = run_batch("encode", sources, tmp_path / "full", model=tiny_model_path, seed=1)
    assert all(r.ok for r in results)
    uqds = [r.output for r in results]
    cut = run_batch("truncate", uqds, tmp_path / "cut", max_bytes=300)
    assert [r.output.name for r in cut] == ["img0.300bytes.uqd", "img1.300bytes.uqd"]
    for r, uqd in zip(cut, uqds):
        assert r.ok and r.output.read_bytes() == files.truncate(uqd.read_bytes(), max_bytes=300)
    shown = run_batch("decode", uqds, tmp_path / "cut", model=tiny_model_path, max_bytes=300)
    assert all(r.ok for r in shown) and shown[0].output.name == "img0.300bytes.png"
    small = run_batch("encode", sources, tmp_path / "small", model=tiny_model_path, seed=1, max_bytes=300)
    for r, c in zip(small, cut):
        assert r.ok and r.output.read_bytes() == c.output.read_bytes()
    with pytest.raises(UqdmError, match="exactly one"):
        run_batch("truncate", uqds, tmp_path / "x", max_bytes=300, bpp=1.0)
    r = run("truncate", *uqds, "--bytes", "0.3k", "--out-dir", tmp_path / "cli", "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cli" / "img1.300bytes.uqd").read_bytes() == cut[1].output.read_bytes()


def test_default_names():
    assert plan_outputs("truncate", [Path("a/b.uqd")], None, max_bytes=20000) == [Path("a/b.20000bytes.uqd")]
    assert output_name("decode", Path("b.uqd"), max_bytes=5, recon="sample", seed=2) == "b.5bytes.sample2.png"


def test_a_float32_budget_is_counted_in_double_precision():
    """bpp=np.float32(2.35) on a 12 MP image allowed 3,525,000 bytes: float32 arithmetic rounded
    up past the 3,524,999.86 that 2.3499999 bits per pixel allow."""
    bpp = np.float32(2.35)
    assert files.budget_bytes(bpp, 4000, 3000) == files.budget_bytes(float(bpp), 4000, 3000) == 3_524_999
    assert files.psnr_entry_needed(np.float32(35.99)) == files.psnr_entry_needed(float(np.float32(35.99)))
    assert type(Target(bpp=bpp).bpp) is float and type(Target(psnr=np.float32(30)).psnr) is float
    assert type(Target(steps=np.int64(3)).steps) is int
    assert type(Target(max_bytes=np.uint32(9)).max_bytes) is int

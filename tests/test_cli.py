"""The command line through Typer's test runner: outputs, messages, exit codes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from uqdm_codec import batch, container, errors
from uqdm_codec.cli import app
from uqdm_codec.errors import UqdmError
from uqdm_codec.image_io import check_output

from .conftest import synthetic_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result):
    assert result.exit_code != 0
    text = result.stderr.strip()
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(path)
    return path


def test_encode_decode_info_truncate(photo, tiny_model_path):
    from uqdm_codec.files import info as files_info

    r = run("encode", photo, "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0, r.output
    uqd = photo.with_suffix(".uqd")
    assert uqd.exists() and "lossless pixels" in r.stdout and "bpp" in r.stdout

    r = run("decode", uqd, "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    decoded = photo.with_name("photo.decoded.png")
    assert np.array_equal(np.asarray(Image.open(decoded)), np.asarray(Image.open(photo)))
    assert "lossless" in r.stdout

    r = run("decode", uqd, "--steps", 2, "-m", tiny_model_path)
    assert r.exit_code == 0 and photo.with_name("photo.step2.png").exists()

    r = run("info", uqd)
    assert r.exit_code == 0 and "diffusion step 8" in r.stdout

    r = run("truncate", uqd, "--steps", 3, "-o", photo.with_name("cut.uqd"))
    assert r.exit_code == 0 and "3 steps" in r.stdout
    r = run("decode", photo.with_name("cut.uqd"), "-m", tiny_model_path, "-o", photo.with_name("cut.png"))
    assert r.exit_code == 0 and "after 3 of 8 steps" in r.stdout
    r = run("truncate", uqd, "--bpp", 50)
    assert r.exit_code == 0 and photo.with_name("photo.50bpp.uqd").exists()
    # a budget in the middle of the file's largest chunk (header, layer headers can't be cut)
    parsed = container.parse(uqd.read_bytes())
    sizes = [len(c.payload) for layer in parsed.layers for c in layer.chunks]
    ends = [e for layer in parsed.chunk_offsets for e in layer]
    start, end = max(((e - n, e) for e, n in zip(ends, sizes)), key=lambda se: se[1] - se[0])
    budget = (start + end) // 2 // 4 * 4
    r = run("truncate", uqd, "--bpp", budget * 8 / (24 * 40), "-o", photo.with_name("photo.cut.uqd"))
    cut = photo.with_name("photo.cut.uqd")
    assert r.exit_code == 0 and budget - 4 < cut.stat().st_size <= budget
    assert "ends inside a chunk" in r.stdout
    held = files_info(cut)
    nxt = len(held.layers) + 1  # the layer the cut falls in: said, as decode says it (was 'N steps')
    part = f"step {nxt}" if nxt <= held.header.coded_steps else "the lossless layer"
    assert f"{len(held.layers)} steps and part of {part}, ends inside a chunk" in r.stdout, r.stdout
    r = run("decode", cut, "-m", tiny_model_path)
    assert r.exit_code == 0 and "part of chunk" in r.stderr


def test_decode_bpp_reads_what_truncate_keeps(photo, tiny_model_path):
    import uqdm_codec

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()
    for bpp in (1.5, 6.0, 100.0):  # inside the early steps, inside the pixel step, the whole file
        r = run("truncate", uqd, "--bpp", bpp, "-o", photo.with_name(f"cut{bpp:g}.uqd"))
        assert r.exit_code == 0, r.output
        r = run("decode", photo.with_name(f"cut{bpp:g}.uqd"), "-m", tiny_model_path)
        assert r.exit_code == 0, r.output
        r = run("decode", uqd, "--bpp", bpp, "-m", tiny_model_path)
        assert r.exit_code == 0, r.output
        assert "warning" not in r.stderr  # the cut is what was asked for
        cut_bytes = photo.with_name(f"cut{bpp:g}.uqd").stat().st_size
        assert f"from the first {cut_bytes} bytes" in r.stdout
        ours = np.asarray(Image.open(photo.with_name(f"photo.{bpp:g}bpp.png")))
        theirs = np.asarray(Image.open(photo.with_name(f"cut{bpp:g}.decoded.png")))
        assert np.array_equal(ours, theirs)
        library = uqdm_codec.decode(data, model=tiny_model_path, bpp=bpp)
        assert np.array_equal(np.asarray(library), ours)
    assert cut_bytes == len(data) and np.array_equal(ours, np.asarray(Image.open(photo)))
    assert_one_line_error(run("decode", uqd, "--bpp", 1, "--steps", 2, "-m", tiny_model_path))
    assert_one_line_error(run("decode", uqd, "--bpp", 0.001, "-m", tiny_model_path))
    assert_one_line_error(run("decode", uqd, uqd, "--bpp", 1, "--steps", 2, "-m", tiny_model_path))


def test_no_overwrite_without_force(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    before = uqd.read_bytes()
    r = run("encode", photo, "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "already exists" in r.stderr and uqd.read_bytes() == before
    assert run("encode", photo, "-m", tiny_model_path, "--force").exit_code == 0


def test_never_overwrites_the_input(photo, tiny_model_path):
    r = run("encode", photo, "-m", tiny_model_path, "-o", photo, "--force")
    assert_one_line_error(r)
    assert Image.open(photo).size == (40, 24)


def test_an_output_that_is_the_input_is_named_as_such(photo, tiny_model_path):
    uqd = photo.with_suffix(".uqd")
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    before = uqd.read_bytes()
    for force in ((), ("--force",)):  # a .uqd input's default output is itself (Pillow reads .uqd)
        r = run("encode", uqd, "-m", tiny_model_path, *force)
        assert_one_line_error(r)
        assert "would overwrite the input" in r.stderr and "already exists" not in r.stderr
        r = run("truncate", uqd, "--steps", 1, "-o", uqd, *force)
        assert_one_line_error(r)
        assert "would overwrite the input" in r.stderr
    assert uqd.read_bytes() == before


def test_infinite_and_overflowing_budgets_are_one_line_errors(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    for command in ("decode", "truncate"):
        for option in (("--bpp", "inf"), ("--bpp", "nan"), ("--bytes", "9" * 400)):
            r = (
                run(command, uqd, *option, "-m", tiny_model_path)
                if command == "decode"
                else run(command, uqd, *option)
            )
            assert_one_line_error(r)
            assert "internal error" not in r.stderr


def test_seeds_out_of_range_are_refused_before_any_file(photo, tmp_path, tiny_model_path):
    other = tmp_path / "other.png"
    other.write_bytes(photo.read_bytes())
    for seed in ("-1", str(2**64)):
        r = run("encode", photo, other, "--seed", seed, "-m", tiny_model_path)
        assert_one_line_error(r)
        assert "2^64 - 1" in r.stderr and not list(tmp_path.glob("*.uqd"))


def test_errors_are_one_line(tmp_path, photo, tiny_model_path, other_model_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run("encode", tmp_path / "missing.png", "-m", tiny_model_path))
    assert_one_line_error(run("encode", tmp_path / "notes.txt", "-m", tiny_model_path))
    for command in (("decode",), ("info",), ("truncate", "--steps", 1)):
        r = run(command[0], tmp_path / "notes.txt", *command[1:])
        assert_one_line_error(r)
        assert "notes.txt: not a .uqd file" in r.stderr  # the single-file path names the file too
    assert_one_line_error(run("info", tmp_path / "missing.uqd"))
    assert_one_line_error(run("encode", photo, "-m", tmp_path / "nope.safetensors"))
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    r = run("decode", uqd, "-m", other_model_path)
    assert_one_line_error(r)
    assert "tiny-test" in r.stderr and "tiny-other" in r.stderr
    assert_one_line_error(run("truncate", uqd, "--bpp", 1, "--steps", 1))
    assert_one_line_error(run("truncate", uqd, "--bpp", 0.0001))
    assert_one_line_error(run("decode", uqd, "--steps", 42, "-m", tiny_model_path))
    model = ("-m", tiny_model_path)
    for args in (("encode", photo, *model), ("decode", uqd, *model), ("truncate", uqd, "--steps", 1)):
        r = run(*args, "-o", tmp_path)  # said 'already exists (use --force to overwrite)'
        assert_one_line_error(r)
        assert "is a folder, not a file name (--out-dir takes a folder)" in r.stderr
    r = run("decode", uqd, "--all-steps", photo, "-m", tiny_model_path)  # was an internal error
    assert_one_line_error(r)
    assert "photo.png: not a folder (--all-steps names the folder" in r.stderr
    monkeypatch.chdir(tmp_path)
    for option in ("--progression", "--all-steps"):  # '-' was a file named '-'
        r = run("decode", uqd, option, "-", "-m", tiny_model_path)
        assert_one_line_error(r)
        assert f"{option} writes files: name one" in r.stderr
    r = run("decode", uqd, "--chunks", "-o", tmp_path / "c.png", "-m", tiny_model_path)  # was ignored
    assert_one_line_error(r)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "-").exists()
    bad = bytearray(uqd.read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "bad.uqd").write_bytes(bytes(bad))
    r = run("decode", tmp_path / "bad.uqd", "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "bad.uqd" in r.stderr
    assert not (tmp_path / "bad.decoded.png").exists()
    folder_words = {"encode": "not an image (give the images in it: ", "decode": "not a .uqd file"}
    for command, words in folder_words.items():
        r = run(command, tmp_path, "-m", tiny_model_path)  # a folder: say how to give what is in it
        assert_one_line_error(r)
        assert f"{tmp_path}: is a folder, {words}" in r.stderr


def test_truncated_file_warns(photo, tiny_model_path):
    from uqdm_codec import files

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 3).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    data = uqd.read_bytes()
    inside = files.info(data).cut_points[3] + 5  # a few bytes into the next chunk
    (photo.parent / "partial.uqd").write_bytes(data[:inside])
    r = run("decode", photo.parent / "partial.uqd", "-m", tiny_model_path)
    assert r.exit_code == 0 and "warning:" in r.stderr


def test_grayscale_input_gets_a_note(tmp_path, tiny_model_path):
    path = tmp_path / "gray.png"
    Image.fromarray(synthetic_image(16, 16)[:, :, 0]).save(path)
    r = run("encode", path, "-m", tiny_model_path)
    assert r.exit_code == 0 and "note: grayscale" in r.stderr


def test_help():
    r = run("--help")
    assert r.exit_code == 0 and "encode" in r.stdout and "truncate" in r.stdout


def test_help_paragraphs_wrap_to_the_terminal():
    """Each command's summary fits its row, and no paragraph keeps the docstring's line breaks."""
    from uqdm_codec.cli import _unwrapped

    assert _unwrapped("A b\n    c.\n\n    D\n    e.") == "A b c.\n\nD e."
    listing = run("--help").stdout
    for command in ("encode", "decode", "truncate", "info"):
        row = next(line for line in listing.splitlines() if f" {command} " in line)
        assert row.rstrip(" │").endswith("."), row  # the whole summary on one line
        page = run(command, "--help").stdout
        text = page.split("Usage:")[1].split("\n", 1)[1]  # below the usage line
        lines = [line.strip() for line in text.split("╭")[0].splitlines()]
        assert all(len(line) > 40 or line.endswith(".") for line in lines if line), page


def test_python_m_runs_the_command_line():
    import subprocess
    import sys

    import uqdm_codec

    r = subprocess.run([sys.executable, "-m", "uqdm_codec", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(f"uqdm {uqdm_codec.__version__} ")


def test_progression_and_all_levels(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    strip_path, folder = photo.with_name("strip.png"), photo.with_name("levels")
    r = run("decode", uqd, "-m", tiny_model_path, "--progression", strip_path, "--all-steps", folder)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 10 and names[0].startswith("000_header") and "lossless" in names[-1]
    assert Image.open(strip_path).size[0] > 40
    for name in names[:5]:  # a level that exists ended the run half-way, the ones before it written
        (folder / name).unlink()
    r = run("decode", uqd, "-m", tiny_model_path, "--all-steps", folder)
    assert_one_line_error(r)
    assert names[5] in r.stderr and sorted(p.name for p in folder.iterdir()) == names[5:]


def test_pillow_opens_uqd_files(photo, tiny_model_path, monkeypatch):
    import uqdm_codec
    from uqdm_codec.codec import Codec

    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    codec = Codec(tiny_model_path, "cpu")
    monkeypatch.setattr(uqdm_codec, "get_codec", lambda model=None, device=None, tile=None: codec)
    with Image.open(photo.with_suffix(".uqd")) as im:
        assert im.format == "UQD" and im.size == (40, 24)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(Image.open(photo)))
    data = photo.with_suffix(".uqd").read_bytes()
    bad = bytearray(data)
    bad[-5] ^= 0xFF  # damage in the last chunk: Pillow's callers catch OSError, not uqdm's errors
    with pytest.raises(OSError, match="checksum mismatch"), Image.open(io.BytesIO(bytes(bad))) as im:
        im.load()
    with pytest.raises(OSError, match="header is incomplete"):
        Image.open(io.BytesIO(data[:20]))


# ------------------------------------------------------------------ several inputs (issue 12)


@pytest.fixture
def photos(tmp_path):
    paths = []
    for k, name in enumerate(("a.png", "b.jpg", "c.png")):
        path = tmp_path / name
        Image.fromarray(synthetic_image(16 + 8 * k, 24, seed=k)).save(path, quality=95)
        paths.append(path)
    return paths


def test_many_files_with_workers_and_a_bad_one(tmp_path, photos, tiny_model_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    r = run(
        "encode", *photos[:2], bad, photos[2], "--out-dir", out, "-j", 2, "-m", tiny_model_path, "--seed", 1
    )
    assert r.exit_code == 1, r.output
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: ") and errors[0].count(str(bad)) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.uqd", "b.uqd", "c.uqd"]
    assert "3 of 4 files written, 1 failed" in r.stdout and "failed" in r.stdout and "bpp" in r.stdout

    r = run("decode", *sorted(out.glob("*.uqd")), "--out-dir", tmp_path / "png", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    for src in (photos[0], photos[2]):  # PNG inputs come back exactly
        back = np.asarray(Image.open(tmp_path / "png" / f"{src.stem}.decoded.png"))
        assert np.array_equal(back, np.asarray(Image.open(src)))

    r = run("truncate", *sorted(out.glob("*.uqd")), "--steps", 2, "--out-dir", tmp_path / "cut", "-j", 2)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == [
        "a.2steps.uqd",
        "b.2steps.uqd",
        "c.2steps.uqd",
    ]


def test_many_files_keep_going_past_an_existing_output(tmp_path, photos, tiny_model_path):
    photos[1].with_suffix(".uqd").write_bytes(b"keep me")
    r = run("encode", *photos, "-m", tiny_model_path, "--quiet")
    assert r.exit_code == 1
    assert (
        r.stderr.strip()
        == f"error: {photos[1]}: {photos[1].with_suffix('.uqd')} already exists (use --force to overwrite)"
    )
    assert photos[1].with_suffix(".uqd").read_bytes() == b"keep me"
    assert photos[0].with_suffix(".uqd").exists() and photos[2].with_suffix(".uqd").exists()


def test_output_option_with_several_inputs_points_to_out_dir(tmp_path, photos, tiny_model_path):
    r = run("encode", *photos, "-o", tmp_path / "x.uqd", "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "--out-dir" in r.stderr and not list(tmp_path.glob("*.uqd"))


def test_two_inputs_with_one_output_name_are_refused(tmp_path, photos, tiny_model_path):
    (tmp_path / "sub").mkdir()
    twin = tmp_path / "sub" / "a.png"
    twin.write_bytes(photos[0].read_bytes())
    r = run("encode", photos[0], twin, "--out-dir", tmp_path / "out", "-m", tiny_model_path)
    assert_one_line_error(r)
    assert "a.uqd" in r.stderr and not (tmp_path / "out").exists()
    r = run("encode", photos[0], tmp_path / "a.jpg", "-m", tiny_model_path)  # a.png, a.jpg -> a.uqd
    assert_one_line_error(r)


def test_single_input_with_out_dir(photo, tiny_model_path):
    r = run("encode", photo, "--out-dir", photo.parent / "o", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert (photo.parent / "o" / "photo.uqd").exists() and "lossless pixels" in r.stdout


def test_progression_alone_writes_only_the_strip(photo, tiny_model_path):
    assert run("encode", photo, "-m", tiny_model_path).exit_code == 0
    uqd = photo.with_suffix(".uqd")
    strip_path = photo.with_name("strip.png")
    r = run("decode", uqd, "-m", tiny_model_path, "--progression", strip_path)
    assert r.exit_code == 0, r.output
    assert strip_path.exists() and not photo.with_name("photo.decoded.png").exists()
    assert sorted(p.name for p in photo.parent.iterdir()) == ["photo.png", "photo.uqd", "strip.png"]
    r = run(
        "decode",
        uqd,
        "-m",
        tiny_model_path,
        "--progression",
        strip_path,
        "--force",
        "-o",
        photo.with_name("x.png"),
    )
    assert r.exit_code == 0 and photo.with_name("x.png").exists()
    r = run("decode", uqd, "-m", tiny_model_path, "--progression", "-o", photo.with_name("y.png"))
    assert_one_line_error(r)  # the path option took '-o', so y.png became a second input
    assert "take a single input, not 2 ('-o' was read as the option's path)" in r.stderr


def test_help_mentions_the_batch_options():
    for command in ("encode", "decode", "truncate"):
        r = run(command, "--help")
        assert r.exit_code == 0 and "--out-dir" in r.stdout and "--jobs" in r.stdout


def test_fast_encoding_single_and_batch(tmp_path, photos, tiny_model_path, monkeypatch):
    """--fast reaches the encoder on both paths; files of the same size as without it, exact decodes."""
    from uqdm_codec.codec import Codec

    seen, encode = [], Codec.encode_judged

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("fast"))
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(Codec, "encode_judged", spy)
    common = ("-m", tiny_model_path, "--seed", 3)
    for flags, out in (([], "plain"), (["--fast"], "fast")):
        r = run("encode", *photos[:2], "--out-dir", tmp_path / out, *common, *flags)
        assert r.exit_code == 0, r.output
    r = run("encode", photos[0], "-o", tmp_path / "one.uqd", *common, "--fast")
    assert r.exit_code == 0, r.output
    assert seen == [False, False, True, True, True]
    sizes = {out: [p.stat().st_size for p in sorted((tmp_path / out).iterdir())] for out in ("plain", "fast")}
    assert sizes["plain"] == sizes["fast"] and (tmp_path / "one.uqd").stat().st_size == sizes["plain"][0]
    r = run("decode", tmp_path / "one.uqd", "-o", tmp_path / "one.png", "-m", tiny_model_path)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), np.asarray(Image.open(photos[0])))


def test_info_json_lists_layers_and_valid_prefixes(tmp_path, codec):
    import json

    from uqdm_codec import files

    from .test_metadata import EXIF, XMP

    img = synthetic_image(24, 40, seed=4)
    data = codec.encode(img, seed=2, exif=EXIF, xmp=XMP, alpha=img[:, :, 0])
    path = tmp_path / "x.uqd"
    path.write_bytes(data)
    r = run("info", path, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    fi = files.info(data)
    assert got["total_bytes"] == len(data) and got["complete"] and got["format_version"] == 9
    assert got["mode"] == "RGBA" and got["header"]["bytes"] == fi.header_bytes
    assert got["header"]["xmp"]["bytes"] == len(XMP) and "Testcam" in got["header"]["exif"]["description"]
    assert [la["end"] for la in got["layers"]] == [la.end for la in fi.layers]
    assert got["layers"][-1]["end"] == len(data) and got["layers"][-1]["content"] == "lossless"
    for cut in got["cut_points"]:  # each the length of a prefix that is a file of its own
        prefix = files.info(data[:cut])
        assert prefix.total_bytes == cut and prefix.cut_points[-1] == cut
        assert all("decoding what is there" in w for w in prefix.warnings)  # at most a layer in part
    cut = data[: got["layers"][1]["end"] + 5]
    (tmp_path / "cut.uqd").write_bytes(cut)
    partial = json.loads(run("info", tmp_path / "cut.uqd", "--json").stdout)
    assert not partial["complete"] and len(partial["layers"]) == 2 and partial["warnings"]
    r = run("info", tmp_path / "missing.uqd", "--json")
    assert r.exit_code == 1 and "no such file" in r.output


def test_info_cut_points_of_a_tiled_file_are_files(tiny_model):
    from uqdm_codec import files
    from uqdm_codec.codec import Codec

    data = Codec(tiny_model, "cpu", region=32).encode(synthetic_image(40, 72, seed=4), seed=3)
    described = files.info(data).to_dict()
    assert described["regions"] == 6 and described["cut_points"][-1] == len(data)
    for cut in described["cut_points"][::7]:
        prefix = files.info(data[:cut])
        assert prefix.total_bytes == cut and all("decoding what is there" in w for w in prefix.warnings)


def test_version():
    import uqdm_codec

    r = run("--version")
    assert r.exit_code == 0 and r.stdout.startswith(f"uqdm {uqdm_codec.__version__} (writes .uqd format 8")
    assert r.stdout.count("\n") == 1


def test_info_of_several_files(photo, tiny_model_path, tmp_path):
    import json

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4, "-q").exit_code == 0
    uqd = photo.with_suffix(".uqd")
    assert run("truncate", uqd, "--steps", 2, "-o", tmp_path / "s2.uqd").exit_code == 0
    data = uqd.read_bytes()
    (tmp_path / "cut.uqd").write_bytes(data[: len(data) // 2])  # ends inside a step
    (tmp_path / "junk.uqd").write_bytes(b"junk")
    names = [uqd, tmp_path / "s2.uqd", tmp_path / "cut.uqd", tmp_path / "junk.uqd"]
    r = run("info", *names)
    assert r.exit_code == 1  # one unreadable file; the others are still listed
    assert r.stderr.strip() == f"error: {tmp_path / 'junk.uqd'}: not a .uqd file (bad magic bytes)"
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("│")}
    assert "lossless" in lines[str(uqd)] and f" {len(data)} " in lines[str(uqd)]
    assert "after step 2" in lines[str(tmp_path / "s2.uqd")] and "40x24" in lines[str(tmp_path / "s2.uqd")]
    assert "in step" in lines[str(tmp_path / "cut.uqd")] and "unreadable" in lines[str(tmp_path / "junk.uqd")]

    r = run("info", *names[:3], "--json")
    assert r.exit_code == 0
    listed = json.loads(r.stdout)
    assert [d["file"] for d in listed] == [str(p) for p in names[:3]]
    single = json.loads(run("info", names[1], "--json").stdout)
    assert listed[1] == single  # each entry is what info --json says of that file alone
    r = run("info", *names, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)[3] == {
        "file": str(names[3]),
        "error": f"{names[3]}: not a .uqd file (bad magic bytes)",
    }
    assert_one_line_error(run("info", "-", uqd))


def test_truncate_counts_a_tail_as_the_lossless_end_not_a_step(photo, tiny_model_path, tmp_path):
    """--steps S+1 of a file with a tail after step S keeps it whole; it said '3 steps, lossless
    layer' for a file of 2 diffusion steps and a tail."""
    r = run("encode", photo, "-m", tiny_model_path, "--tail-after", 2, "-o", tmp_path / "t.uqd")
    assert r.exit_code == 0
    r = run("truncate", tmp_path / "t.uqd", "--steps", 3, "-o", tmp_path / "whole.uqd")
    assert r.exit_code == 0 and r.stdout.rstrip().endswith("2 steps, lossless tail")
    r = run("truncate", tmp_path / "t.uqd", "--steps", 2, "-o", tmp_path / "two.uqd")
    assert r.exit_code == 0 and r.stdout.rstrip().endswith(" 2 steps")


def test_status_lines_are_one_line_however_narrow_the_terminal(uqd, tiny_model_path):
    """info's first line and decode's 'wrote' line wrapped at 80 columns (a script reading them
    got half a line); like the notes and warnings, they are one line each."""
    r = run("info", uqd)
    assert r.exit_code == 0 and r.stdout.splitlines()[0].endswith(", seed 5")
    target = uqd.with_name("a-rather-long-output-name-so-that-the-line-is-longer-than-eighty.png")
    r = run("decode", uqd, "--bytes", 300, "-o", target, "-m", tiny_model_path)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1 and r.stdout.rstrip().endswith("bpp)")


def test_names_with_brackets_are_printed_as_they_are(tmp_path, tiny_model_path):
    """'[red]' in a file name is text, not a style: 'wrote photo [red].uqd' said 'wrote photo .uqd'
    and errors lost the bracketed part of the name."""
    photo = tmp_path / "photo [red].png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(photo)
    r = run("encode", photo, "-m", tiny_model_path, "--seed", 5)
    assert r.exit_code == 0 and f"wrote {photo.with_suffix('.uqd')} (" in r.stdout, r.output
    r = run("decode", photo.with_suffix(".uqd"), "-m", tiny_model_path, "-o", tmp_path / "out [bold].dat")
    assert r.exit_code == 0 and "wrote " + str(tmp_path / "out [bold].dat") in r.stdout
    assert "note: out [bold].dat: '.dat'" in r.stderr
    missing = tmp_path / "gone [bold].uqd"
    r = run("decode", missing)
    assert_one_line_error(r)
    assert r.stderr.strip() == f"error: {missing}: no such file"
    r = run("info", photo.with_suffix(".uqd"), missing)
    assert r.exit_code == 1 and "photo [red].uqd" in r.stdout and "gone [bold].uqd" in r.stdout


def test_decode_says_when_it_ends_part_way_into_a_step(photo, tiny_model_path, tmp_path):
    """A prefix that ends inside a step (encode --psnr, truncate --bpp) said 'after 6 of 8 steps'
    where --stream said 'step 7 chunk 3'; now 'after 6 of 8 steps and part of step 7'."""
    import uqdm_codec

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 4, "-q").exit_code == 0
    uqd = photo.with_suffix(".uqd")
    fi = uqdm_codec.info(uqd)
    inside = [(a + b) // 2 for a, b in fi.chunk_spans if b - a > 16]
    for budget in inside:
        decoded = uqdm_codec.decode_full(uqd, max_bytes=budget, model=tiny_model_path)
        if decoded.part_of_step is not None:
            break
    else:
        pytest.fail("no budget ends inside a step")
    assert decoded.part_of_step == decoded.steps + 1 == decoded.layer
    out_png = tmp_path / "part.png"
    r = run("decode", uqd, "-m", tiny_model_path, "--bytes", budget, "-o", out_png)
    want = f"after {decoded.steps} of {fi.header.coded_steps} steps and part of step {decoded.layer}, "
    assert r.exit_code == 0 and want in r.stdout, r.output
    whole = uqdm_codec.decode_full(uqd, model=tiny_model_path)
    step = uqdm_codec.decode_full(uqd, steps=2, model=tiny_model_path)
    assert whole.part_of_step is None and step.part_of_step is None
    result = batch.decode_file(uqd, output=tmp_path / "b.png", model=tiny_model_path, max_bytes=budget)
    assert result.ok and f", part of step {decoded.layer}" in result.status


def test_model_files_that_are_not_models_are_one_line_errors(photo, tiny_model_path, tmp_path):
    """-m photo.png said 'model config photo.json is missing'; a config that is JSON but not an
    object was an internal error, and so was a config of another network beside exact weights."""
    import json
    from pathlib import Path

    from uqdm_codec.model import save_model

    from .conftest import make_tiny_model

    r = run("encode", photo, "-m", photo, "-o", tmp_path / "a.uqd")
    assert_one_line_error(r)
    assert "photo.png is not a model: give a model name or a .safetensors file" in r.stderr
    weights = tmp_path / "odd.safetensors"
    weights.write_bytes(Path(tiny_model_path).read_bytes())
    for config, words in (
        ("[1]", "a JSON list, not an object"),
        ("{", "is invalid"),
        (b"\xff", "is invalid"),
    ):
        if isinstance(config, bytes):
            weights.with_suffix(".json").write_bytes(config)
        else:
            weights.with_suffix(".json").write_text(config)
        r = run("encode", photo, "-m", weights, "-o", tmp_path / "b.uqd")
        assert_one_line_error(r)
        assert "model config" in r.stderr and words in r.stderr, r.stderr
    config = json.loads(Path(tiny_model_path).with_suffix(".json").read_text())
    config["network"]["blocks_mid"] += 1  # another network's config: was an internal KeyError
    weights.with_suffix(".json").write_text(json.dumps(config))
    r = run("encode", photo, "-m", weights, "-o", tmp_path / "b.uqd")
    assert_one_line_error(r)
    assert "its config describes another network" in r.stderr
    config["network"]["blocks_mid"] -= 1
    config["schedule"]["levels"] = [2.0 ** (9 - i) for i in range(len(config["schedule"]["levels"]) + 1)]
    steps = weights.with_name("steps.safetensors")  # a new name: get_codec keeps the one above
    steps.write_bytes(weights.read_bytes())
    steps.with_suffix(".json").write_text(json.dumps(config))  # one step more: was an IndexError
    r = run("encode", photo, "-m", steps, "-o", tmp_path / "b.uqd")
    assert_one_line_error(r)
    assert "noise levels, its config's schedule has" in r.stderr
    config = json.loads(Path(tiny_model_path).with_suffix(".json").read_text())
    config["name"] = "x" * 65  # every encode was an internal ValueError: the header holds 64 bytes
    long = weights.with_name("long.safetensors")
    long.write_bytes(weights.read_bytes())
    long.with_suffix(".json").write_text(json.dumps(config))
    r = run("encode", photo, "-m", long, "-o", tmp_path / "b.uqd")
    assert_one_line_error(r)
    assert "long.json is invalid: model name longer than the 64 bytes" in r.stderr
    float_weights = tmp_path / "float.safetensors"
    save_model(make_tiny_model(), float_weights)
    config = json.loads(float_weights.with_suffix(".json").read_text())
    config["network"]["blocks_mid"] += 1  # torch's many-line message began 'Error(s) in loading'
    float_weights.with_suffix(".json").write_text(json.dumps(config))
    r = run("encode", photo, "-m", float_weights, "-o", tmp_path / "b.uqd")
    assert_one_line_error(r)
    assert "they do not fit float.json" in r.stderr
    assert not (tmp_path / "a.uqd").exists() and not (tmp_path / "b.uqd").exists()


def test_a_files_model_name_picks_only_shipped_weights_and_prints_as_text(
    photo, tiny_model_path, tmp_path, monkeypatch
):
    """The model name comes from the file: '../../x' made a decoder load weights/../../x.safetensors
    (any weights on the machine), and an ESC in it reached the terminal. A folder named like the
    default model in the working folder (a training run's --out) stopped every encode."""
    from dataclasses import replace
    from pathlib import Path

    from uqdm_codec.codec import model_for_file
    from uqdm_codec.model import DEFAULT_MODEL, resolve_model_path, shipped_model_path, weights_dir

    assert run("encode", photo, "-m", tiny_model_path, "--seed", 2, "-q").exit_code == 0
    data = photo.with_suffix(".uqd").read_bytes()
    header, size = container.parse_header(data)
    elsewhere = Path(tiny_model_path)
    climb = "/".join([".."] * len(weights_dir().resolve().parts)) + str(elsewhere.with_suffix(""))
    for name in (climb, str(elsewhere), str(elsewhere.with_suffix("")), ".hidden"):
        assert shipped_model_path(name) is None
        assert model_for_file(replace(header, model_name=name[:64]), None) is None, name
    shipped = shipped_model_path(DEFAULT_MODEL)
    assert shipped is not None and model_for_file(replace(header, model_name=DEFAULT_MODEL), None) == shipped
    odd = tmp_path / "odd.uqd"
    odd.write_bytes(replace(header, model_name="\x1b[2Jx\u202ey").to_bytes() + data[size:])
    r = run("info", odd)
    assert r.exit_code == 0 and "model \\x1b[2Jx\\u202ey (" in r.stdout and "\x1b" not in r.stdout
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEFAULT_MODEL).mkdir()
    assert resolve_model_path(None) == resolve_model_path(DEFAULT_MODEL) == shipped


def test_messages_name_options_as_their_caller_spells_them(tmp_path, uqd, tiny_model_path):
    """The library's messages named command-line options (`give at most one of --bpp, --bytes, ...`
    to a caller of decode(data, steps=, bpp=)); they name the library's keywords now, and the
    command line's options only while a command runs, in batch workers too."""
    import uqdm_codec
    from uqdm_codec import batch

    data = uqd.read_bytes()
    with pytest.raises(UqdmError, match=r"^give at most one of bpp, max_bytes, psnr or steps$"):
        uqdm_codec.decode(data, model=tiny_model_path, steps=1, bpp=1.0)
    with pytest.raises(UqdmError, match=r"encode it with psnr_index=True .* encode with psnr= from"):
        uqdm_codec.truncate(data, psnr=30)
    with pytest.raises(UqdmError, match=r"\(force=True to overwrite\)$"):
        check_output(uqd)
    cut = data[: len(data) - 40] + bytes([data[-40] ^ 1]) + data[len(data) - 39 :]
    with pytest.raises(UqdmError, match=r"decode\(data, max_bytes=\d+\) shows them"):
        uqdm_codec.decode(cut, model=tiny_model_path)
    r = run("truncate", uqd, "--steps", 1, "--bpp", 1)
    assert r.exit_code == 1 and "give exactly one of --bpp, --bytes, --psnr or --steps" in r.stderr
    r = run("truncate", uqd, "--psnr", 30)
    assert r.exit_code == 1 and "encode it with --psnr-index" in r.stderr
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a", "b"):  # their outputs exist: each worker process says so, as the command line
        (folder / f"{name}.uqd").write_bytes(data)
        (folder / f"{name}.step1.png").write_bytes(b"")
    r = run("decode", folder / "a.uqd", folder / "b.uqd", "--jobs", 2, "--steps", 1, "-m", tiny_model_path)
    assert r.exit_code == 1 and r.output.count("(use --force to overwrite)") == 2, r.output
    results = batch.run_batch(
        "decode", sorted(folder.glob("*.uqd")), None, model=tiny_model_path, jobs=2, steps=1
    )
    assert all(r.error.endswith("(force=True to overwrite)") for r in results), results
    assert not errors.in_command_line()  # the command's setting ended with it

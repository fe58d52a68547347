"""Many files through the library: output names, collisions, failures kept per file, worker pools,
and the README's pattern for running the codec under another engine's map."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uqdm_codec import batch, files
from uqdm_codec.batch import encode_file, plan_outputs, run_batch
from uqdm_codec.errors import UqdmError, command_line

from .conftest import synthetic_image


@pytest.fixture
def images(tmp_path):
    paths = []
    for k in range(3):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(synthetic_image(16, 20 + 4 * k, seed=k)).save(path)
        paths.append(path)
    return paths


def test_output_names_follow_the_single_file_commands(tmp_path):
    src = [tmp_path / "a.png", tmp_path / "b.uqd"]
    assert plan_outputs("encode", src[:1], None) == [tmp_path / "a.uqd"]
    assert plan_outputs("decode", src[1:], tmp_path / "o") == [tmp_path / "o" / "b.decoded.png"]
    assert plan_outputs("decode", src[1:], None, steps=3) == [tmp_path / "b.step3.png"]
    assert plan_outputs("truncate", src[1:], None, bpp=0.5) == [tmp_path / "b.0.5bpp.uqd"]
    assert plan_outputs("decode", src[1:], None, bpp=0.5) == [tmp_path / "b.0.5bpp.png"]
    sampled = plan_outputs("decode", src[1:], None, bpp=2, recon="sample", seed=3)
    assert sampled == [tmp_path / "b.2bpp.sample3.png"]


def test_collisions_and_inputs_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(UqdmError, match="would both write"):
        plan_outputs("encode", [tmp_path / "a.png", tmp_path / "a.jpg"], None)
    with pytest.raises(UqdmError, match="would both write"):
        plan_outputs("encode", [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png"], tmp_path / "out")
    with pytest.raises(UqdmError, match="overwrite the input"):
        plan_outputs("truncate", [tmp_path / "a.uqd", tmp_path / "a.1bpp.uqd"], None, bpp=1)
    with pytest.raises(UqdmError, match="overwrite the input"):
        plan_outputs("encode", [tmp_path / "a.png", tmp_path / "a.uqd"], None)
    (tmp_path / "file").write_bytes(b"")  # said 'cannot create the output folder (File exists)'
    with pytest.raises(UqdmError, match="file: not a folder \\(out_dir names the folder"):
        batch.make_folder(tmp_path / "file")
    with command_line(), pytest.raises(UqdmError, match="file: not a folder \\(--out-dir names the folder"):
        batch.make_folder(tmp_path / "file")


def test_worker_threads_share_the_cores():
    assert batch.worker_threads(1, cores=16) == 16
    assert batch.worker_threads(4, cores=16) == 4
    assert batch.worker_threads(3, cores=2) == 1


def test_run_batch_keeps_order_and_reports_each_failure(tmp_path, images, tiny_model_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    seen = []
    results = run_batch(
        "encode",
        [images[0], bad, images[1]],
        tmp_path / "out",
        model=tiny_model_path,
        seed=7,
        progress=lambda r, done, total: seen.append((r.source.name, done, total)),
    )
    assert [r.source.name for r in results] == ["img0.png", "broken.png", "img1.png"]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error and not results[1].error.startswith(str(bad))
    assert seen == [("img0.png", 1, 3), ("broken.png", 2, 3), ("img1.png", 3, 3)]
    data = results[0].output.read_bytes()
    assert len(data) == results[0].nbytes and files.info(data).complete
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written via a temporary file and a rename

    again = run_batch("encode", images[:1], tmp_path / "out", model=tiny_model_path)
    assert not again[0].ok and "already exists" in again[0].error  # no overwrite without force
    assert run_batch("encode", images[:1], tmp_path / "out", model=tiny_model_path, force=True)[0].ok


def test_skip_existing_resumes_an_interrupted_batch(tmp_path, images, tiny_model_path):
    """A rerun of a batch that was interrupted failed on every output it had finished ('already
    exists', exit code 1); skip_existing leaves those as they are and does the rest."""
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    out = tmp_path / "out"
    first = run_batch("encode", images[:1], out, model=tiny_model_path, seed=7)[0]
    finished = first.output.read_bytes()
    results = run_batch("encode", images, out, model=tiny_model_path, seed=7, skip_existing=True)
    assert [r.ok for r in results] == [True] * 3 and [r.skipped for r in results] == [True, False, False]
    assert results[0].status == batch.SKIPPED and results[0].nbytes == len(finished)
    assert first.output.read_bytes() == finished and all(
        files.info(r.output.read_bytes()).complete for r in results
    )
    for jobs in (0, 1.5, True):
        with pytest.raises(UqdmError, match=f"^jobs must be a whole number, at least 1, not {jobs!r}"):
            run_batch("truncate", images, out, jobs=jobs, steps=1)
    with pytest.raises(UqdmError, match="force=True .* or skip_existing=True .*, not both"):
        run_batch("encode", images, out, model=tiny_model_path, force=True, skip_existing=True)
    assert batch.truncate_file(results[1].output, out, steps=1, skip_existing=True).skipped is False
    assert batch.truncate_file(results[1].output, out, steps=1, skip_existing=True).skipped is True
    run = CliRunner().invoke
    model = ["-m", tiny_model_path]
    r = run(app, ["encode", *map(str, images), "--out-dir", str(out), *model, "--skip-existing"])
    assert r.exit_code == 0 and "0 of 3 files written, 3 skipped" in r.stdout, r.output
    r = run(
        app, ["decode", *map(str, [r.output for r in results]), "--steps", "1", *model, "--skip-existing"]
    )
    assert r.exit_code == 0 and "3 of 3 files written, 0 failed" in r.stdout, r.output
    single = ["decode", str(results[0].output), "--steps", "1", *model, "--skip-existing"]
    r = run(app, single)
    assert (
        r.exit_code == 0
        and r.stdout.startswith("skipped ")
        and "img0.step1.png: it exists already" in r.stdout
    )
    for extra, message in (
        (["-f"], "not both"),
        (["-o", "-"], "standard output (-o -) is none"),
        (["--all-steps", str(tmp_path / "levels")], "not with --progression, --all-steps or --stream"),
    ):
        r = run(app, [*single, *extra])
        assert r.exit_code == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.output
    r = run(
        app,
        [
            "truncate",
            str(results[0].output),
            "--steps",
            "1",
            "-o",
            str(out / "img1.1steps.uqd"),
            "--skip-existing",
        ],
    )
    assert r.exit_code == 0 and "it exists already" in r.stdout


def test_worker_processes_give_the_same_files(tmp_path, images, tiny_model_path):
    one = run_batch("encode", images, tmp_path / "one", model=tiny_model_path, seed=3)
    two = run_batch("encode", images, tmp_path / "two", jobs=2, model=tiny_model_path, seed=3)
    assert all(r.ok for r in one + two)
    for a, b in zip(one, two):
        assert a.output.read_bytes() == b.output.read_bytes()
    cut = run_batch("truncate", [r.output for r in two], tmp_path / "cut", jobs=2, steps=1)
    assert [r.output.name for r in cut] == ["img0.1steps.uqd", "img1.1steps.uqd", "img2.1steps.uqd"]


def _readme_pool(paths: list[Path], out_dir: Path, model: str) -> list[batch.Result]:
    """The README's one-machine pattern, with the test model."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        return list(pool.map(partial(encode_file, out_dir=out_dir, model=model), paths))


def test_readme_pattern_with_a_process_pool(tmp_path, images, tiny_model_path):
    results = _readme_pool(images, tmp_path / "pool", tiny_model_path)
    assert [r.ok for r in results] == [True, True, True]
    from uqdm_codec.codec import Codec

    codec = Codec(tiny_model_path, "cpu")
    for path, r in zip(images, results):
        assert np.array_equal(codec.decode(r.output.read_bytes()).pixels, np.asarray(Image.open(path)))


def test_readme_pattern_with_dask(tmp_path, images, tiny_model_path):
    db = pytest.importorskip("dask.bag")
    (tmp_path / "dask").mkdir()
    bag = db.from_sequence(images, npartitions=2).map(
        encode_file, out_dir=tmp_path / "dask", model=tiny_model_path
    )
    assert all(r.ok for r in bag.compute(scheduler="processes"))


def test_batch_decode_samples_under_their_own_names(tmp_path, images, tiny_model_path):
    encoded = run_batch("encode", images[:2], tmp_path / "enc", model=tiny_model_path, seed=4)
    uqds = [r.output for r in encoded]
    assert plan_outputs("decode", uqds[:1], None, steps=2, recon="sample", seed=5) == [
        tmp_path / "enc" / "img0.step2.sample5.png"
    ]
    kw = {"model": tiny_model_path, "steps": 2}
    drawn = run_batch("decode", uqds, tmp_path / "s", jobs=2, recon="sample", seed=5, **kw)
    means = run_batch("decode", uqds, tmp_path / "m", **kw)
    assert [r.output.name for r in drawn] == ["img0.step2.sample5.png", "img1.step2.sample5.png"]
    for d, m in zip(drawn, means):
        sample, mean = (np.asarray(Image.open(r.output)) for r in (d, m))
        assert sample.shape == mean.shape and not np.array_equal(sample, mean)
        one = batch.decode_file(
            d.source, tmp_path / "again", model=tiny_model_path, steps=2, recon="sample", seed=5
        )
        assert np.array_equal(np.asarray(Image.open(one.output)), sample)  # one process or two: same sample

"""Many files at once: encode, decode or truncate a list of paths, in worker processes.

Each file is one independent task (`encode_file`, `decode_file`, `truncate_file`): it reads its
input, writes its output through a temporary file and a rename, and returns a `Result` instead of
raising, so one bad file never stops the others, here or under another engine's map (Dask, Ray).
`run_batch` plans every output name first (refusing collisions and outputs that are inputs), then
runs the tasks in a process pool whose workers each load a model once and share the CPU cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .errors import UqdmError, in_command_line, is_whole, option, set_command_line

OPERATIONS = ("encode", "decode", "truncate")


@dataclass
class Result:
    """What became of one input: its output and size, or the one-line reason it failed."""

    source: Path
    output: Path | None
    ok: bool = False
    nbytes: int = 0  # bytes written
    bpp: float | None = None  # bits per pixel of a .uqd output
    status: str = ""  # decode: what the image is ("lossless", "step 3 of 8"); failure: the error
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # conversions made when reading an image
    skipped: bool = False  # skip_existing: the output was there already and was left as it is

    @property
    def error(self) -> str | None:
        return None if self.ok else self.status


def output_name(
    op: str,
    source: Path,
    *,
    steps: int | None = None,
    bpp: float | None = None,
    recon: str = "mean",
    seed: int | None = None,
    psnr: float | None = None,
    max_bytes: int | None = None,
    suffix: str = ".png",
) -> str:
    """The file name an operation gives its output by default (the single-file CLI's names; a
    sampled decode adds .sampleS). psnr, max_bytes: the quality or size a decode or truncate cuts to;
    suffix: a decoded image's (image_io.format_suffix)."""
    if op == "encode":
        return f"{source.stem}.uqd"
    if op == "decode":
        tag = "" if recon == "mean" else f".sample{seed or 0}"
        if bpp is not None:
            return f"{source.stem}.{bpp:g}bpp{tag}{suffix}"
        if psnr is not None:
            return f"{source.stem}.{psnr:g}dB{tag}{suffix}"
        if max_bytes is not None:
            return f"{source.stem}.{max_bytes}bytes{tag}{suffix}"
        level = "decoded" if steps is None else f"step{steps}"
        return f"{source.stem}.{level}{tag}{suffix}"
    if op == "truncate":
        tag = (
            f"{bpp:g}bpp"
            if bpp is not None
            else f"{psnr:g}dB"
            if psnr is not None
            else f"{max_bytes}bytes"
            if max_bytes is not None
            else f"{steps}steps"
        )
        return f"{source.stem}.{tag}.uqd"
    raise ValueError(f"unknown operation {op!r}")


def plan_outputs(
    op: str,
    sources: Sequence[Path],
    out_dir: Path | None,
    *,
    steps: int | None = None,
    bpp: float | None = None,
    **names,
) -> list[Path]:
    """Output path of every input (in out_dir, else beside the input). Raises UqdmError, before
    anything is written, if two inputs would write the same file or an output is an input."""
    targets = [output_path(op, Path(s), out_dir, None, steps=steps, bpp=bpp, **names) for s in sources]
    inputs = {_key(s): Path(s) for s in sources}
    seen: dict[str, Path] = {}
    for source, target in zip(sources, targets):
        key = _key(target)
        if key in seen:
            raise UqdmError(f"{seen[key]} and {source} would both write {target}; rename one")
        if key in inputs:
            raise UqdmError(f"{source} would overwrite the input {inputs[key]}")
        seen[key] = Path(source)
    return targets


def _key(path: Path) -> str:
    """A path's identity for collision checks (case-folded where the file system ignores case)."""
    resolved = str(Path(path).resolve())
    return resolved.casefold() if os.path.normcase("A") == "a" else resolved


SKIPPED = "skipped: the output exists already"


def _run(
    task: Callable[[], Result], source: Path, output: Path, out_dir, force: bool, skip_existing: bool
) -> Result:
    """Run one task, timing it and turning any failure into a failed Result. Creates out_dir
    (each task does, so that a map on other machines needs no set-up step). skip_existing: an
    output file that exists already (a finished task: outputs are renamed into place whole) is
    left as it is, and the task is not run."""
    t0 = time.perf_counter()
    try:
        if left_alone(output, force, skip_existing):
            size = Path(output).stat().st_size
            return Result(Path(source), Path(output), True, size, None, SKIPPED, skipped=True)
        if out_dir is not None:
            make_folder(out_dir)
        result = task()
    except UqdmError as exc:
        result = Result(Path(source), output, status=_strip(str(exc), source))
    except MemoryError:
        result = Result(Path(source), output, status="out of memory")
    except Exception as exc:  # noqa: BLE001 - one file's failure must not stop the others
        if os.environ.get("UQDM_DEBUG"):
            raise
        result = Result(Path(source), output, status=f"internal error: {type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - t0
    return result


def _strip(message: str, source: Path) -> str:
    """Drop a leading 'path: ' from a message: the report names the file already."""
    prefix = f"{source}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def output_path(op: str, source: Path, out_dir, output, **names) -> Path:
    """`output` if given (refused where an encode or truncate would give a .uqd file an image's
    name), else the default name in out_dir or beside the input."""
    if output is not None:
        if op != "decode":
            from .image_io import check_uqd_name

            check_uqd_name(output)
        return Path(output)
    return (Path(out_dir) if out_dir is not None else source.parent) / output_name(op, source, **names)


def encode_file(
    source: str | Path,
    out_dir: str | Path | None = None,
    output: str | Path | None = None,
    *,
    model=None,
    device=None,
    seed: int | None = None,
    mirrors: int = 1,
    fast: bool = False,
    tail: bool | None | str = "default",
    tail_after: int | None = None,
    keep_icc: bool = True,
    keep_metadata: bool = True,
    psnr: float | None = None,
    bpp: float | None = None,
    steps: int | None = None,
    psnr_index: bool = False,
    max_bytes: int | None = None,
    force: bool = False,
    skip_existing: bool = False,
) -> Result:
    """Encode one image to `output` (default: NAME.uqd in out_dir, else beside the input);
    `mirrors`, `fast`, `tail` and `tail_after` as for Codec.encode; keep_icc, keep_metadata: store
    the image's RGB colour profile, its EXIF and XMP metadata if it has them; psnr, bpp, steps:
    only the prefix of the file that reaches psnr dB, fits bpp or max_bytes or holds the steps
    (quality.Target);
    psnr_index: the header records every chunk boundary's PSNR, for truncate --psnr. force: overwrite
    an existing output; skip_existing: leave it as it is, and do nothing (each task of run_batch)."""
    source = Path(source)
    target = output_path("encode", source, out_dir, output)

    def task() -> Result:
        from . import files, get_codec
        from .image_io import atomic_write, check_output, load_image
        from .quality import Target

        aim = Target(psnr=psnr, bpp=bpp, steps=steps, max_bytes=max_bytes)
        check_output(target, force, (source,))
        from .codec import default_tail_note

        loaded = load_image(source)
        if tail_after is None and (note := default_tail_note(loaded.pixels, tail)):
            loaded.notes.append(note)
        encoded = get_codec(model, device).encode_judged(
            loaded.pixels,
            seed=seed,
            mirrors=mirrors,
            fast=fast,
            tail=tail,
            tail_after=tail_after,
            target=aim,
            psnr_index=psnr_index,
            **loaded.extras(keep_icc, keep_metadata),
        )
        data = encoded.data
        atomic_write(target, data, force=force, inputs=(source,))
        value = files.bpp_of(len(data), files.info(data).header)
        status = f"{value:.3f} bpp"
        if aim.given:
            status += f", {quality_text(encoded.psnr)}"
        return Result(source, target, True, len(data), value, status, notes=loaded.notes)

    return _run(task, source, target, out_dir if output is None else None, force, skip_existing)


def decode_file(
    source: str | Path,
    out_dir: str | Path | None = None,
    output: str | Path | None = None,
    *,
    steps: int | None = None,
    bpp: float | None = None,
    model=None,
    device=None,
    recon: str = "mean",
    seed: int | None = None,
    psnr: float | None = None,
    max_bytes: int | None = None,
    image_format: str = "png",
    force: bool = False,
    skip_existing: bool = False,
) -> Result:
    """Decode one .uqd file to an image (default: NAME.decoded.png, NAME.stepN.png or, from the longest
    prefix within `bpp`, NAME.<bpp>bpp.png, from the shortest its PSNR index says reaches `psnr` dB,
    NAME.<psnr>dB.png, from the longest within `max_bytes`, NAME.<max_bytes>bytes.png; with recon="sample"
    the remaining steps are drawn, see sampling.py, and the name ends .sampleS). `image_format`
    ("webp", "tif", "jpg", ...) replaces .png in the default names; `output`'s format is its name's,
    or `image_format` where its name says none."""
    from .image_io import format_suffix, output_format

    source = Path(source)
    names = {"steps": steps, "bpp": bpp, "recon": recon, "seed": seed, "psnr": psnr, "max_bytes": max_bytes}
    suffix = format_suffix(image_format)
    fmt = output_format(f"x{suffix}")
    target = output_path("decode", source, out_dir, output, suffix=suffix, **names)

    def task() -> Result:
        from . import container, files, get_codec
        from .codec import model_for_file
        from .image_io import check_output, save_image, writes_exactly

        output_format(target, fmt)  # a format uqdm does not write: refused before decoding
        damage: list[str] = []  # a file damaged after what is asked for: said, not refused
        data = files.budget_prefix(files.read_input(source), steps, bpp, psnr, max_bytes, damage)
        header, _ = container.parse_header(data)
        output_format(target, fmt, header.gray)  # PGM for a colour image: refused before decoding
        check_output(target, force, (source,))
        codec = get_codec(model_for_file(header, model), device)
        decoded = codec.decode(data, steps, recon=recon, seed=seed)
        keep = {"force": force, "inputs": (source,), "unnamed": fmt, **decoded.extras()}
        saved = save_image(decoded.pixels, target, **keep)
        what = f"step {decoded.steps} of {header.coded_steps}"
        if decoded.part_of_step is not None:
            what += f", part of step {decoded.part_of_step}"
        if decoded.lossless:
            what = "lossless" if writes_exactly(target, fmt) else "lossless, in a lossy format"
        cut = bpp is not None or psnr is not None or max_bytes is not None
        if cut:
            what += f", {files.bpp_of(len(data), header):.3f} bpp read"
        notes = damage + ([] if cut else decoded.warnings) + saved  # a prefix cut on purpose is no warning
        return Result(source, target, True, target.stat().st_size, None, what, notes=notes)

    return _run(task, source, target, out_dir if output is None else None, force, skip_existing)


def truncate_file(
    source: str | Path,
    out_dir: str | Path | None = None,
    output: str | Path | None = None,
    *,
    bpp: float | None = None,
    steps: int | None = None,
    psnr: float | None = None,
    max_bytes: int | None = None,
    force: bool = False,
    skip_existing: bool = False,
) -> Result:
    """Cut one .uqd file to a budget (`bpp`, `max_bytes` or `steps`) or a quality (`psnr`, by its PSNR index);
    needs no model and no torch."""
    source = Path(source)
    target = output_path(
        "truncate", source, out_dir, output, bpp=bpp, steps=steps, psnr=psnr, max_bytes=max_bytes
    )

    def task() -> Result:
        from . import files
        from .image_io import atomic_write

        check_cut("truncate", bpp, steps, psnr, max_bytes)
        damage: list[str] = []
        data = files.read_input(source)
        cut = files.truncate(data, bpp=bpp, steps=steps, psnr=psnr, max_bytes=max_bytes, notes=damage)
        atomic_write(target, cut, force=force, inputs=(source,))
        value = files.bpp_of(len(cut), files.info(cut).header)
        return Result(source, target, True, len(cut), value, f"{value:.3f} bpp", notes=damage)

    return _run(task, source, target, out_dir if output is None else None, force, skip_existing)


def left_alone(output: Path | str, force: bool, skip_existing: bool) -> bool:
    """skip_existing's rule, for a batch task and a single input alike: an output file that exists
    already is finished (outputs are renamed into place whole), so it is left as it is."""
    return check_skip(force, skip_existing) and Path(output).is_file()


def check_skip(force: bool, skip_existing: bool) -> bool:
    """skip_existing, refused with force (the one overwrites what the other leaves alone)."""
    if force and skip_existing:
        force_, skip = option("--force", "force=True"), option("--skip-existing", "skip_existing=True")
        raise UqdmError(f"give {force_} (overwrite) or {skip} (leave as it is), not both")
    return skip_existing


def check_cut(
    op: str, bpp: float | None, steps: int | None, psnr: float | None, max_bytes: int | None = None
) -> None:
    """The prefix a truncate (exactly one of --bpp, --bytes, --psnr, --steps) or a decode (at most
    one) asks for: one error for the whole run, not one per file."""
    from .files import check_max_bytes, check_psnr, cut_options

    given = sum(v is not None for v in (bpp, steps, psnr, max_bytes))
    if op == "truncate" and given != 1:
        raise UqdmError(f"give exactly one of {cut_options()}")
    if given > 1:
        raise UqdmError(f"give at most one of {cut_options()}")
    if psnr is not None:
        check_psnr(psnr)
    if max_bytes is not None:
        check_max_bytes(max_bytes)


def quality_text(psnr: float | None) -> str:
    """A file's PSNR as encode reports it (quality.Encoded.psnr)."""
    if psnr is None:
        return "PSNR not judged"
    return "lossless" if psnr == float("inf") else f"{psnr:.2f} dB"


def check_folder(folder: str | Path, name: str | None = None) -> None:
    """Before any work: an output folder may be missing (it is made) but not a file. `name`: the
    option that named it (--out-dir's or out_dir's)."""
    if Path(folder).exists() and not Path(folder).is_dir():
        name = name or option("--out-dir", "out_dir")
        raise UqdmError(f"{folder}: not a folder ({name} names the folder the outputs go to)")


def make_folder(folder: str | Path, name: str | None = None) -> None:
    check_folder(folder, name)
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UqdmError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None


TASKS = {"encode": encode_file, "decode": decode_file, "truncate": truncate_file}


def worker_threads(jobs: int, cores: int | None = None) -> int:
    """torch threads per worker, so that `jobs` workers together use the cores once."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def _init_worker(threads: int | None, preload: tuple | None, command_line: bool = False) -> None:
    """Runs once in each worker: share the cores (threads None: no torch needed, as for truncate),
    load the model before the first file, and name options in messages as the run's caller does."""
    set_command_line(command_line)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if preload is not None:
        from . import get_codec

        try:
            get_codec(*preload)
        except Exception:  # noqa: BLE001 - each file then reports the error itself
            pass


def run_batch(
    op: str,
    paths: Sequence[str | Path],
    out_dir: str | Path | None = None,
    jobs: int = 1,
    *,
    model=None,
    device=None,
    seed: int | None = None,
    steps: int | None = None,
    bpp: float | None = None,
    recon: str = "mean",
    mirrors: int = 1,
    fast: bool = False,
    tail: bool | None | str = "default",
    tail_after: int | None = None,
    keep_icc: bool = True,
    keep_metadata: bool = True,
    psnr: float | None = None,
    psnr_index: bool = False,
    max_bytes: int | None = None,
    image_format: str = "png",
    force: bool = False,
    skip_existing: bool = False,
    progress: Callable[[Result, int, int], None] | None = None,
) -> list[Result]:
    """Run `op` ("encode", "decode" or "truncate") on every path; results in input order.

    Outputs go to out_dir (created if missing), else beside each input, under the single-file
    names. jobs > 1 runs that many worker processes, each with cores // jobs torch threads and
    its own model loaded once. `seed` is the file seed for encode and the sampling seed for decode
    with recon="sample"; `mirrors`, `fast`, `tail`, `tail_after`, `keep_icc` and `keep_metadata` the encoder's
    (encode_file), as are `psnr`, `bpp`, `max_bytes` and `steps` for encode (at most one: the prefix
    to keep) and `psnr_index`; for decode and truncate, `psnr` cuts to a quality by the file's PSNR
    index, `bpp` and `max_bytes` to a size; `image_format` is decode's (decode_file).
    force overwrites existing outputs; skip_existing leaves them as they are and skips their inputs
    (a rerun resumes an interrupted batch). progress(result, done, total) is called as each file
    finishes. Raises UqdmError only for problems with the whole run (name collisions, bad options)."""
    if op not in TASKS:
        raise UqdmError(f"unknown operation {op!r} (one of {', '.join(OPERATIONS)})")
    if not is_whole(jobs) or jobs < 1:  # 1.5 failed in the process pool, True ran as 1
        raise UqdmError(f"{option('--jobs', 'jobs')} must be a whole number, at least 1, not {jobs!r}")
    check_skip(force, skip_existing)
    if op != "encode":
        check_cut(op, bpp, steps, psnr, max_bytes)
    if op == "encode":
        from .quality import Target

        Target(psnr=psnr, bpp=bpp, steps=steps, max_bytes=max_bytes).check_psnr_index(
            psnr_index
        )  # one error, not one per file
    sources = [Path(p) for p in paths]
    names = {}
    if op == "decode":
        from .image_io import format_suffix

        suffix = format_suffix(image_format)  # one error, not one per file
        names = {"recon": recon, "seed": seed, "psnr": psnr, "max_bytes": max_bytes, "suffix": suffix}
    if op == "truncate":
        names = {"psnr": psnr, "max_bytes": max_bytes}
    targets = plan_outputs(
        op, sources, Path(out_dir) if out_dir is not None else None, steps=steps, bpp=bpp, **names
    )
    preload = (model, device) if op == "encode" or (op == "decode" and model is not None) else None
    if preload is not None and not hasattr(model, "denoiser"):
        from .model import resolve_model_path

        resolve_model_path(model)  # a missing model is one error, not one per file
    if out_dir is not None:
        make_folder(out_dir)
    options = {
        "encode": {
            "model": model,
            "device": device,
            "seed": seed,
            "mirrors": mirrors,
            "fast": fast,
            "tail": tail,
            "tail_after": tail_after,
            "keep_icc": keep_icc,
            "keep_metadata": keep_metadata,
            "psnr": psnr,
            "bpp": bpp,
            "steps": steps,
            "psnr_index": psnr_index,
            "max_bytes": max_bytes,
        },
        "decode": {
            "model": model,
            "device": device,
            "steps": steps,
            "bpp": bpp,
            "recon": recon,
            "seed": seed,
            "psnr": psnr,
            "max_bytes": max_bytes,
            "image_format": image_format,
        },
        "truncate": {"bpp": bpp, "steps": steps, "psnr": psnr, "max_bytes": max_bytes},
    }[op]
    task = partial(TASKS[op], force=force, skip_existing=skip_existing, **options)
    results: list[Result | None] = [None] * len(sources)
    done = 0

    def finish(k: int, result: Result) -> None:
        nonlocal done
        results[k], done = result, done + 1
        if progress:
            progress(result, done, len(sources))

    jobs = min(jobs, len(sources)) or 1
    if jobs == 1:
        for k, (source, target) in enumerate(zip(sources, targets)):
            finish(k, task(source, output=target))
        return results  # type: ignore[return-value]

    import multiprocessing

    # spawn: a forked child of a process whose torch thread pool already ran can hang
    context = multiprocessing.get_context("spawn")
    threads = None if op == "truncate" else worker_threads(jobs)
    with ProcessPoolExecutor(
        jobs, context, initializer=_init_worker, initargs=(threads, preload, in_command_line())
    ) as pool:
        pending = {pool.submit(task, s, output=t): k for k, (s, t) in enumerate(zip(sources, targets))}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    k = pending.pop(future)
                    try:
                        finish(k, future.result())
                    except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                        message = f"worker process failed ({type(exc).__name__}: {exc})"
                        finish(k, Result(sources[k], targets[k], status=message))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results  # type: ignore[return-value]

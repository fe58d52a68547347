"""The `uqdm` command: argument parsing and printing only; the work lives in the library."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import unicodedata
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import batch, colour_profile, files, photo_metadata
from .errors import FormatError, UqdmError, command_line
from .lossless_tail import TAIL_DEFAULT, TAIL_NAMES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="uqdm: progressive image compression with a universally quantized diffusion model.",
)


def _shown(text: str) -> str:
    """`text` with control, format and surrogate characters (ESC, bidi overrides, undecodable bytes
    of a file name) as escapes, newlines and tabs kept: a model name or an EXIF field read from a
    file must not steer the terminal."""
    if text.isprintable():
        return text
    keep = ("\n", "\t")
    return "".join(
        c
        if c in keep or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
        else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


class _Console(Console):
    """rich's console, every string it renders (printed, or a table's cell or title) through
    _shown. No markup: what is printed holds file names, and '[red]' in 'photo [red].png' must stay
    text."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, **kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(_shown(text), **kwargs)


out = _Console()
err = _Console(stderr=True)


def _unwrapped(doc: str | None) -> str:
    """A docstring's paragraphs each on one line: typer prints a paragraph's line breaks as they are."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _command(**settings: object) -> Callable[[Callable], Callable]:
    """`app.command`, its help the function's docstring unwrapped, so the terminal wraps it; the
    library's messages name options as the command line spells them while it runs
    (errors.command_line)."""

    def register(f: Callable) -> Callable:
        @functools.wraps(f)
        def run(*args: object, **kwargs: object) -> object:
            with command_line():
                return f(*args, **kwargs)

        return app.command(help=_unwrapped(f.__doc__), **settings)(run)

    return register


def _version_text() -> str:
    """What `uqdm --version` prints: the package and the file formats it writes and reads (no torch)."""
    from . import __version__, container

    reads = sorted({*container.READ_VERSIONS, container.VERSION, container.EXTENDED_VERSION})
    return (
        f"uqdm {__version__} (writes .uqd format {container.VERSION}, {container.EXTENDED_VERSION} with "
        f"header extensions; reads formats {reads[0]}-{reads[-1]})"
    )


def _print_version(value: bool) -> None:
    if value:
        print(_version_text())
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print uqdm's version and the file formats it writes and reads, and exit.",
    ),
) -> None:
    """uqdm: progressive image compression with a universally quantized diffusion model."""


ModelOpt = typer.Option(None, "--model", "-m", help="Model name (in weights/) or .safetensors path.")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar, no notes.")
ForceOpt = typer.Option(False, "--force", "-f", help="Overwrite an existing output file.")
SkipOpt = typer.Option(
    False,
    "--skip-existing",
    help="Leave an output file that exists already as it is and go on with the next input, so "
    "that rerunning an interrupted batch resumes it (outputs are renamed into place whole, so one "
    "that exists is finished). Not with --force.",
)
TailOpt = typer.Option(
    None,
    "--tail",
    help="The lossless end: 'off' the pixel step and the lossless layer; 'on' a lossless coder "
    "from exact neighbours after step T-1 (10-15 % smaller lossless files for photos, no image between "
    "step T-1 and lossless but its passes'); 'auto' both coded, the smaller file kept. Default: 'on' "
    "for a grayscale image (R = G = B: lossless files about 40 % smaller), else 'off'.",
    show_default=False,
)
TailAfterOpt = typer.Option(
    None,
    "--tail-after",
    metavar="STEP",
    help="A lossless archive with previews: the tail follows diffusion step STEP (0 to T-1; implies "
    "--tail on) and the later steps are not coded. Lossless files about 12 % smaller than --tail on "
    "for photos at STEP 3 (below JPEG 2000 and JPEG XL on Kodak), with step images up to STEP only "
    "(on Kodak about 0.03 bpp at STEP 2, 0.07 at 3, 0.22 at 4). Small and thin images: STEP 0 makes "
    "their lossless files 20-70 % smaller than the default's.",
)


def _tail_mode(mode: str | None, tail_after: int | None = None) -> bool | None | str:
    """--tail off / on / auto as Codec.encode's tail argument (--tail-after implies on; no --tail:
    the codec's default, which depends on the image)."""
    if mode is None:
        return True if tail_after is not None else TAIL_DEFAULT
    if mode not in TAIL_NAMES:
        raise UqdmError(f"--tail must be one of off, on, auto (not {mode!r})")
    if tail_after is not None:
        if mode == "auto":
            raise UqdmError("--tail-after codes the tail always; it does not go with --tail auto")
        return True
    return TAIL_NAMES[mode]


def _size(text: str | None) -> int | None:
    """--bytes SIZE as a number of bytes (files.parse_size)."""
    return None if text is None else files.parse_size(text)


def _bytes_opt(what: str):
    return typer.Option(
        None,
        "--bytes",
        metavar="SIZE",
        help=what + " SIZE: bytes, or 20k / 20kB (1000s), 20KiB (1024s), 1.5M.",
        show_default=False,
    )


OutDirOpt = typer.Option(
    None,
    "--out-dir",
    help="Folder for the outputs (created if missing), under their default names; needed to gather "
    "the outputs of several inputs in one place (default: beside each input).",
)
JobsOpt = typer.Option(
    1,
    "--jobs",
    "-j",
    min=1,
    help="With several inputs: worker processes; each loads the model once and gets cores/N torch threads.",
)


def _error(message: str) -> None:
    """One red-labelled error line on standard error; the message as text (no markup, control
    characters escaped)."""
    err.print(Text.assemble(("error:", "red"), f" {_shown(message)}"), highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> None:
    _error(message)
    raise typer.Exit(code)


@contextmanager
def _errors():
    """Turn every failure into one line on stderr and a non-zero exit code."""
    try:
        yield
    except UqdmError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; no output written", 130)
    except typer.Exit:
        raise
    except MemoryError:
        _fail("out of memory")
    except OSError as exc:  # the system's refusal (a full disk, a failing standard output), not a defect
        if os.environ.get("UQDM_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename else "standard output: "  # files' errors name them
        _fail(f"{where}{exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - the user gets one line, developers get UQDM_DEBUG
        if os.environ.get("UQDM_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set UQDM_DEBUG=1 for details)", 2)


STDIO = "-"  # as an input: standard input; as -o: standard output


def _is_stdio(path: Path | None) -> bool:
    return path is not None and str(path) == STDIO


def _label(path: Path) -> str:
    return "standard input" if _is_stdio(path) else str(path)


def _inputs(path: Path) -> tuple[Path, ...]:
    """The inputs an output must not overwrite (none for standard input)."""
    return () if _is_stdio(path) else (path,)


def _check_stdout(what: str) -> None:
    """Before any work: binary data is not for a terminal."""
    if sys.stdout.isatty():
        raise UqdmError(
            f"refusing to write {what} to a terminal: redirect standard output (> FILE) or give -o FILE"
        )


def _write_stdout(data: bytes) -> None:
    """The whole output at once, once it is complete (never half an output, as for files); with
    encode --stream, each layer as it is coded."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        try:  # no second complaint when Python flushes standard output at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise UqdmError("standard output was closed before the whole output was written") from None


@contextmanager
def _streamed_so_far(stream: bool):
    """encode --stream stopped by Ctrl-C: what went out is a shorter file, not nothing."""
    try:
        yield
    except KeyboardInterrupt:
        if not stream:
            raise
        _fail("interrupted; the layers already on standard output are a valid, shorter file", 130)


def _check_no_stdio(inputs: list[Path]) -> None:
    if any(_is_stdio(p) for p in inputs):
        raise UqdmError("- (standard input) must be the only input")


@contextmanager
def _naming(path: Path, every: bool = False):
    """Name the file in a format error raised while reading it, as batch runs do; every: in any
    error (around what only reads the file, such as a cut that it cannot give)."""
    label = _label(path)
    try:
        yield
    except UqdmError as exc:
        if label in str(exc) or not (every or isinstance(exc, FormatError)):
            raise
        raise type(exc)(f"{label}: {exc}") from exc


@contextmanager
def _progress(label: str, quiet: bool, unit: str = "layers"):
    """A rich progress bar on a terminal; nothing when quiet or piped."""
    if quiet or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} " + unit),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _read(path: Path) -> bytes:
    """A file's bytes; `-`: all of standard input."""
    if _is_stdio(path):
        return _stdin().read()
    return files.read_input(path)


def _stdin():
    """Standard input's bytes as a file, refused where it is a terminal (nothing was piped in)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UqdmError("- reads standard input, which is a terminal here: pipe a file in (< FILE)")
    return sys.stdin.buffer


def _single_target(op: str, source: Path, output: Path | None, out_dir: Path | None, **names) -> Path:
    """Where a single input's output goes: -o (`-`: standard output), else its default name in
    --out-dir or beside it."""
    from .batch import make_folder, output_path

    if output is not None and _is_stdio(output):
        return output
    if output is None and _is_stdio(source):
        raise UqdmError(
            "standard input has no name to name the output after: give -o FILE (or -o - for standard output)"
        )
    if output is None and out_dir is not None:
        make_folder(out_dir)
    return output_path(op, source, out_dir, output, **names)


def _left_alone(target: Path | str, force: bool, skip_existing: bool) -> bool:
    """--skip-existing of a single input: True, said in a line, where its output exists already;
    refused with --force and with standard output."""
    if batch.check_skip(force, skip_existing) and _is_stdio(target):
        raise UqdmError("--skip-existing leaves existing output files alone; standard output (-o -) is none")
    if not batch.left_alone(target, force, skip_existing):
        return False
    out.print(f"skipped {target}: it exists already (--skip-existing)", highlight=False, soft_wrap=True)
    return True


def _batch(
    op: str, inputs: list[Path], output: Path | None, out_dir: Path | None, jobs: int, quiet: bool, **opts
):
    """Several inputs: run them through batch.run_batch, one line per failure as it happens, a
    table at the end; exit code 1 if any failed."""
    from . import batch

    _check_no_stdio(inputs)
    if output is not None:
        raise UqdmError(
            f"-o/--output names one file but {len(inputs)} inputs were given; use --out-dir FOLDER"
        )
    word = "warning" if op == "decode" else "note"

    with _progress(f"{op} ({jobs} worker{'s' if jobs > 1 else ''})", quiet, "files") as update:

        def report(result: batch.Result, done: int, total: int) -> None:
            if not result.ok:
                _error(f"{result.source}: {result.status}")
            elif not quiet:
                for note in result.notes:
                    err.print(f"{word}: {result.source}: {note}", highlight=False, soft_wrap=True)
            if update:
                update(done, total)

        if update:
            update(0, len(inputs))
        try:
            results = batch.run_batch(op, inputs, out_dir, jobs, progress=report, **opts)
        except KeyboardInterrupt:
            _fail("interrupted; the outputs already finished are kept, none is half-written", 130)
    failed = sum(not r.ok for r in results)
    skipped = sum(r.skipped for r in results)
    if not quiet:
        table = Table(title=f"{op}: {len(results)} files", title_justify="left")
        for col in ("file", "output", "bytes", "bpp or status", "seconds"):
            table.add_column(col, justify="left" if col in ("file", "output", "bpp or status") else "right")
        for r in results:
            table.add_row(
                str(r.source),
                str(r.output) if r.ok else "-",
                str(r.nbytes) if r.ok else "-",
                r.status if r.ok else Text("failed", style="red"),
                f"{r.seconds:.1f}",
            )
        out.print(table)
    left = f", {skipped} skipped (their outputs exist already)" if skipped else ""
    out.print(
        f"{len(results) - failed - skipped} of {len(results)} files written{left}, {failed} failed",
        highlight=False,
        soft_wrap=True,
    )
    if failed:
        raise typer.Exit(1)


def _psnr_cell(value: float | None) -> str:
    """A PSNR in a table: dB to hundredths, "exact" for an exact image, blank where none is known."""
    return "" if value is None else "exact" if value == float("inf") else f"{value:.2f}"


def _wide() -> Console:
    """The console for wide tables: piped output is not squeezed to 80 columns."""
    return out if out.is_terminal else _Console(width=160, file=out.file)


def _layer_table(fi, title: str, encoded=None) -> Table:
    """A file's layers; with the encoder's quality.Encoded or the file's PSNR index, the PSNR
    after each of them too (an index's to its hundredths, rounded down)."""
    table = Table(title=title, title_justify="left")
    columns = ["layer", "content", "filter", "bytes", "total", "bpp"]
    index = fi.psnr_table
    if encoded is not None or index:
        columns.append("PSNR")
    for col in columns:
        table.add_column(col, justify="right" if col not in ("content", "filter") else "left")

    def psnr(end: int) -> list[str]:
        if encoded is None and not index:
            return []
        value = encoded.psnr_at(end) if encoded is not None else index.get(end)
        return [_psnr_cell(value)]

    extras = ["grayscale"] if fi.header.gray else []
    if fi.header.icc_profile is not None:
        extras.append(f"ICC profile: {colour_profile.describe(fi.header.icc_profile)}")
    if fi.header.alpha is not None:
        extras.append("alpha channel")
    if fi.header.exif is not None:
        extras.append(photo_metadata.describe_exif(fi.header.exif))
    if fi.header.xmp is not None:
        extras.append(f"XMP ({len(fi.header.xmp):,} bytes)")
    if fi.header.psnr_index is not None:
        extras.append(f"PSNR index ({len(fi.header.psnr_index)} chunk boundaries)")
    table.add_row(
        "header",
        ", ".join(extras),
        "",
        str(fi.header_bytes),
        str(fi.header_bytes),
        f"{files.bpp_of(fi.header_bytes, fi.header):.4f}",
        *psnr(fi.header_bytes),
    )
    for layer in fi.layers:
        content = "lossless pixels" if layer.lossless else f"diffusion step {layer.index}"
        if layer.lossless and fi.header.tail:
            after = "" if fi.header.tail_after is None else f" after step {fi.header.tail_after}"
            content = f"lossless tail{after} (form {fi.header.tail_form})"
        filt = f"{layer.filter_side}x{layer.filter_side}" if layer.filter_side else ""
        if filt and fi.regions > 1:
            filt += f" ({layer.filtered_regions}/{fi.regions})"  # regions whose layer has one
        table.add_row(
            str(layer.index),
            content,
            filt,
            str(layer.bytes),
            str(layer.end),
            f"{layer.bpp:.4f}",
            *psnr(layer.end),
        )
    return table


@_command()
def encode(
    images: list[Path] = typer.Argument(
        ..., metavar="IMAGES", help="Images to compress (PNG, JPEG, WebP, ...); '-': standard input."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Output .uqd of a single input (default: next to the input; '-': standard output).",
    ),
    out_dir: Path | None = OutDirOpt,
    jobs: int = JobsOpt,
    model: str | None = ModelOpt,
    device: str = DeviceOpt,
    seed: int | None = typer.Option(
        None, help="Seed of the shared randomness, 0 to 2^64 - 1 (default: random)."
    ),
    mirrors: int = typer.Option(
        1,
        "--mirrors",
        help="Network passes per diffusion step, averaged over mirror images: 1, 2 or 4. More make "
        "smaller files (about 1 and 2 %) and take longer to encode and to decode.",
    ),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="About half the encoding time: the same file size and images at every step, but "
        "coarser images inside a step (files cut by truncate --bpp a few % larger at equal "
        "quality).",
    ),
    tail: str | None = TailOpt,
    tail_after: int | None = TailAfterOpt,
    icc: bool = typer.Option(
        True,
        "--icc/--no-icc",
        help="Keep an image's ICC colour profile (RGB, or gray for a grayscale image) in the file, "
        "for decoded images to carry (--no-icc: leave it out, a few hundred bytes to a few KB less).",
    ),
    metadata: bool = typer.Option(
        True,
        "--metadata/--no-metadata",
        help="Keep a photo's EXIF (camera, date, exposure, any GPS location; not its orientation, "
        "thumbnail or maker's note) and XMP metadata in the file, for decoded images to carry "
        "(--no-metadata: leave them out, typically 0.2 to 3 KB less).",
    ),
    psnr: float | None = typer.Option(
        None,
        "--psnr",
        help="Write only the shortest prefix whose image reaches this PSNR in dB (over R, G and B; "
        "the encoder stops at that step and cuts inside its chunk): a lossy file of that quality.",
    ),
    bpp: float | None = typer.Option(
        None,
        "--bpp",
        help="Write only the longest prefix within this many bits per pixel (what truncate --bpp "
        "keeps of the whole file).",
    ),
    size: str | None = _bytes_opt(
        "Write only the longest prefix within SIZE bytes (what truncate --bytes keeps of the whole file)."
    ),
    steps: int | None = typer.Option(None, "--steps", "-s", help="Write only the first N diffusion steps."),
    psnr_index: bool = typer.Option(
        False,
        "--psnr-index",
        help="Record the PSNR of every chunk boundary in the header (about a byte per chunk), so "
        "that truncate --psnr and decode --psnr can cut the file to a quality without the original. "
        "uqdm 0.38-0.40 read such files with a warning that they skip the index; older ones refuse them.",
    ),
    stream: bool = typer.Option(
        False,
        "--stream",
        help="With -o -: write the header and each layer to standard output as soon as it is coded, "
        "so that a receiver (uqdm decode - --stream) shows the first steps while the rest is coded; "
        "the same bytes in the end. Not with --psnr, --bpp, --bytes, --psnr-index, --tail auto or an "
        "image tiled into regions.",
    ),
    force: bool = ForceOpt,
    skip_existing: bool = SkipOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compress images into progressive .uqd files (NAME.uqd).

    Lossless unless --psnr, --bpp, --bytes or --steps asks for a prefix.

    Several inputs run in --jobs worker processes; a file that fails is reported in one line and
    the others go on; a table sums up, and the exit code is 1 if any failed."""
    with _errors():  # the imports too: an interrupt while torch loads gets the same one line
        from . import ensemble, get_codec, randomness
        from .batch import quality_text
        from .image_io import atomic_write, check_output, load_image
        from .quality import Target

        mirrors = ensemble.check_mirrors(mirrors)
        seed = None if seed is None else randomness.check_seed(seed)  # one error, not one per file
        tail_mode = _tail_mode(tail, tail_after)
        max_bytes = _size(size)
        aim = Target(psnr=psnr, bpp=bpp, steps=steps, max_bytes=max_bytes)
        aim.check_psnr_index(psnr_index)
        if tail_after is not None:  # a bad step is one error, not one per file
            get_codec(model, device).check_tail_after(tail_after)
        if stream and (len(images) > 1 or not _is_stdio(output)):
            raise UqdmError(
                "--stream writes one file's layers to standard output as they are coded: give one "
                "input and -o - (a file is written whole, then renamed into place)"
            )
        if len(images) > 1:
            _batch(
                "encode",
                images,
                output,
                out_dir,
                jobs,
                quiet,
                model=model,
                device=device,
                seed=seed,
                mirrors=mirrors,
                fast=fast,
                tail=tail_mode,
                tail_after=tail_after,
                keep_icc=icc,
                keep_metadata=metadata,
                psnr=psnr,
                bpp=bpp,
                steps=steps,
                psnr_index=psnr_index,
                max_bytes=max_bytes,
                force=force,
                skip_existing=skip_existing,
            )
            return
        image = images[0]
        target = _single_target("encode", image, output, out_dir)
        if _left_alone(target, force, skip_existing):
            return
        to_stdout = _is_stdio(target)
        if to_stdout:
            _check_stdout("a .uqd file")
        else:
            check_output(target, force, _inputs(image))
        loaded = load_image(_read(image), "standard input") if _is_stdio(image) else load_image(image)
        from .codec import default_tail_note

        if note := default_tail_note(loaded.pixels, tail_mode):
            loaded.notes.append(note)
        if not quiet:
            for note in loaded.notes:
                err.print(f"note: {note}", highlight=False, soft_wrap=True)
        codec = get_codec(model, device)
        with _progress("encoding", quiet) as update, _streamed_so_far(stream):
            encoded = codec.encode_judged(
                loaded.pixels,
                seed=seed,
                progress=update,
                mirrors=mirrors,
                fast=fast,
                tail=tail_mode,
                tail_after=tail_after,
                target=aim,
                psnr_index=psnr_index,
                emit=_write_stdout if stream else None,
                **loaded.extras(icc, metadata),
            )
        data = encoded.data
        say = err if to_stdout else out  # standard output carries the file
        if stream:
            target = "standard output"
        elif to_stdout:
            _write_stdout(data)
            target = "standard output"
        else:
            atomic_write(target, data, force=force, inputs=_inputs(image))
        fi = files.info(data)
        if not quiet:
            title = f"{target}: {fi.header.width}x{fi.header.height}, model {fi.header.model_name}"
            say.print(_layer_table(fi, title, encoded))
        what = f"{len(data)} bytes, {files.bpp_of(len(data), fi.header):.3f} bpp"
        if aim.given:
            what += f", {quality_text(encoded.psnr)}"
            if not fi.complete and fi.in_next_step:
                what += f", step {len(fi.layers) + 1} in part"
        say.print(f"wrote {target} ({what})", highlight=False, soft_wrap=True)


@_command()
def decode(
    files_: list[Path] = typer.Argument(
        ..., metavar="FILES", help=".uqd files (complete or truncated); '-': standard input."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Output image of a single input, in the format its name says: .png, .webp and .tif "
        "keep every pixel, .jpg and .avif an approximation (quality 95) (default: next to the input, "
        "NAME.decoded.png, NAME.stepN.png, NAME.<bpp>bpp.png, NAME.<N>bytes.png or NAME.<psnr>dB.png; "
        "'-': standard output, a PNG or --format's).",
    ),
    image_format: str | None = typer.Option(
        None,
        "--format",
        metavar="EXT",
        help="Image format of the default names, of standard output and of an -o name without an "
        "image suffix (/dev/stdout), instead of PNG: webp (lossless, smaller than PNG), tif, jpg, ...",
    ),
    out_dir: Path | None = OutDirOpt,
    jobs: int = JobsOpt,
    steps: int | None = typer.Option(None, "--steps", "-s", help="Decode only the first N diffusion steps."),
    bpp: float | None = typer.Option(
        None,
        "--bpp",
        help="Decode the longest prefix within this many bits per pixel (what truncate --bpp would keep; "
        "no file is cut).",
    ),
    size: str | None = _bytes_opt(
        "Decode the longest prefix within SIZE bytes (what truncate --bytes would keep)."
    ),
    psnr: float | None = typer.Option(
        None,
        "--psnr",
        help="Decode the shortest prefix whose image reaches this PSNR in dB, by the file's PSNR "
        "index (encode --psnr-index; what truncate --psnr would keep).",
    ),
    recon: str = typer.Option(
        "mean",
        "--recon",
        help="Before the pixel step: 'mean' (the decoder's estimate, smooth) or 'sample' (draw the "
        "remaining steps from the model: sharp, plausible detail). The lossless result is exact either way.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="With --recon sample: which sample (default 0)."),
    model: str | None = ModelOpt,
    device: str = DeviceOpt,
    progression: Path | None = typer.Option(
        None,
        help="Write a strip of every level, labelled, with --recon sample a row of samples beneath (the "
        "decoded image too only with -o or --steps).",
    ),
    all_steps: Path | None = typer.Option(
        None,
        help="Write every level as its own PNG (or --format's) in this folder (the decoded image too only "
        "with -o or --steps).",
    ),
    chunks: bool = typer.Option(False, help="With --progression/--all-steps: include sub-step chunk levels."),
    stream: bool = typer.Option(
        False,
        "--stream",
        help="Decode the input while it arrives (a pipe, '-'): rewrite the output image each time the "
        "bytes so far decode to a better one, so that a viewer that reloads it shows the image build "
        "up; at the end it holds what decode gives for every byte that came. With --steps, --psnr, --bpp "
        "or --bytes it stops reading once what decode with that option uses is in.",
    ),
    force: bool = ForceOpt,
    skip_existing: bool = SkipOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Reconstruct images from .uqd files, whole or from a prefix.

    From their first N steps, a prefix within a bit budget or reaching a quality, or all of them.

    Several inputs run in --jobs worker processes, as for encode."""
    with _errors():  # the imports too, as in encode
        from . import container, get_codec, sampling
        from .codec import model_for_file
        from .image_io import check_output, image_bytes, output_format, save_image, writes_exactly

        given_seed, recon, seed = seed, sampling.check_recon(recon), sampling.check_seed(seed)
        if given_seed is not None and recon != "sample":  # was ignored without a word, as --chunks was
            raise UqdmError("--seed picks the sample of --recon sample; without it nothing is drawn")
        max_bytes = _size(size)
        batch.check_cut("decode", bpp, steps, psnr, max_bytes)
        suffix = _image_suffix(image_format, output)
        for option, path in (("--progression", progression), ("--all-steps", all_steps)):
            if path is not None and _is_stdio(path):  # was a file named '-'
                raise UqdmError(f"{option} writes files: name one (standard output takes the image, -o -)")
        if chunks and progression is None and all_steps is None:
            raise UqdmError("--chunks goes with --progression or --all-steps (the levels it adds are theirs)")
        if batch.check_skip(force, skip_existing) and (progression or all_steps or stream):
            raise UqdmError(
                "--skip-existing goes with decode's image, not with --progression, --all-steps or --stream"
            )
        if stream:
            given = {
                "--recon sample": recon == "sample",
                "--progression": progression is not None,
                "--all-steps": all_steps is not None,
            }
            refused = [name for name, on in given.items() if on]
            if refused:
                raise UqdmError(f"--stream does not take {', '.join(refused)}")
            stop = {"steps": steps, "psnr": psnr, "bpp": bpp, "max_bytes": max_bytes}
            _stream_decode(files_, output, out_dir, model, device, force, quiet, stop, suffix)
            return
        if len(files_) > 1:
            if progression or all_steps:
                path = str(progression or all_steps)  # '--progression -o x.png': '-o' is its path
                hint = f" ('{path}' was read as the option's path)" if path.startswith("-") else ""
                raise UqdmError(f"--progression and --all-steps take a single input, not {len(files_)}{hint}")
            _batch(
                "decode",
                files_,
                output,
                out_dir,
                jobs,
                quiet,
                model=model,
                device=device,
                steps=steps,
                bpp=bpp,
                recon=recon,
                seed=seed,
                psnr=psnr,
                max_bytes=max_bytes,
                image_format=suffix,
                force=force,
                skip_existing=skip_existing,
            )
            return
        file = files_[0]
        data = _read(file)
        damage: list[str] = []
        with _naming(file, every=True):
            header, _ = container.parse_header(data)
            data = files.budget_prefix(data, steps, bpp, psnr, max_bytes, damage)
        for w in damage:  # damaged after what is asked for: decoded, with a word
            err.print(f"warning: {w}", highlight=False, soft_wrap=True)
        cut = bpp is not None or psnr is not None or max_bytes is not None  # chosen here, not cut short
        levels_only = (progression or all_steps) and output is None and steps is None and not cut
        names = {
            "steps": steps,
            "bpp": bpp,
            "recon": recon,
            "seed": seed,
            "psnr": psnr,
            "max_bytes": max_bytes,
        }
        target = (
            None if levels_only else _single_target("decode", file, output, out_dir, suffix=suffix, **names)
        )
        if _left_alone(target, force, skip_existing):
            return
        to_stdout = _is_stdio(target)
        fmt = output_format(f"x{suffix}")  # --format's: standard output's, and a name's that says none
        if to_stdout:
            _check_stdout(f"a {fmt} image")
        if all_steps:
            batch.check_folder(all_steps, "--all-steps")
        for path, gray in ((None if to_stdout else target, header.gray), (progression, False)):
            if path is not None:
                output_format(path, fmt, gray)  # a format uqdm does not write: refused before decoding
                check_output(path, force, _inputs(file))
        codec = get_codec(model_for_file(header, model), device)
        if target is not None:
            with _progress("decoding", quiet) as update, _naming(file):
                result = codec.decode(data, steps, progress=update, recon=recon, seed=seed)
            for w in () if cut else result.warnings:  # with --bpp, --bytes or --psnr it is cut on purpose
                err.print(f"warning: {w}", highlight=False, soft_wrap=True)
            if to_stdout:
                blob, notes = image_bytes(result.pixels, fmt, **result.extras())
                _write_stdout(blob)
                target = "standard output"
            else:
                notes = save_image(
                    result.pixels, target, force=force, inputs=_inputs(file), unnamed=fmt, **result.extras()
                )
            for note in notes:
                err.print(f"note: {note}", highlight=False, soft_wrap=True)
        if progression or all_steps:
            with _naming(file):
                say = err if to_stdout else out  # standard output carries the image
                _write_levels(
                    codec, data, file, progression, all_steps, chunks, force, quiet, recon, seed, say, suffix
                )
        if target is not None:
            what = (
                _lossless_text(writes_exactly(f"x{suffix}" if to_stdout else target, fmt))
                if result.lossless
                else f"after {result.steps} of {header.coded_steps} steps"
                + ("" if result.part_of_step is None else f" and part of step {result.part_of_step}")
                + (", part of the lossless tail" if header.tail and result.layer == header.num_layers else "")
            )
            if cut:
                what += f", from the first {len(data)} bytes ({files.bpp_of(len(data), header):.4f} bpp)"
            reached = files.info(data).psnr_table.get(len(data)) if psnr is not None else None
            if reached is not None and not result.lossless:
                what += f", {batch.quality_text(reached)} by its PSNR index"
            if result.recon == "sample":
                what += f", remaining steps sampled (seed {seed})"
            elif recon == "sample" and not result.lossless:
                what += " (no Haar step left to sample: the mean image)"
            (err if to_stdout else out).print(f"wrote {target}: {what}", highlight=False, soft_wrap=True)


def _image_suffix(image_format: str | None, output: Path | None) -> str:
    """decode --format's suffix ('.png' without it); refused where -o's name says another format
    (a name that says none, such as /dev/stdout, takes --format's)."""
    from .image_io import format_suffix, output_format

    if image_format is None:
        return ".png"
    suffix = format_suffix(image_format)
    fmt = output_format(f"x{suffix}")
    if output is not None and not _is_stdio(output) and output_format(output, fmt) != fmt:
        raise UqdmError(f"--format {image_format} and -o {output} name different formats; give one of them")
    return suffix


def _lossless_text(exact: bool) -> str:
    """How a decode of the whole file is described: the exact original, unless the output format
    is lossy (its note says which)."""
    return "lossless (exact original)" if exact else "lossless, written in a lossy format (not exact)"


def _stream_source(path: Path):
    """What --stream reads: standard input, or a file opened (not read whole) for its pieces."""
    if _is_stdio(path):
        return _stdin()
    files.read_input_checks(path)
    try:
        return open(path, "rb")  # noqa: SIM115 - read piece by piece; closed by the caller
    except OSError as exc:
        raise UqdmError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _stream_decode(
    files_: list[Path], output, out_dir, model, device, force: bool, quiet: bool, stop: dict, suffix: str
) -> None:
    """decode --stream: the output file is rewritten (atomically, so it is always a whole image)
    each time the bytes received so far decode to a better image; with --steps, --psnr, --bpp or
    --bytes (`stop`, as decode_stream takes them), reading stops where decode with it stops."""
    from . import streaming
    from .image_io import check_output, output_format, save_image, writes_exactly
    from .progression import level_name

    if len(files_) > 1:
        raise UqdmError("--stream takes a single input")
    file = files_[0]
    if _is_stdio(file) and output is None:
        raise UqdmError("standard input has no name to name the output after: give -o FILE")
    target = _single_target("decode", file, output, out_dir, suffix=suffix, **stop)
    if _is_stdio(target):
        raise UqdmError("--stream rewrites its output file as images arrive: give -o FILE, not -o -")
    fmt = output_format(f"x{suffix}")  # --format's, for a name that says none
    output_format(target, fmt)  # a format uqdm does not write: refused before reading
    check_output(target, force, _inputs(file))
    source = _stream_source(file)
    shown, received = None, bytearray()

    def pieces():
        for piece in streaming.read_pieces(source):
            received.extend(piece)
            yield piece

    def quality(image) -> str:
        """`, 31.20 dB` where the file has a PSNR index (encode --psnr-index), else nothing."""
        reached = files.info(bytes(received[: image.nbytes])).psnr_table.get(image.nbytes)
        return "" if reached is None else f", {batch.quality_text(reached)}"

    try:
        with _naming(file, every=True):
            for image in streaming.decode_stream(pieces(), model, device, **stop):
                notes = save_image(
                    image.pixels, target, force=True, inputs=_inputs(file), unnamed=fmt, **image.extras()
                )
                h, w = image.pixels.shape[:2]
                if not quiet:
                    if shown is None:
                        for note in notes:  # the same for every image: once
                            err.print(f"note: {note}", highlight=False, soft_wrap=True)
                    out.print(
                        f"{level_name(image)}: {image.nbytes:,} bytes, {8 * image.nbytes / (h * w):.4f} bpp"
                        + quality(image),
                        highlight=False,
                        soft_wrap=True,
                    )
                shown = image
    except KeyboardInterrupt:
        if shown is None:
            raise
        _fail(f"interrupted; {target} holds the image of the first {shown.nbytes:,} bytes", 130)
    except UqdmError as exc:  # damaged bytes after good ones: say what the output shows
        if shown is None:
            raise
        raise type(exc)(f"{exc}; {target} holds the image of the first {shown.nbytes:,} bytes") from exc
    finally:
        if not _is_stdio(file):
            source.close()
    cut = any(stop[name] is not None for name in ("bpp", "max_bytes", "psnr"))  # cut on purpose
    for warning in [w for w in shown.warnings if w.startswith(files.DAMAGED)] if cut else shown.warnings:
        err.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    if shown.lossless:
        what = _lossless_text(writes_exactly(target, fmt))
    else:
        what = f"{level_name(shown)}, from the first {shown.nbytes:,} bytes"
        what += quality(shown)
        option = next((name for name, value in stop.items() if value is not None), None)
        if option is not None:
            flag = "bytes" if option == "max_bytes" else option
            what += f" (--{flag}: stopped reading after {len(received):,} bytes)"
        elif len(received) > shown.nbytes:
            extra = len(received) - shown.nbytes
            what += f" (the last {extra:,} of {len(received):,} end inside a chunk)"
    out.print(f"wrote {target}: {what}", highlight=False, soft_wrap=True)


def _write_levels(
    codec, data, file, strip_path, folder, chunks, force, quiet, recon, seed, say=out, suffix=".png"
) -> None:
    import numpy as np

    from . import progression as prog
    from .image_io import check_output, output_format, save_image

    with _progress("levels", quiet):
        levels = prog.decode_levels(codec, data, every_chunk=chunks, recon=recon, seed=seed)
    reference = levels[-1].pixels if levels[-1].lossless else None
    h, w = levels[0].pixels.shape[:2]
    keep = {"force": force, "inputs": _inputs(file), **levels[0].extras()}
    notes: list[str] = []
    if folder:
        written = []  # (pixels, path) of every level, each checked before the first is written
        for n, image in enumerate(levels):
            name = f"{n:03d}_{prog.level_name(image).replace(' ', '')}_{8 * image.nbytes / (h * w):.3f}bpp"
            written.append((prog.mean_image(image), folder / f"{name}{suffix}"))
            if image.recon == "sample":
                written.append((image.pixels, folder / f"{name}_sample{seed}{suffix}"))
        for _, path in written:  # an existing level ends it before any is written, not half-way
            check_output(path, force, _inputs(file))
        batch.make_folder(folder, "--all-steps")
        for n, (pixels, path) in enumerate(written):
            said = save_image(pixels, path, **keep)
            notes += [] if n else said  # every level's are the first's, but for its name
        say.print(f"wrote {len(levels)} levels to {folder}/", highlight=False, soft_wrap=True)
    if strip_path:
        sheet = prog.strip(levels, reference)
        fmt = output_format(f"x{suffix}")  # --format's, for a name that says none
        notes += save_image(np.asarray(sheet), strip_path, force=force, inputs=_inputs(file), unnamed=fmt)
        say.print(f"wrote {strip_path}: {len(levels)} levels", highlight=False, soft_wrap=True)
    for note in notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)


@_command()
def truncate(
    files_: list[Path] = typer.Argument(..., metavar="FILES", help=".uqd files; '-': standard input."),
    bpp: float | None = typer.Option(None, "--bpp", help="Bit budget in bits per pixel."),
    size: str | None = _bytes_opt("Keep the longest prefix within SIZE bytes."),
    steps: int | None = typer.Option(None, "--steps", "-s", help="Keep the first N diffusion steps."),
    psnr: float | None = typer.Option(
        None,
        "--psnr",
        help="Keep the shortest prefix whose image reaches this PSNR in dB (over R, G and B), by the "
        "file's PSNR index (encode --psnr-index): it ends on a chunk boundary.",
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Output .uqd of a single input (default: next to the input, NAME.<bpp>bpp.uqd, "
        "NAME.<N>bytes.uqd, NAME.<N>steps.uqd or NAME.<psnr>dB.uqd; '-': standard output).",
    ),
    out_dir: Path | None = OutDirOpt,
    jobs: int = JobsOpt,
    force: bool = ForceOpt,
    skip_existing: bool = SkipOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Cut .uqd files to a budget or a quality, without re-encoding.

    Keeps the longest decodable prefix within a budget (cuts bytes, never
    re-encodes; within 4 bytes of the budget where it ends inside a chunk, whose CRC is then
    rewritten to cover what is kept), or the shortest that reaches a quality (--psnr, files
    encoded with --psnr-index).

    Several inputs run in --jobs worker processes (no model is loaded), as for encode."""

    from .image_io import atomic_write

    with _errors():
        max_bytes = _size(size)
        batch.check_cut("truncate", bpp, steps, psnr, max_bytes)
        if len(files_) > 1:
            _batch(
                "truncate",
                files_,
                output,
                out_dir,
                jobs,
                quiet,
                bpp=bpp,
                steps=steps,
                psnr=psnr,
                max_bytes=max_bytes,
                force=force,
                skip_existing=skip_existing,
            )
            return
        file = files_[0]
        target = _single_target(
            "truncate", file, output, out_dir, bpp=bpp, steps=steps, psnr=psnr, max_bytes=max_bytes
        )
        if _left_alone(target, force, skip_existing):
            return
        to_stdout = _is_stdio(target)
        if to_stdout:
            _check_stdout("a .uqd file")
        data = _read(file)
        damage: list[str] = []
        with _naming(file, every=True):
            cut = files.truncate(data, bpp=bpp, steps=steps, psnr=psnr, max_bytes=max_bytes, notes=damage)
        for w in damage:
            err.print(f"warning: {w}", highlight=False, soft_wrap=True)
        if to_stdout:
            _write_stdout(cut)
            target = "standard output"
        else:
            atomic_write(target, cut, force=force, inputs=_inputs(file))
        fi = files.info(cut)
        reached = fi.psnr_table.get(len(cut))
        quality = "" if reached is None or fi.complete else f", {batch.quality_text(reached)}"
        held = min(fi.steps, fi.header.coded_steps)  # a tail is the lossless end, not a step
        end = (", lossless tail" if fi.header.tail else ", lossless layer") if fi.complete else ""
        if fi.in_next_step and not fi.complete:  # as decode says of the image such a file shows
            nxt = len(fi.layers) + 1
            lossless_end = "the lossless tail" if fi.header.tail else "the lossless layer"
            end = f" and part of {f'step {nxt}' if nxt <= fi.header.coded_steps else lossless_end}"
        (err if to_stdout else out).print(
            f"wrote {target}: {len(cut)} bytes, {files.bpp_of(len(cut), fi.header):.4f} bpp, "
            f"{held} steps{end}"
            f"{', ends inside a chunk' if fi.ends_in_cut_chunk else ''}{quality}",
            highlight=False,
            soft_wrap=True,
        )


@_command()
def info(
    files_: list[Path] = typer.Argument(
        ..., metavar="FILES", help=".uqd files; '-': standard input (as the only one)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the header and layers as JSON (layer end offsets and every chunk boundary, "
        "each the length of a prefix that is a valid file), for scripts; for several files a list.",
    ),
) -> None:
    """Show .uqd headers and layers (several files: a line each).

    Of several files, a file that cannot be read is reported in one line and the others go on;
    the exit code is then 1."""

    with _errors():
        if len(files_) > 1:
            _check_no_stdio(files_)
            _info_table(files_, as_json)
            return
        file = files_[0]
        with _naming(file):
            fi = files.info(_read(file))
        if as_json:
            print(json.dumps({"file": _label(file), **fi.to_dict()}, indent=1))
            return
        hd = fi.header
        out.print(
            f"{_label(file)}: {hd.width}x{hd.height} {hd.mode}, "
            + f"{hd.coded_steps} diffusion steps + lossless {'tail' if hd.tail else 'layer'}, "
            + f"model {hd.model_name} ({hd.fingerprint.hex()[:12]}), seed {hd.seed}"
            + (f", {fi.regions} regions of {hd.region[0]}x{hd.region[1]}" if hd.tiled else "")
            + (f", network averaged over {hd.mirrors} mirror images" if hd.mirrors > 1 else ""),
            highlight=False,
            soft_wrap=True,
        )
        out.print(_layer_table(fi, f"{fi.total_bytes} bytes, {len(fi.layers)} of {hd.num_layers} layers"))
        for w in fi.warnings:
            err.print(f"warning: {w}", highlight=False, soft_wrap=True)


def _info_table(paths: list[Path], as_json: bool) -> None:
    """`uqdm info` of several files: a row (or a JSON object) each, errors as they come."""
    read: list[tuple[Path, files.FileInfo | UqdmError]] = []
    for path in paths:
        try:
            with _naming(path):
                read.append((path, files.info(_read(path))))
        except UqdmError as exc:
            _error(str(exc))
            read.append((path, exc))
    failed = sum(isinstance(fi, UqdmError) for _, fi in read)
    if as_json:
        listed = [
            {"file": str(p), "error": str(fi)}
            if isinstance(fi, UqdmError)
            else {"file": str(p), **fi.to_dict()}
            for p, fi in read
        ]
        print(json.dumps(listed, indent=1))
    else:
        any_index = any(not isinstance(fi, UqdmError) and fi.psnr_table for _, fi in read)
        table = Table(title=f"{len(paths)} files, {failed} unreadable", title_justify="left")
        columns = ["file", "size", "bytes", "bpp", "ends", *(["PSNR"] if any_index else []), "model"]
        for col in columns:
            table.add_column(col, justify="left" if col in ("file", "ends", "model") else "right")
        for path, fi in read:
            if isinstance(fi, UqdmError):
                blank = [""] * (len(columns) - 5)
                table.add_row(str(path), "", "", "", Text("unreadable", style="red"), *blank)
                continue
            hd = fi.header
            ends = (
                "lossless"
                if fi.complete
                else f"in step {fi.steps + 1}"
                if fi.in_next_step
                else f"after step {fi.steps}"
            )
            table.add_row(
                str(path),
                f"{hd.width}x{hd.height}",
                str(fi.total_bytes),
                f"{files.bpp_of(fi.total_bytes, hd):.4f}",
                ends,
                *([_psnr_cell(fi.psnr_table.get(fi.total_bytes))] if any_index else []),
                hd.model_name,
            )
        _wide().print(table)
    if failed:
        raise typer.Exit(1)


@_command()
def bench(
    folder: Path = typer.Argument(..., help="Folder of images (e.g. the Kodak set)."),
    limit: int | None = typer.Option(None, help="Only the first N images."),
    crop: int | None = typer.Option(None, help="Centre-crop every image to at most SIZE x SIZE."),
    out_dir: Path = typer.Option(Path("bench_out"), "--out", help="Where results.json and rd.png go."),
    baselines: bool = typer.Option(
        True, help="Also run JPEG, JPEG 2000, WebP, AVIF, JPEG XL and their lossless modes, and PNG."
    ),
    mirrors: int = typer.Option(1, "--mirrors", help="uqdm's mirror ensemble (as for encode): 1, 2 or 4."),
    fast: bool = typer.Option(
        False, "--fast", help="uqdm's fast encoder (as for encode): the same figures, shorter encoding."
    ),
    tail: bool = typer.Option(
        False, "--tail", help="End every file with the lossless tail after step T-1 (as encode --tail on)."
    ),
    tail_after: int | None = typer.Option(
        None,
        "--tail-after",
        metavar="STEP",
        help="End every file with the tail after step STEP (as for encode).",
    ),
    model: str | None = ModelOpt,
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Rate-distortion and speed of uqdm against the usual codecs, in real file bytes."""
    with _errors():  # the imports too, as in encode
        from . import bench as benchmark
        from . import ensemble, get_codec

        if not folder.is_dir():
            raise UqdmError(f"{folder}: not a folder")
        batch.check_folder(out_dir, "--out")  # before the hour a benchmark may take, not after it
        codec = get_codec(model, device)
        codec.check_tail_after(tail_after)
        with _progress("benchmarking", quiet) as update:
            summary, results = benchmark.run(
                folder,
                codec,
                limit=limit,
                crop=crop,
                baselines=baselines,
                progress=(lambda done, total, name: update(done, total)) if update else None,
                mirrors=ensemble.check_mirrors(mirrors),
                fast=fast,
                tail=tail,
                tail_after=tail_after,
            )
        benchmark.save(summary, results, out_dir)
        for why in summary["skipped"]:
            err.print(f"warning: left out {why}", highlight=False, soft_wrap=True)
        names = list(summary["baselines"])
        table = Table(
            title=f"uqdm on {summary['images']} images of {folder} (mean bpp and PSNR per layer)",
            title_justify="left",
        )
        for col in ["layer", "bpp", "PSNR dB", *[f"vs {n}" for n in names], "decode s"]:
            table.add_column(col, justify="right", no_wrap=True)
        for row in summary["uqdm_layers"]:
            label = "lossless" if row["layer"] == len(summary["uqdm_layers"]) - 1 else str(row["layer"])
            deltas = [row.get(f"psnr_minus_{n}") for n in names]
            table.add_row(
                label,
                f"{row['bpp']:.4f}",
                f"{row['psnr']:.2f}",
                *["" if d is None else f"{d:+.2f}" for d in deltas],
                f"{row['decode_seconds']:.2f}",
            )
        _wide().print(table)
        for note in [] if quiet else summary["notes"]:
            err.print(f"note: {note}", highlight=False, soft_wrap=True)
        for name, value in summary["bd_rate_percent"].items():
            out.print(
                f"BD-rate vs {name}: " + ("n/a" if value is None else f"{value:+.1f} %"),
                highlight=False,
                soft_wrap=True,
            )
        if "lossless_bpp" in summary:
            others = ", ".join(f"{n} {v:.3f}" for n, v in summary["lossless_bpp"].items())
            out.print(
                f"lossless bpp: uqdm {summary['uqdm_lossless_bpp']:.3f} (exact: {summary['lossless_ok']}); "
                f"{others}",
                highlight=False,
                soft_wrap=True,
            )
        out.print(
            f"mean encode {summary['encode_seconds']:.2f} s, "
            f"full decode {summary['decode_seconds_full']:.2f} s",
            highlight=False,
            soft_wrap=True,
        )
        try:
            benchmark.plot(summary, out_dir / "rd.png", f"{folder.name}: PSNR vs bpp")
            out.print(
                f"wrote {out_dir / 'results.json'} and {out_dir / 'rd.png'}", highlight=False, soft_wrap=True
            )
        except ImportError:
            out.print(
                f"wrote {out_dir / 'results.json'} (install matplotlib for the plot)",
                highlight=False,
                soft_wrap=True,
            )


@_command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train a denoiser: uqdm train DATA_DIR --out RUN_DIR (see uqdm train --help)."""
    from . import train as training

    try:
        training.main(list(ctx.args) or ["--help"])
    except SystemExit as exc:  # the trainer's refusals are sentences: one error line like the others
        if isinstance(exc.code, str):
            _fail(exc.code)
        raise


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

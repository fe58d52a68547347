"""What can be done to a .uqd file without the model: list its layers, cut it to a budget.

Truncation removes bytes from the end: any prefix that ends on a chunk boundary is a valid .uqd
file (a layer boundary is also a chunk boundary), and so is a prefix that ends inside a chunk's
payload on a word boundary once that chunk's CRC is rewritten to cover the words kept (a *cut*
chunk, FORMAT.md 2.1). A smaller file is the longest such prefix within the budget: within 4
bytes of it, unless the budget ends in the framing before a chunk's first two words. No torch
here.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import colour_profile, container, photo_metadata
from .container import Header
from .errors import FormatError, UqdmError, is_real, is_whole, option, warn


@dataclass
class LayerInfo:
    index: int  # 1..T for steps, T+1 for the lossless layer
    lossless: bool
    bytes: int  # this layer's bytes, framing included
    end: int  # file size up to and including this layer
    bpp: float  # cumulative bits per pixel at `end`
    chunks: int
    filter_side: int = 0  # window side of the step's display filter (FORMAT.md 6.5), 0: none
    filtered_regions: int = 0  # regions whose layer carries one (1 or 0 for an untiled file)


@dataclass
class FileInfo:
    header: Header
    header_bytes: int
    total_bytes: int
    layers: list[LayerInfo]
    warnings: list[str] = field(default_factory=list)
    cut_points: list[int] = field(default_factory=list)  # chunk ends (truncate also cuts inside chunks)
    chunk_spans: list[tuple[int, int]] = field(default_factory=list)  # (CRC offset, end) of each chunk
    ends_in_cut_chunk: bool = False  # as `truncate` leaves most files (FORMAT.md 2.1)
    regions: int = 1  # independently coded regions (FORMAT.md 1.1)

    @property
    def complete(self) -> bool:
        return len(self.layers) == self.header.num_layers

    @property
    def steps(self) -> int:
        return min(len(self.layers), self.header.max_steps)

    @property
    def in_next_step(self) -> bool:
        """The file holds bytes after its last complete layer: it ends inside the next one."""
        return self.total_bytes > (self.layers[-1].end if self.layers else self.header_bytes)

    @property
    def chunk_boundaries(self) -> list[int]:
        """cut_points without the end of a cut chunk: the prefixes the encoder judged as they are,
        which a PSNR index lists (FORMAT.md 1.2)."""
        return self.cut_points[:-1] if self.ends_in_cut_chunk else list(self.cut_points)

    @property
    def psnr_table(self) -> dict[int, float]:
        """{chunk boundary: PSNR in dB of the image shown there (inf: exact)} from the header's PSNR
        index (FORMAT.md 1.2): the index's entries go with the file's chunk boundaries in order,
        the end of a cut chunk not among them; empty without an index."""
        return {end: psnr_of_entry(q) for end, q in self.psnr_entries.items()}

    @property
    def psnr_entries(self) -> dict[int, int]:
        """psnr_table with the index's own entries (hundredths of a dB, PSNR_EXACT for exact)."""
        return dict(zip(self.chunk_boundaries, self.header.psnr_index or ()))

    def to_dict(self) -> dict:
        """The file's description as plain JSON values, for `uqdm info --json` and for scripts
        that serve prefixes: every layer's end offset, and every chunk boundary (`cut_points`,
        each the length of a prefix that is itself a valid file)."""
        hd = self.header
        extras: dict = {}
        if hd.icc_profile is not None:
            extras["icc_profile"] = {
                "bytes": len(hd.icc_profile),
                "description": colour_profile.describe(hd.icc_profile),
            }
        if hd.alpha is not None:
            extras["alpha"] = True
        if hd.gray:
            extras["gray"] = True
        if hd.exif is not None:
            extras["exif"] = {"bytes": len(hd.exif), "description": photo_metadata.describe_exif(hd.exif)}
        if hd.xmp is not None:
            extras["xmp"] = {"bytes": len(hd.xmp)}
        table = self.psnr_table
        if hd.psnr_index is not None:
            extras["psnr_index"] = {"entries": len(hd.psnr_index)}
        return {
            "width": hd.width,
            "height": hd.height,
            "mode": hd.mode,
            "format_version": container.EXTENDED_VERSION
            if hd.extensions or hd.unknown_extensions
            else hd.version,
            "model": hd.model_name,
            "fingerprint": hd.fingerprint.hex(),
            "seed": hd.seed,
            "diffusion_steps": hd.coded_steps,
            "lossless_end": "tail" if hd.tail else "layer",
            "tail_follows_step": hd.coded_steps if hd.tail else None,
            "regions": self.regions,
            "mirrors": hd.mirrors,
            "header": {"bytes": self.header_bytes, **extras},
            "layers": [
                {
                    "index": layer.index,
                    "content": "lossless" if layer.lossless else "step",
                    "bytes": layer.bytes,
                    "end": layer.end,
                    "bpp": layer.bpp,
                    "chunks": layer.chunks,
                    **({"psnr": _json_psnr(table[layer.end])} if layer.end in table else {}),
                }
                for layer in self.layers
            ],
            "total_bytes": self.total_bytes,
            "complete": self.complete,
            "ends_in_cut_chunk": self.ends_in_cut_chunk,
            "cut_points": list(self.cut_points),
            **({"cut_psnr": [_json_psnr(table.get(c)) for c in self.cut_points]} if table else {}),
            "warnings": list(self.warnings),
        }


def _json_psnr(value: float | None) -> float | str | None:
    """A PSNR as JSON holds it: dB to the index's hundredths, "exact" for an exact image."""
    return None if value is None else "exact" if value == math.inf else round(value, 2)


def psnr_of_entry(entry: int) -> float:
    """The PSNR (dB) a PSNR index entry promises: the image's is at least this (inf: exact)."""
    return math.inf if entry >= container.PSNR_EXACT else entry / container.PSNR_PER_DB


def bpp_of(nbytes: int, header: Header) -> float:
    return 8.0 * nbytes / (header.width * header.height)


def budget_bytes(bpp: float, width: int, height: int) -> int:
    """The bytes a budget of `bpp` bits per pixel allows: a budget equal to a printed size's bpp
    keeps that size (bpp * pixels / 8 may land a hair below the integer it came from). In double
    precision whatever `bpp`'s type: a NumPy float32 computes in float32 and may round past it."""
    return math.floor(float(bpp) * width * height / 8.0 * (1.0 + 1e-12))


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6, "mib": 1 << 20}


def parse_size(text: str | int) -> int:
    """A byte budget as a user writes it: 20000, 20k or 20kB (1000 bytes each), 20KiB (1024), 1.5M
    or 1.5MB (10**6), 2MiB; rounded down to whole bytes. For `--bytes`: sizes people send files in."""
    if is_whole(text):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise UqdmError(f"{text!r} is not a size in bytes (e.g. 20000, 20k, 20kB, 20KiB, 1.5M)")
        value, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(value * _SIZE_UNITS[unit]):
        raise UqdmError(f"{text!r}: too large a size in bytes")
    size = math.floor(value * _SIZE_UNITS[unit])
    if size < 0:
        raise UqdmError("a size in bytes must not be negative")
    return size


def check_bpp(bpp: float) -> None:
    if not is_real(bpp) or not 0 <= bpp < math.inf:  # NaN too
        raise UqdmError(f"bpp must be a non-negative number, not {bpp!r}")


def check_max_bytes(max_bytes: int) -> int:
    if not is_whole(max_bytes) or max_bytes < 0:
        raise UqdmError(f"max_bytes must be a non-negative whole number of bytes, not {max_bytes!r}")
    return int(max_bytes)


def read_input_checks(path: Path) -> None:
    """The one-line errors for an input that cannot be read at all (missing, a folder)."""
    if not path.exists():
        raise UqdmError(f"{path}: no such file")
    if path.is_dir():
        raise UqdmError(f"{path}: is a folder, not a .uqd file (give the files in it: {path / '*.uqd'})")


def read_input(path: Path) -> bytes:
    """A file's bytes, with one-line errors for the usual ways that fails."""
    read_input_checks(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UqdmError(f"{path}: cannot read ({exc.strerror or exc})") from None


def uqd_bytes(data: object) -> bytes:
    """The bytes of a .uqd file given as bytes, bytearray, memoryview, a path (str or PathLike) or a
    binary file object (read to its end), as the public functions take it; one-line errors for
    anything else."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        return read_input(Path(data))
    if callable(getattr(data, "read", None)):
        return read_stream(data, "a .uqd file")
    raise UqdmError(f"a .uqd file is bytes, a path or a binary file object, not {type(data).__name__}")


def read_stream(stream: object, what: str, error: type[UqdmError] = UqdmError) -> bytes:
    """All the bytes a binary file object (an open file, BytesIO, a socket's file) still holds;
    one-line `error`s for a text-mode file and for a read that fails."""
    try:
        data = stream.read()  # type: ignore[attr-defined]
    except (OSError, ValueError) as exc:  # ValueError: a closed file
        raise error(f"{what}: cannot read the file object ({exc})") from None
    if isinstance(data, str):
        raise error(f"{what}: the file object is in text mode; open it with 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise error(f"{what}: the file object's read() gave {type(data).__name__}, not bytes")
    return bytes(data)


def info(data: bytes | str | os.PathLike | BinaryIO) -> FileInfo:
    """What a .uqd file (bytes, a path or a binary file object) holds: header, layers, warnings;
    never decodes. Damage is a FormatError that says what the bytes before it hold."""
    data = uqd_bytes(data)
    try:
        return _checked_info(data)
    except FormatError as exc:
        if exc.intact is None:
            raise
        _before_damage(data, exc, None)  # raises, saying what the bytes before the damage hold
        raise  # (never reached: nothing was asked that the bytes before it could give)


def _checked_info(data: bytes) -> FileInfo:
    head = container.parse_header(data)  # once: a header's extensions are inflated when read
    fi = _tiled_info(data, head) if head[0].tiled else _plain_info(data, head)
    if fi.header.unknown_extensions:
        fi.warnings.insert(0, container.unknown_extensions_note(fi.header.unknown_extensions))
    return fi


def _plain_info(data: bytes, head: tuple[Header, int] | None = None) -> FileInfo:
    parsed = container.parse(data, head)
    hd = parsed.header
    layers, prev = [], parsed.header_size
    for layer, end in zip(parsed.layers, parsed.layer_offsets):
        layers.append(
            LayerInfo(
                layer.index,
                layer.kind in (container.KIND_LOSSLESS, container.KIND_TAIL),
                end - prev,
                end,
                bpp_of(end, hd),
                len(layer.chunks),
                2 * layer.display_filter.radius + 1 if layer.display_filter else 0,
                int(layer.display_filter is not None),
            )
        )
        prev = end
    cuts = [parsed.header_size] + [end for ends in parsed.chunk_offsets for end in ends]
    chunks = [c for layer in [*parsed.layers, parsed.partial] if layer is not None for c in layer.chunks]
    spans = [(end - container.CHUNK_CRC_BYTES - len(c.payload), end) for c, end in zip(chunks, cuts[1:])]
    cut = bool(chunks) and chunks[-1].cut
    return FileInfo(hd, parsed.header_size, len(data), layers, list(parsed.warnings), cuts, spans, cut)


def _tiled_info(data: bytes, head: tuple[Header, int]) -> FileInfo:
    """info() of a tiled file: its regions' layers and chunks, at their places in the file."""
    hd, header_size, parts = container.split_tiled(data, head)
    infos = []
    for r, part in enumerate(parts):
        try:
            infos.append(_plain_info(part.data))
        except FormatError as exc:  # where the damage lies in the file, not in the region's bytes
            x0, y0, *_ = hd.regions()[r]
            at = None if exc.intact is None else part.file_offset(exc.intact)
            raise FormatError(f"region {r + 1} (at {x0},{y0}): {exc}", intact=at) from None
    layers = []
    for i in range(min(len(f.layers) for f in infos)):
        last = parts[-1].file_offset(infos[-1].layers[i].end)
        layers.append(
            LayerInfo(
                i + 1,
                infos[0].layers[i].lossless,
                0,  # set below: the file's bytes between this layer's end and the last one's
                last,
                bpp_of(last, hd),
                sum(f.layers[i].chunks for f in infos),
                max(f.layers[i].filter_side for f in infos),
                sum(f.layers[i].filtered_regions for f in infos),
            )
        )
    for prev, layer in zip([header_size, *[la.end for la in layers]], layers):
        layer.bytes = layer.end - prev
    cuts, spans, warnings = {header_size}, [], []
    for r, (part, f) in enumerate(zip(parts, infos)):
        cuts.update(part.file_offset(c) for c in f.cut_points[1:])
        spans += [(part.file_offset(a), part.file_offset(b)) for a, b in f.chunk_spans]
        x0, y0, *_ = hd.regions()[r]
        warnings += [f"region {r + 1} (at {x0},{y0}): {w}" for w in f.warnings]
    cut = any(f.ends_in_cut_chunk for f in infos)
    cuts, spans = sorted(cuts), sorted(spans)
    return FileInfo(hd, header_size, len(data), layers, warnings, cuts, spans, cut, len(parts))


def cut_options() -> str:
    """The options that choose a prefix, as messages name them (errors.option)."""
    return option("--bpp, --bytes, --psnr or --steps", "bpp, max_bytes, psnr or steps")


def budget_prefix(
    data: bytes,
    steps: int | None,
    bpp: float | None,
    psnr: float | None = None,
    max_bytes: int | None = None,
    notes: list[str] | None = None,
) -> bytes:
    """What a decode with these options reads: the whole file, or with `bpp`, `max_bytes` or
    `psnr` the prefix `truncate` would keep (a decode gives at most one of --steps, --bpp, --bytes
    and --psnr). A file damaged after what they ask for gives the bytes before the damage, and a
    line on it in `notes`; damage inside it is a FormatError that says what the bytes before it
    still hold."""
    if sum(v is not None for v in (steps, bpp, psnr, max_bytes)) > 1:
        raise UqdmError(f"give at most one of {cut_options()}")
    data = bytes(data)
    if bpp is not None or psnr is not None or max_bytes is not None:
        return truncate(data, bpp=bpp, psnr=psnr, max_bytes=max_bytes, notes=notes)
    if steps is None:
        info(data)  # every checksum: damage is an error here, not half-way through a decode
        return data
    try:
        _checked_info(data)
    except FormatError as exc:  # decode takes its steps from the whole file, unless it is damaged
        if exc.intact is None:
            raise
        return truncate(data, steps=steps, notes=notes)
    return data


DAMAGED = "damaged file: "  # how the line on damage after what was asked for begins


def _before_damage(data: bytes, exc: FormatError, notes: list[str] | None, **asked) -> bytes:
    """The bytes before the first damage of a file (`exc`: some damage found in it) when what is
    `asked` (steps, bpp, psnr or max_bytes as truncate takes them; none: the whole file) lies in
    them, with a line in `notes`; else the FormatError of that damage, saying what they hold."""
    intact, first = exc.intact, exc
    while True:  # a tiled file's regions are checked in turn, not in file order: the earliest
        try:
            head = _checked_info(data[:intact])
            break
        except FormatError as again:
            if again.intact is None or again.intact >= intact:
                raise
            intact, first = again.intact, again
    held = head.steps
    steps, psnr = asked.get("steps"), asked.get("psnr")
    budget = asked.get("max_bytes")
    if asked.get("bpp") is not None:
        check_bpp(asked["bpp"])
        budget = budget_bytes(asked["bpp"], head.header.width, head.header.height)
    if steps is not None:
        head.header.check_steps(steps)
        fits = steps <= held
    elif psnr is not None:
        try:
            fits = psnr_end(head, psnr) <= intact
        except UqdmError:
            fits = False
    else:
        fits = budget is not None and check_max_bytes(budget) <= intact
    if not fits:
        what = f"{held} complete steps" if held != 1 else "1 complete step"
        if head.complete:  # bytes after the end of a whole file (refused: FORMAT.md 2)
            what = "a whole file"
        raise FormatError(
            f"{first}; the {intact:,} bytes before it are intact ({what}): "
            + option(
                f"decode --bytes {intact} shows them, truncate --bytes {intact} keeps them",
                f"decode(data, max_bytes={intact}) shows them, truncate(data, max_bytes={intact}) keeps them",
            ),
            intact=intact,
        )
    if notes is not None:
        notes.append(f"{DAMAGED}{first}; only the {intact:,} intact bytes before it were read")
    return data[:intact]


def check_psnr(psnr: float, hint: str = "") -> None:
    if not (is_real(psnr) and 0 < psnr < math.inf):
        raise UqdmError(f"psnr must be a positive number of dB{hint}")


def psnr_end(fi: FileInfo, psnr: float) -> int:
    """The shortest prefix of the file whose image its PSNR index says reaches `psnr` dB: a chunk
    boundary. UqdmError where the file has no index or no boundary it holds reaches the target."""
    check_psnr(psnr)
    if fi.header.psnr_index is None:
        raise UqdmError(
            "the file has no PSNR index ("
            + option(
                "encode it with --psnr-index to cut it to a quality later, or encode --psnr from the "
                "original",
                "encode it with psnr_index=True to cut it to a quality later, or encode with psnr= from "
                "the original",
            )
            + ")"
        )
    need = psnr_entry_needed(psnr)
    entries = fi.psnr_entries
    reached = [end for end, entry in entries.items() if entry >= need]
    if reached:
        return min(reached)
    end, best = max(entries.items()) if entries else (fi.header_bytes, 0)
    raise UqdmError(
        f"no prefix of the file is known to reach {psnr:g} dB: its best is "
        f"{psnr_of_entry(best):.2f} dB, at {end} bytes"
        + ("" if fi.complete else " (the file is itself a prefix)")
    )


def psnr_entry_needed(psnr: float) -> int:
    """The smallest PSNR index entry that promises `psnr` dB (entries are rounded down, so an
    entry at least this is a promise; an exact image reaches every target)."""
    return min(math.ceil(float(psnr) * container.PSNR_PER_DB - 1e-9), container.PSNR_EXACT)


def truncate(
    data: bytes | str | os.PathLike | BinaryIO,
    *,
    bpp: float | None = None,
    steps: int | None = None,
    max_bytes: int | None = None,
    psnr: float | None = None,
    notes: list[str] | None = None,
) -> bytes:
    """The longest decodable prefix within the budget, `bpp` (bits per pixel of the whole file) or
    `max_bytes`, its last chunk cut on a word boundary if the budget ends inside one (its CRC then
    rewritten); exactly the first `steps` diffusion steps; or the shortest prefix whose image
    reaches `psnr` dB by the file's PSNR index (a chunk boundary; FORMAT.md 1.2). Never re-encodes.
    A file damaged after that prefix still gives it, with a line in `notes` (not given: a
    UqdmWarning)."""
    if sum(v is not None for v in (bpp, steps, max_bytes, psnr)) != 1:
        raise UqdmError("give exactly one of bpp, steps, max_bytes or psnr")
    data = uqd_bytes(data)
    try:
        fi = _checked_info(data)
    except FormatError as exc:  # damage: what was asked for may lie before it
        if exc.intact is None:
            raise
        said: list[str] = [] if notes is None else notes
        head = _before_damage(data, exc, said, bpp=bpp, steps=steps, max_bytes=max_bytes, psnr=psnr)
        if notes is None:  # a library call: the damage is a warning, not silence
            warn(said)
        return truncate(head, bpp=bpp, steps=steps, max_bytes=max_bytes, psnr=psnr)
    hd = fi.header
    if psnr is not None:
        return bytes(data[: psnr_end(fi, psnr)])
    if steps is not None:
        hd.check_steps_held(steps, fi.steps, "keep")
        end = fi.layers[steps - 1].end if steps else fi.header_bytes
        return bytes(data[:end])
    if bpp is not None:
        check_bpp(bpp)
        max_bytes = budget_bytes(bpp, hd.width, hd.height)
    max_bytes = check_max_bytes(max_bytes)
    if max_bytes < fi.header_bytes:
        raise UqdmError(
            f"budget of {max_bytes} bytes ({bpp_of(max_bytes, hd):.4f} bpp) is smaller than the "
            f"file header ({fi.header_bytes} bytes)"
        )
    end = max(c for c in fi.cut_points if c <= max_bytes)
    for start, chunk_end in fi.chunk_spans:  # the chunk the budget ends in, if any: cut it
        if start < max_bytes < chunk_end:
            cut = container.cut_end(start, max_bytes)
            if cut is not None:
                return container.cut_chunk_bytes(data, start, cut)
            break
    return bytes(data[:end])

"""Entropy models and coding of UQDM symbols with constriction (numpy only, no torch).

Step symbols. For an element with prior location `loc`, logistic scale `scale` (data units), dither
`u`, quantiser step `q` and bound `B` (|x| <= B: 1 for pixels, 2^l for Haar level l), the encoder
sends k = rint((x - loc) / q + u) and the decoder recovers x_tilde = loc + (k - u) * q. The exact
probability of k is the mass of the prior, truncated to [-B, B] (or to the narrower interval the
value is known to lie in, from earlier steps: FORMAT.md 5.5), over k's bin
[loc + (k - u - 1/2) q, loc + (k - u + 1/2) q]: the density of (prior * uniform) at x_tilde times q,
i.e. the UQDM prior p(z_s | z_t) of the paper, evaluated where the step's sample landed.

Each element codes a window of 2W+1 values of k around 0 plus an escape symbol; W is chosen from
scale / q so the escape is rare, and an escaped k is then coded exactly over its feasible range.

Lossless layer. Given x_tilde of the last step, the true pixel level is one of the few levels whose
centre lies within q/2 of x_tilde; it is coded among those with probabilities proportional to the
last prior's mass over each level's bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

from . import portable
from .errors import FormatError

SLICE = 1 << 18  # elements coded per table batch; part of the format (docs/FORMAT.md)
TAIL_SCALES = 8.0  # window half-width in prior scales: escape mass below 2 exp(-8) ~ 7e-4
WINDOW_SIZES = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256], np.int64)
PROB_FLOOR = 1e-12
TABLE_BATCH = 1 << 13  # the encoder makes the window tables of consecutive smaller groups together
LN2 = math.log(2.0)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return portable.sigmoid(t)


def pixels_to_data(levels: np.ndarray) -> np.ndarray:
    """8-bit levels -> bin centres in data units (exact in float64)."""
    return (2.0 * levels.astype(np.float64) + 1.0) / 256.0 - 1.0


def data_to_pixels(x: np.ndarray) -> np.ndarray:
    """Data units -> nearest 8-bit level (the decoder's display rounding)."""
    return np.clip(np.rint((x + 1.0) * 128.0 - 0.5), 0, 255).astype(np.uint8)


@dataclass
class StepPrior:
    """Everything both sides know about one step's elements, as flat float64 arrays."""

    loc: np.ndarray
    scale: np.ndarray
    dither: np.ndarray
    quant_step: np.ndarray
    bound: np.ndarray
    # the interval the value is known to lie in (FORMAT.md 5.5), inside [-bound, bound]; None: the
    # band's whole range [-bound, bound]
    lower_known: np.ndarray | None = None
    upper_known: np.ndarray | None = None

    def __len__(self) -> int:
        return self.loc.size

    @property
    def lower(self) -> np.ndarray:
        """Where the prior is truncated below: -bound, or the known interval's lower end."""
        return -self.bound if self.lower_known is None else self.lower_known

    @property
    def upper(self) -> np.ndarray:
        return self.bound if self.upper_known is None else self.upper_known

    def part(self, sl: slice | np.ndarray) -> StepPrior:
        known = self.lower_known is not None
        return StepPrior(
            self.loc[sl],
            self.scale[sl],
            self.dither[sl],
            self.quant_step[sl],
            self.bound[sl],
            self.lower_known[sl] if known else None,
            self.upper_known[sl] if known else None,
        )


@dataclass
class CodedPrior:
    """A StepPrior whose quantiser steps and bounds take a few values (they depend on a
    coefficient's state and band only), kept as small integer codes into tables, and whose known
    intervals are float32 (exact: the chain keeps them so): 34 bytes per element instead of 56.
    part() gives a plain StepPrior with the same values; quant_step, bound, lower and upper build
    whole float64 arrays for callers that want them."""

    loc: np.ndarray
    scale: np.ndarray
    dither: np.ndarray
    q_code: np.ndarray  # uint8, index into q_table
    q_table: np.ndarray
    bound_code: np.ndarray  # int8 / uint8, index into bound_table
    bound_table: np.ndarray
    lower_known: np.ndarray | None = None  # float32 known intervals (StepPrior's), or None
    upper_known: np.ndarray | None = None

    def __len__(self) -> int:
        return self.loc.size

    @property
    def quant_step(self) -> np.ndarray:
        return self.q_table[self.q_code]

    @property
    def bound(self) -> np.ndarray:
        return self.bound_table[self.bound_code]

    @property
    def lower(self) -> np.ndarray:
        return -self.bound if self.lower_known is None else self.lower_known.astype(np.float64)

    @property
    def upper(self) -> np.ndarray:
        return self.bound if self.upper_known is None else self.upper_known.astype(np.float64)

    def part(self, sl: slice | np.ndarray) -> StepPrior:
        return StepPrior(
            self.loc[sl],
            self.scale[sl],
            self.dither[sl],
            self.q_table[self.q_code[sl]],
            self.bound_table[self.bound_code[sl]],
            None if self.lower_known is None else self.lower_known[sl].astype(np.float64),
            None if self.upper_known is None else self.upper_known[sl].astype(np.float64),
        )


def slices(n: int, size: int = SLICE) -> list[slice]:
    """Consecutive slices of `size` covering range(n): elementwise passes over a whole step made
    piece by piece (same values, bounded temporaries)."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


# ----------------------------------------------------------------------------- step symbols


def quantise(x: np.ndarray, prior: StepPrior | CodedPrior) -> np.ndarray:
    """The encoder's symbols k = rint((x - loc) / q + u)."""
    k = np.empty(len(prior), np.int64)
    for sl in slices(len(prior)):
        p = prior.part(sl)
        k[sl] = np.rint((x[sl] - p.loc) / p.quant_step + p.dither)
    return k


def reconstruct(k: np.ndarray, prior: StepPrior | CodedPrior) -> np.ndarray:
    """x_tilde = loc + (k - u) q: what both sides know after the step."""
    out = np.empty(len(prior))
    for sl in slices(len(prior)):
        p = prior.part(sl)
        out[sl] = p.loc + (k[sl] - p.dither) * p.quant_step
    return out


def window_half_width(prior: StepPrior) -> np.ndarray:
    need = np.ceil(np.minimum(TAIL_SCALES * prior.scale / prior.quant_step, 1e6)) + 1.0
    idx = np.searchsorted(WINDOW_SIZES, np.minimum(need, WINDOW_SIZES[-1]))
    return WINDOW_SIZES[idx]


def feasible_range(prior: StepPrior) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest k whose bin meets [lower, upper]."""
    q = prior.quant_step
    k_lo = np.floor((prior.lower - prior.loc) / q + prior.dither - 0.5).astype(np.int64) + 1
    k_hi = np.ceil((prior.upper - prior.loc) / q + prior.dither + 0.5).astype(np.int64) - 1
    return k_lo, k_hi


class _Sigmoids:
    """Sigmoid arguments collected from several tables and evaluated in one portable.sigmoid call:
    elementwise, so each value is what a call of its own would give, for the numpy overhead of one
    call (a raster tail's wavefront groups have several small buckets each)."""

    def __init__(self) -> None:
        self.args: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def add(self, t: np.ndarray) -> int:
        self.args.append(np.asarray(t, dtype=np.float64))
        return len(self.args) - 1

    def run(self) -> None:
        if len(self.args) <= 1:  # none (no bucket: an empty group) or one
            self.values = [_sigmoid(a) for a in self.args]
            return
        flat = _sigmoid(np.concatenate([a.reshape(-1) for a in self.args]))
        ends = np.cumsum([a.size for a in self.args])
        self.values = [v.reshape(a.shape) for v, a in zip(np.split(flat, ends[:-1]), self.args)]

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[i]


def _edge_cdf_parts(prior: StepPrior, edges: np.ndarray, sig: _Sigmoids):
    """_edge_cdf with its sigmoids left to `sig`: returns what makes the CDF once sig has run."""
    inv = 1.0 / prior.scale[:, None]
    a = (prior.lower - prior.loc)[:, None] * inv
    b = (prior.upper - prior.loc)[:, None] * inv
    t = np.clip((edges - prior.dither[:, None]) * (prior.quant_step[:, None] * inv), a, b)
    right = a > 0
    if prior.lower_known is None or not right.any():
        i = sig.add(t)
        return lambda: sig[i]
    i, j = sig.add(-t), sig.add(t)
    return lambda: np.where(right, -sig[i], sig[j])


def _edge_cdf(prior: StepPrior, edges: np.ndarray) -> np.ndarray:
    """Truncated prior CDF (unnormalised, up to a constant per element) at bin edges
    loc + (e - u) q, for edge offsets `edges` (broadcast against (m, 1)); clipping to
    [lower, upper] is what truncates the prior. Where the interval lies right of the location
    (a > 0) the CDF is taken as -sigmoid(-t), i.e. minus the upper tail, so that the differences
    keep their precision far in the tail (with known intervals only: version 7 files did not)."""
    sig = _Sigmoids()
    cdf = _edge_cdf_parts(prior, edges, sig)
    sig.run()
    return cdf()


def _bin_masses(prior: StepPrior, ks: np.ndarray) -> np.ndarray:
    """Unnormalised truncated prior mass of symbol values `ks` (shape (n, m)) per element."""
    return np.maximum(_edge_cdf(prior, ks + 0.5) - _edge_cdf(prior, ks - 0.5), 0.0)


def _normaliser_parts(prior: StepPrior, sig: _Sigmoids):
    """_normaliser with its sigmoids left to `sig`."""
    inv = 1.0 / prior.scale
    a, b = (prior.lower - prior.loc) * inv, (prior.upper - prior.loc) * inv
    right = a > 0
    if prior.lower_known is None or not right.any():
        i, j = sig.add(b), sig.add(a)
        return lambda: sig[i] - sig[j]
    i, j, m, n = sig.add(-a), sig.add(-b), sig.add(b), sig.add(a)
    return lambda: np.where(right, sig[i] - sig[j], sig[m] - sig[n])


def _normaliser(prior: StepPrior) -> np.ndarray:
    sig = _Sigmoids()
    norm = _normaliser_parts(prior, sig)
    sig.run()
    return norm()


def step_element_bits(k: np.ndarray, prior: StepPrior) -> np.ndarray:
    """-log2 P(k) of every element under the exact model (ideal code lengths). Where the data
    range lies so far in the prior's tail that its mass is 0 in float64 (a confident location
    beyond a known interval's end), the coder's tables are all floor, i.e. uniform: so is this."""
    out = np.empty(len(prior))
    for start in range(0, len(prior), SLICE):
        sl = slice(start, start + SLICE)
        p = prior.part(sl)
        norm = _normaliser(p)
        inside = norm > 0
        mass = _bin_masses(p, k[sl][:, None].astype(np.float64))[:, 0] / np.where(inside, norm, 1.0)
        if not inside.all():
            k_lo, k_hi = feasible_range(p)
            mass = np.where(inside, mass, 1.0 / np.maximum(k_hi - k_lo + 1, 1))
        out[sl] = -np.log2(np.maximum(mass, 1e-300))
    return out


def step_ideal_bits(k: np.ndarray, prior: StepPrior) -> float:
    """sum of -log2 P(k): the ideal code length under the exact model (for measurements)."""
    return float(step_element_bits(k, prior).sum())


def _window_table_parts(prior: StepPrior, half: int, sig: _Sigmoids):
    """_window_tables with its sigmoids left to `sig`."""
    edges = np.arange(-half, half + 2, dtype=np.float64)[None, :] - 0.5
    cdf_of, norm_of = _edge_cdf_parts(prior, edges, sig), _normaliser_parts(prior, sig)

    def table() -> np.ndarray:
        cdf = cdf_of()
        masses = np.maximum(np.diff(cdf, axis=1), 0.0)
        escape = np.maximum(norm_of() - (cdf[:, -1] - cdf[:, 0]), 0.0)
        return np.maximum(np.concatenate([masses, escape[:, None]], axis=1), PROB_FLOOR)

    return table


def _window_tables(prior: StepPrior, half: int) -> np.ndarray:
    """Rows [P(k=-W..W) ..., P(escape)] for elements sharing half-width W."""
    return _window_tables_many(prior, [(half, slice(None))])[0]


def _window_tables_many(prior: StepPrior, buckets) -> list[np.ndarray]:
    """_window_tables of each bucket (W, positions) of a prior, the same numbers from one sigmoid
    call for them all."""
    sig = _Sigmoids()
    tables = [_window_table_parts(prior.part(idx), int(w), sig) for w, idx in buckets]
    sig.run()
    return [table() for table in tables]


def _escape_tables(prior: StepPrior, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows over each escaped element's feasible range outside its window; returns (tables, k_lo)."""
    k_lo, k_hi = feasible_range(prior)
    width = int((k_hi - k_lo).max()) + 1
    ks = k_lo[:, None] + np.arange(width)[None, :]
    masses = _bin_masses(prior, ks.astype(np.float64))
    outside = (np.abs(ks) > half[:, None]) & (ks <= k_hi[:, None])
    tables = np.where(outside, np.maximum(masses, PROB_FLOOR), 0.0)
    return tables, k_lo


def _plan(prior: StepPrior | CodedPrior, sl: slice):
    """(slice, its prior, half-widths, buckets) of one slice of a step."""
    part = prior.part(sl)
    half = window_half_width(part)
    # widest window first: a cut chunk (FORMAT.md 2.1) then holds the most uncertain elements
    buckets = [(int(w), np.flatnonzero(half == w)) for w in np.unique(half)[::-1]]
    return sl, part, half, buckets


def _slice_plan(prior: StepPrior | CodedPrior):
    """Yield (slice, its prior, half-widths, bucket order) for each slice of the step, in decode
    order, each made when needed."""
    for sl in slices(len(prior)):
        yield _plan(prior, sl)


def encode_step(
    k: np.ndarray, prior: StepPrior | CodedPrior, groups: list[np.ndarray] | None = None
) -> bytes:
    """ANS-code the symbols of one chunk of a step. With `groups` (positions in k), the groups are
    decoded one after the other (the colour groups of FORMAT.md 6.3), each sliced as a chunk of
    its own; everything is pushed in reverse of the decoding order."""
    coder = constriction.stream.stack.AnsCoder()
    if groups is None:
        _push_group(coder, k, prior)
        return _payload(coder)
    pending: list[np.ndarray] = []  # small groups, in push order, whose tables are made together
    for g in reversed(groups):
        if g.size >= TABLE_BATCH:
            _push_small_groups(coder, k, prior, pending)
            pending = []
            _push_group(coder, k[g], prior.part(g))
            continue
        if sum(p.size for p in pending) + g.size > TABLE_BATCH:
            _push_small_groups(coder, k, prior, pending)
            pending = []
        pending.append(g)
    _push_small_groups(coder, k, prior, pending)
    return _payload(coder)


def _push_small_groups(coder, k: np.ndarray, prior: StepPrior | CodedPrior, groups: list[np.ndarray]) -> None:
    """Push small groups (each one slice) in the order given, their window tables made for all of
    them at once: a table row depends on its element's prior alone, so these are the numbers that
    one call per group and bucket would give, for a fraction of the calls (a raster tail's groups
    are wavefronts of a few hundred pixels)."""
    if not groups:
        return
    every = np.concatenate(groups)
    part = prior.part(every)
    half = window_half_width(part)
    row = np.zeros(every.size, np.int64)
    widths = [(int(w), np.flatnonzero(half == w)) for w in np.unique(half)]
    tables = dict(zip((w for w, _ in widths), _window_tables_many(part, widths)))
    for _, members in widths:
        row[members] = np.arange(members.size)
    start = 0
    for g in groups:
        _push_group(coder, k[g], prior.part(g), lambda w, idx, first=start: tables[w][row[first + idx]])
        start += g.size


def _push_group(coder, k: np.ndarray, prior: StepPrior | CodedPrior, rows=None) -> None:
    """Push one group's symbols, slice by slice in reverse; `rows(w, positions)` gives the window
    tables of the group's elements at those positions where they were made beforehand."""
    for sl in reversed(slices(len(prior))):
        _, part, half, buckets = _plan(prior, sl)
        ks = k[sl]
        escaped = np.flatnonzero(np.abs(ks) > half)
        if escaped.size:
            tables, k_lo = _escape_tables(part.part(escaped), half[escaped])
            coder.encode_reverse((ks[escaped] - k_lo).astype(np.int32), _CATEGORICAL, tables)
        for w, idx in reversed(buckets):
            sym = np.where(np.abs(ks[idx]) > w, 2 * w + 1, ks[idx] + w).astype(np.int32)
            table = _window_tables(part.part(idx), w) if rows is None else rows(w, idx)
            coder.encode_reverse(sym, _CATEGORICAL, table)


def _payload(coder) -> bytes:
    """The coder's words in the order a decoder reads them (constriction pops from the end of its
    array), so that any prefix of a payload holds the words its first symbols need."""
    return coder.get_compressed()[::-1].astype("<u4").tobytes()


class _Source:
    """An ANS decoder over a chunk's payload. For a *cut* chunk (a prefix of its words, FORMAT.md
    2.1) it decodes while the coder's 64-bit state is whole: the first refill that finds no word
    leaves it short, and every symbol after that is noise. A symbol is valid when the state was
    whole before it; decoding never grows the state, so once short it stays short."""

    def __init__(self, payload: bytes, cut: bool = False):
        if len(payload) % 4:
            raise FormatError("chunk payload is not a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4")[::-1].astype(np.uint32)
        try:
            self.coder = constriction.stream.stack.AnsCoder(words)
        except ValueError as exc:
            raise FormatError(f"invalid entropy-coded data: {exc}") from None
        self.cut = cut
        self.alive = not cut or self._whole(self.coder)

    @staticmethod
    def _whole(coder) -> bool:
        return coder.num_words() >= 2

    def decode(self, tables: np.ndarray) -> tuple[np.ndarray, int]:
        """(symbols, how many of them are valid): all of them unless the chunk is cut."""
        n = tables.shape[0]
        if not self.alive:
            return np.zeros(n, np.int64), 0
        before = self.coder.clone() if self.cut else None
        sym = self.coder.decode(_CATEGORICAL, tables).astype(np.int64)
        if before is None or self._whole(self.coder):
            return sym, n
        self.alive = False
        lo, hi = 0, n - 1  # the most symbols after which the state is still whole: in [lo, hi]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            probe = before.clone()
            probe.decode(_CATEGORICAL, tables[:mid])
            lo, hi = (mid, hi) if self._whole(probe) else (lo, mid - 1)
        return sym, lo + 1  # the symbol after them still had a whole state

    def finish(self) -> None:
        if not self.cut and not self.coder.is_empty():
            raise FormatError("entropy-coded data has trailing bits (corrupted or mismatched)")


def decode_step(payload: bytes, prior: StepPrior) -> np.ndarray:
    """Inverse of encode_step. Raises FormatError if the stream does not end where it should."""
    return decode_step_prefix(payload, prior, cut=False)[0]


def decode_step_prefix(payload: bytes, prior: StepPrior, cut: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(k, received): decode_step of a chunk of which `payload` may be only a prefix (cut); the
    elements whose symbols that prefix holds are marked received (all of them if not cut)."""
    stream = StepStream(payload, cut)
    out = stream.group(prior)
    stream.finish()
    return out


class StepStream:
    """The decoder of one chunk of a step, group by group (encode_step's `groups`, in order):
    group() decodes the next group under the prior given for it, which may depend on what the
    groups before it decoded; finish() checks the stream ended where it should."""

    def __init__(self, payload: bytes, cut: bool = False):
        self.src = _Source(payload, cut)

    def group(self, prior: StepPrior) -> tuple[np.ndarray, np.ndarray]:
        """(k, received) of the next group's elements."""
        return _decode_group(self.src, prior)

    def finish(self) -> None:
        self.src.finish()


def _decode_group(src: _Source, prior: StepPrior) -> tuple[np.ndarray, np.ndarray]:
    k = np.zeros(len(prior), dtype=np.int64)
    received = np.zeros(len(prior), bool)
    for sl, part, half, buckets in _slice_plan(prior):
        ks = np.zeros(sl.stop - sl.start, dtype=np.int64)
        got = np.zeros(ks.size, bool)
        if ks.size <= TABLE_BATCH:  # every bucket's table at once (the same numbers)
            tables = iter(_window_tables_many(part, buckets))
        else:  # one at a time, as each is needed
            tables = (_window_tables(part.part(idx), w) for w, idx in buckets)
        for (w, idx), table in zip(buckets, tables):
            sym, valid = src.decode(table)
            ks[idx[:valid]] = sym[:valid] - w
            got[idx[:valid]] = True
        escaped = np.flatnonzero(got & (ks > half))  # the escape symbol decodes as w + 1
        if escaped.size:
            tables, k_lo = _escape_tables(part.part(escaped), half[escaped])
            if not (tables > 0).any(axis=1).all():  # every value of its feasible range is in its window
                raise FormatError("a step decodes an escape that no value can take: the stream is damaged")
            sym, valid = src.decode(tables)
            ks[escaped[:valid]] = sym[:valid] + k_lo[:valid]
            got[escaped[valid:]] = False
        k[sl], received[sl] = ks, got
        if not src.alive:
            break
    return k, received


# ----------------------------------------------------------------------------- lossless layer


def _candidates(x_tilde: np.ndarray, quant_step: float):
    """Levels consistent with x_tilde: (first level, n, valid mask (m, n))."""
    margin = 1e-9
    n = int(math.ceil(quant_step * 128.0)) + 2
    first = np.ceil((x_tilde - 0.5 * quant_step - margin + 1.0) * 128.0 - 0.5).astype(np.int64)
    levels = first[:, None] + np.arange(n)[None, :]
    centres = pixels_to_data(levels)
    valid = (levels >= 0) & (levels <= 255)
    valid &= np.abs(centres - x_tilde[:, None]) < 0.5 * quant_step + margin
    return first, levels, centres, valid


def _level_tables(x_tilde: np.ndarray, loc: np.ndarray, scale: np.ndarray, quant_step: float):
    first, levels, centres, valid = _candidates(x_tilde, quant_step)
    inv = 1.0 / scale[:, None]
    # level v's upper edge x_v + 1/256 is level v+1's lower edge x_{v+1} - 1/256 (both exact)
    edges = np.concatenate([centres - 1.0 / 256.0, centres[:, -1:] + 1.0 / 256.0], axis=1)
    cdf = _sigmoid((edges - loc[:, None]) * inv)
    tables = np.where(valid, np.maximum(cdf[:, 1:] - cdf[:, :-1], PROB_FLOOR), 0.0)
    return first, centres, valid, tables


def encode_levels(
    levels: np.ndarray, x_tilde, loc, scale, quant_step: float, groups: list[np.ndarray] | None = None
) -> bytes:
    """ANS-code the pixel levels of one lossless chunk. With `groups` (positions in the arrays), the
    groups are decoded one after the other (the halves of FORMAT.md 6.2), each sliced as a chunk of
    its own; everything is pushed in reverse of the decoding order."""
    coder = constriction.stream.stack.AnsCoder()
    for g in reversed(groups if groups is not None else [slice(None)]):
        _push_levels(coder, levels[g], x_tilde[g], loc[g], scale[g], quant_step)
    return _payload(coder)


def _push_levels(coder, levels: np.ndarray, x_tilde, loc, scale, quant_step: float) -> None:
    starts = list(range(0, levels.size, SLICE))
    for start in reversed(starts):
        sl = slice(start, start + SLICE)
        first, _, valid, tables = _level_tables(x_tilde[sl], loc[sl], scale[sl], quant_step)
        sym = levels[sl].astype(np.int64) - first
        rows = np.arange(sym.size)
        if sym.min() < 0 or sym.max() >= tables.shape[1] or not valid[rows, sym].all():
            raise AssertionError("pixel outside its candidate set: numerical inconsistency")
        coder.encode_reverse(sym.astype(np.int32), _CATEGORICAL, tables)


def decode_levels(payload: bytes, x_tilde, loc, scale, quant_step: float) -> np.ndarray:
    return decode_levels_prefix(payload, x_tilde, loc, scale, quant_step, cut=False)[0]


def decode_levels_prefix(
    payload: bytes, x_tilde, loc, scale, quant_step: float, cut: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(levels, received): decode_levels of a chunk that may be cut (see decode_step_prefix)."""
    stream = LevelsStream(payload, cut)
    out = stream.group(x_tilde, loc, scale, quant_step)
    stream.finish()
    return out


class LevelsStream:
    """The decoder of one lossless chunk, group by group (encode_levels' `groups`, in order): the
    prior of a group may depend on what the groups before it decoded."""

    def __init__(self, payload: bytes, cut: bool = False):
        self.src = _Source(payload, cut)

    def group(self, x_tilde, loc, scale, quant_step: float) -> tuple[np.ndarray, np.ndarray]:
        """(levels, received) of the next group's elements."""
        src = self.src
        out = np.zeros(x_tilde.size, dtype=np.int64)
        received = np.zeros(x_tilde.size, bool)
        for start in range(0, x_tilde.size, SLICE):
            if not src.alive:
                break
            sl = slice(start, start + SLICE)
            first, _, _, tables = _level_tables(x_tilde[sl], loc[sl], scale[sl], quant_step)
            sym, valid = src.decode(tables)
            out[start : start + valid] = sym[:valid] + first[:valid]
            received[start : start + valid] = True
        return out, received

    def finish(self) -> None:
        self.src.finish()


def levels_element_bits(levels: np.ndarray, x_tilde, loc, scale, quant_step: float) -> np.ndarray:
    """-log2 P(level) of every pixel value of the lossless layer."""
    out = np.empty(levels.size)
    for start in range(0, levels.size, SLICE):
        sl = slice(start, start + SLICE)
        first, _, _, tables = _level_tables(x_tilde[sl], loc[sl], scale[sl], quant_step)
        sym = levels[sl].astype(np.int64) - first
        out[sl] = -np.log2(tables[np.arange(sym.size), sym] / tables.sum(axis=1))
    return out


def levels_ideal_bits(levels: np.ndarray, x_tilde, loc, scale, quant_step: float) -> float:
    return float(levels_element_bits(levels, x_tilde, loc, scale, quant_step).sum())


def posterior_mean(x_tilde, loc, scale, quant_step: float) -> np.ndarray:
    """E[x | last step] over the consistent levels: the display before the lossless layer.
    FormatError where an x_tilde has none (a damaged stream's: the true level always is one)."""
    out = np.empty_like(x_tilde)
    for start in range(0, x_tilde.size, SLICE):
        sl = slice(start, start + SLICE)
        _, centres, _, tables = _level_tables(x_tilde[sl], loc[sl], scale[sl], quant_step)
        total = portable.row_sum(tables)
        if not (total > 0).all():
            raise FormatError("the pixel step decodes a value that no pixel level is consistent with")
        out[sl] = portable.row_sum(tables * centres) / total
    return out


def step_posterior_mean(x_tilde: np.ndarray, prior: StepPrior) -> np.ndarray:
    """E[x | x_tilde] for step elements: the logistic prior restricted to x_tilde's bin
    [x_tilde - q/2, x_tilde + q/2] (universal quantisation: x is uniform there given the dither)
    intersected with [lower, upper], where the value was known to lie before.
    A better estimate than x_tilde itself when the bin is wide against the prior's scale; the
    decoder shows it after part of a step. Closed form, written so the interval sits at or left of
    the prior's centre (mirrored otherwise) to avoid cancellation; a bin too narrow for that gives
    x_tilde."""
    s = prior.scale
    lo_edge, hi_edge = x_tilde - 0.5 * prior.quant_step, x_tilde + 0.5 * prior.quant_step
    if prior.lower_known is not None:  # version 7 files used the bin alone
        lo_edge, hi_edge = np.maximum(lo_edge, prior.lower), np.minimum(hi_edge, prior.upper)
    ta = (lo_edge - prior.loc) / s
    tb = (hi_edge - prior.loc) / s
    mirror = ta > 0
    lo = np.where(mirror, -tb, ta)
    hi = np.where(mirror, -ta, tb)

    def primitive(t):  # integral of t * logistic density: t F(t) - softplus(t)
        return t * _sigmoid(t) - portable.softplus(t)

    den = _sigmoid(hi) - _sigmoid(lo)
    ok = (den > 1e-200) & (hi - lo > 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (primitive(hi) - primitive(lo)) / den
    centre = np.where(ok, np.clip(centre, lo, hi), 0.5 * (lo + hi))
    centre = np.where(mirror, -centre, centre)
    return np.clip(prior.loc + s * centre, prior.lower, prior.upper)

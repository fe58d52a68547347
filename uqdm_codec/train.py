"""Train the UQDM denoiser on a folder of photos: `uqdm train DATA_DIR --out RUN_DIR`.

Read top to bottom: data, model, loop. Resumes from RUN_DIR/checkpoint.pt; writes the EMA weights
as RUN_DIR/<name>.safetensors + .json at every checkpoint, ready for `--model`. Runs unchanged under
`torchrun --nproc_per_node N` (DDP; gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import ModelError, UqdmError, first_line
from .inference import pick_device
from .model import UQDM, ModelConfig, plain_name, save_model
from .network import NetworkConfig
from .objective import network_steps, random_grad_steps, run_chain
from .schedule import DEFAULT_LEVELS, DEFAULT_PIXEL_STEP, DEFAULT_THRESHOLD, Schedule

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    name: str = "uqdm-small"
    steps: int = 60_000  # total optimiser steps (resume with a new value to extend or shorten)
    batch: int = 4
    crop: int = 128
    big_crop: int = 256  # every `big_every`-th step uses big crops (batch // 4) for context
    big_every: int = 4
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup: int = 500
    decay_frac: float = 0.2  # linear decay over the last fraction of `steps` (warmup-stable-decay)
    ema: float = 0.999
    grad_clip: float = 1.0
    display_lambda: float = 1.0
    skip_lambda: float = 0.1
    holdout: int = 6  # images held aside for validation logs
    log_every: int = 50
    eval_every: int = 1000
    eval_at_start: bool = False  # also evaluate the held-aside crops before the first step
    ckpt_every: int = 250
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    widths: tuple[int, ...] = (48, 96, 128, 192)  # the shipped network (runs v3-v6: 32, 64, 128, 192)
    blocks_down: tuple[int, ...] = (1, 1, 1)
    blocks_mid: int = 2
    blocks_up: tuple[int, ...] = (1, 1, 1)
    noise_levels: tuple[float, ...] = field(default_factory=lambda: DEFAULT_LEVELS)
    pixel_step: float = DEFAULT_PIXEL_STEP
    threshold: float = DEFAULT_THRESHOLD
    init: str = ""  # float weights to start a new run from (e.g. weights/uqdm-small-float.safetensors)
    minutes: float = 0.0  # stop with a checkpoint after this much wall time (0: run to `steps`)
    grad_steps: int = 0  # back-propagate this many random network steps per batch (0: all of them)
    eval_codec: bool = False  # evaluations also code the held-aside crops with the codec: real bytes
    corrections: bool = False  # the loss includes the codec's colour context and display filters
    filter_from: int = 1  # with --corrections: the display filter applies to the images after this step on
    raw_display: float = 0.0  # with --corrections: share of a filtered step's display loss on the raw image
    exclude: str = ""  # comma-separated globs (under data_dir) of photos never to train on, e.g. "misc/*.png"
    decay_by_time: bool = False  # with --minutes: decay over the last decay_frac of the minutes
    val_dir: str = ""  # evaluate on centre crops of these photos instead of the held-aside ones

    def check(self) -> ModelConfig:
        """The model config the run trains; SystemExit, one sentence naming the option, for a value
        a run cannot use, before a folder is made or a photo read (they were tracebacks from
        inside the first step, or runs that trained nothing)."""

        def refuse(name: str, rule: str) -> None:
            raise SystemExit(f"--{name.replace('_', '-')} must be {rule}, not {getattr(self, name)}")

        at_least = {"steps": 1, "batch": 1, "crop": 1, "big_crop": 1, "log_every": 1, "eval_every": 1}
        at_least |= {"ckpt_every": 1, "filter_from": 1, "big_every": 0, "warmup": 0, "holdout": 0}
        at_least |= {"seed": 0, "threads": 0, "blocks_mid": 0}  # --grad-steps: once the model is made
        for name, least in at_least.items():
            if getattr(self, name) < least:
                refuse(name, f"at least {least}")
        if not 0 < self.grad_clip < math.inf:
            refuse("grad_clip", "a positive number")
        for name in ("lr", "min_lr", "display_lambda", "skip_lambda", "minutes"):  # lr 0: a frozen run
            if not 0 <= getattr(self, name) < math.inf:
                refuse(name, "a number from 0 up")
        for name in ("decay_frac", "raw_display"):
            if not 0 <= getattr(self, name) <= 1:
                refuse(name, "a number from 0 to 1")
        if not 0 <= self.ema < 1:
            refuse("ema", "a number from 0 to below 1")
        if not plain_name(self.name):  # the name goes into every file's header, at most 64 bytes
            refuse("name", "1 to 64 letters, digits, '-', '_' or '.' (no folder)")
        try:
            config = ModelConfig(
                name=self.name,
                network=NetworkConfig(
                    widths=tuple(self.widths),
                    blocks_down=tuple(self.blocks_down),
                    blocks_mid=self.blocks_mid,
                    blocks_up=tuple(self.blocks_up),
                ),
                schedule=Schedule(tuple(self.noise_levels), self.pixel_step, self.threshold),
            )
        except (ValueError, ModelError) as exc:
            options = "--widths, --blocks-*, --noise-levels, --pixel-step, --threshold"
            raise SystemExit(f"{exc} ({options})") from None
        side = 2 ** len(self.widths)  # the network folds 2x2, then halves once per level
        for name in ("crop", "big_crop"):
            if getattr(self, name) % side:
                refuse(name, f"a multiple of {side} (2 to the number of --widths)")
        return config


# What each option does, for `uqdm train --help` (the comments above are for readers of the code).
OPTION_HELP = {
    "out": "run folder: checkpoint.pt, log.jsonl and the EMA weights NAME.safetensors + .json",
    "name": "model name written into the weights (and into every file they encode)",
    "steps": "total optimiser steps; resume with another value to extend or shorten the run",
    "batch": "crops per optimiser step",
    "crop": "side of a training crop, in pixels",
    "big_crop": "side of the big crops every --big-every-th step uses (batch // 4 of them) for context",
    "big_every": "every this-many steps use big crops (0: never)",
    "lr": "peak learning rate (AdamW)",
    "min_lr": "learning rate at the end of the decay",
    "warmup": "steps of linear warm-up",
    "decay_frac": "linear decay over this last fraction of --steps (or of --minutes with --decay-by-time)",
    "ema": "decay of the weights' exponential moving average (the weights written)",
    "grad_clip": "gradient norm clip",
    "display_lambda": "weight of the displayed image's MSE in the loss, against the bits",
    "skip_lambda": "weight of the bits skipped coefficients would cost (keeps their scales calibrated)",
    "holdout": "photos held aside for the validation log",
    "log_every": "steps between log lines",
    "eval_every": "steps between validations",
    "eval_at_start": "also validate before the first step",
    "ckpt_every": "steps between checkpoints (one is also written at the end)",
    "seed": "seed of the data order, crops and noise",
    "device": "auto, cpu or cuda",
    "threads": "torch threads on the CPU (0: torch's default)",
    "widths": "channels at each of the U-Net's levels (one per Haar level)",
    "blocks_down": "residual blocks at each level on the way down",
    "blocks_mid": "residual blocks at the coarsest level",
    "blocks_up": "residual blocks at each level on the way up",
    "noise_levels": "noise level each Haar step brings the coefficients to, step 1's first (decreasing)",
    "pixel_step": "quantisation step of the pixel step, in pixel units",
    "threshold": "prior-scale-to-step ratio under which a coefficient is skipped (not coded)",
    "init": "float weights to start a new run from (e.g. weights/uqdm-small-float.safetensors)",
    "minutes": "stop with a checkpoint after this much wall time (0: run to --steps)",
    "grad_steps": "back-propagate this many random network steps per batch (0: all of them)",
    "eval_codec": "validations also code the held-aside crops with the codec: real bytes",
    "corrections": "the loss includes the codec's colour context and display filters",
    "filter_from": "with --corrections: the display filter applies to the images after this step on",
    "raw_display": "with --corrections: share of a filtered step's display loss on the unfiltered image",
    "exclude": "comma-separated globs (under DATA_DIR) of photos never to train on, e.g. 'misc/*.png'",
    "decay_by_time": "with --minutes: decay over the last --decay-frac of the minutes",
    "val_dir": "validate on centre crops of the photos in this folder instead of the held-aside ones",
}


# ----------------------------------------------------------------------------- data


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class PhotoCrops:
    """All training photos in memory, at full size and at half size (a cheap way to get sharper,
    less JPEG-marked pixels and a second scale), served as random flipped crops."""

    def __init__(self, paths: list[Path], min_side: int):
        self.images: list[np.ndarray] = []
        for path in paths:
            try:
                full = load_rgb(path)
            except OSError:
                continue
            h, w = full.shape[:2]
            if min(h, w) >= min_side:
                self.images.append(full)
            if min(h, w) >= 2 * min_side:
                half = Image.fromarray(full).reduce(2)
                self.images.append(np.asarray(half))
        if not self.images:
            raise SystemExit(f"no usable training images (need a side of at least {min_side} px)")

    def batch(self, rng: np.random.Generator, n: int, crop: int) -> np.ndarray:
        out = np.empty((n, crop, crop, 3), dtype=np.uint8)
        for k in range(n):
            while True:
                img = self.images[rng.integers(len(self.images))]
                h, w = img.shape[:2]
                if h >= crop and w >= crop:
                    break
            y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
            patch = img[y : y + crop, x : x + crop]
            out[k] = patch[:, ::-1] if rng.random() < 0.5 else patch
        return out.transpose(0, 3, 1, 2)


def holdout_batch(paths: list[Path], size: int = 256) -> np.ndarray:
    crops = []
    for path in paths:
        img = load_rgb(path)
        h, w = img.shape[:2]
        s = min(size, h - h % 16, w - w % 16)
        if s < 64:
            continue
        y, x = (h - s) // 2, (w - s) // 2
        crops.append(np.ascontiguousarray(img[y : y + s, x : x + s][:, :, :3]))
    s = min(c.shape[0] for c in crops)
    return np.stack([c[:s, :s] for c in crops]).transpose(0, 3, 1, 2)


def held_aside(paths: list[Path], holdout: int) -> list[Path]:
    """The `holdout` photos the trainer never trains on: every k-th one (deterministic)."""
    return paths[:: max(1, len(paths) // max(holdout, 1))][:holdout]


def excluded(path: Path, root: Path, patterns: str) -> bool:
    """Whether `path` matches one of the comma-separated globs (relative to `root`) of --exclude.
    Applied after the held-aside photos are chosen, so excluding photos never changes those."""
    rel = path.relative_to(root).as_posix()
    return any(fnmatch.fnmatch(rel, pat.strip()) for pat in patterns.split(",") if pat.strip())


def calibration_crops(data: Path, count: int, size: int, holdout: int = 6, seed: int = 0) -> list[np.ndarray]:
    """`count` center crops of training photos for the exact model's value ranges, skipping the
    photos the trainer holds aside."""
    paths = list_images(data)
    held = set(held_aside(paths, holdout))
    pool = [p for p in paths if p not in held]
    rng = np.random.default_rng(seed)
    crops = []
    for idx in rng.permutation(len(pool)):
        img = load_rgb(pool[idx])
        h, w = img.shape[:2]
        if min(h, w) < size:
            continue
        y, x = (h - size) // 2, (w - size) // 2
        crops.append(np.ascontiguousarray(img[y : y + size, x : x + size]))
        if len(crops) == count:
            break
    return crops


def codec_evaluation(model: UQDM, held: np.ndarray, calibration: list[np.ndarray]) -> dict:
    """What the codec makes of float weights, in real bytes: the exact model (calibrated as
    scripts/export_weights.py does) codes each held-aside crop (seed = its index) with every
    per-image correction the encoder sends (colour context, display filters, lossless context,
    known intervals), which the trainer's own chain leaves out; decoded step by step. Returns the
    mean cumulative bpp and PSNR after each step and the lossless bpp; raises if a file does not
    decode to its crop."""
    from .codec import Codec
    from .exactmodel import from_float
    from .progression import psnr

    exact = from_float(copy.deepcopy(model).cpu().float().eval(), calibration or None)
    codec = Codec(exact, "cpu")
    bpp, quality, lossless = [], [], []
    for seed, crop in enumerate(held):
        pixels = np.ascontiguousarray(crop.transpose(1, 2, 0))
        data = codec.encode(pixels, seed=seed)
        npx = pixels.shape[0] * pixels.shape[1]
        images = [im for im in codec.iter_decode(data) if im.steps > 0]
        if not images[-1].lossless or not np.array_equal(images[-1].pixels, pixels):
            raise RuntimeError(f"held-aside crop {seed} did not decode to itself")
        bpp.append([8.0 * im.nbytes / npx for im in images[:-1]])
        quality.append([psnr(pixels, im.pixels) for im in images[:-1]])
        lossless.append(8.0 * len(data) / npx)
    return {
        "codec_bpp": [round(float(v), 4) for v in np.mean(bpp, axis=0)],
        "codec_psnr": [round(float(v), 2) for v in np.mean(quality, axis=0)],
        "codec_lossless_bpp": round(float(np.mean(lossless)), 4),
    }


# ----------------------------------------------------------------------------- helpers


def chain_estimates(model: UQDM, val: torch.Tensor, filter_from: int) -> tuple[dict, dict]:
    """The evaluation's two runs of the chain on the crops `val` (seed 0 each, no gradient): the
    bare chain, and the chain as the codec codes it (objective.run_chain's corrections). The
    trainer's logs and scripts/estimate.py report these."""
    device = next(model.parameters()).device
    with torch.no_grad():
        bare = run_chain(model, val.to(device), generator=torch.Generator(device=device).manual_seed(0))
        gen = torch.Generator(device=device).manual_seed(0)
        corrected = run_chain(model, val.to(device), generator=gen, corrections=True, filter_from=filter_from)
    return bare, corrected


def _film_rows(n_old: int, n_new: int) -> torch.Tensor:
    """Where a FiLM layer's rows (scale for each channel, then shift) of the narrow network go."""
    return torch.cat([torch.arange(n_old), n_new + torch.arange(n_old)])


def widen_state(old: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A wider network's weights that compute exactly what `old` computed (Net2Net-style, by zeros).

    Every tensor is the old one in its leading slice. The new channels of every residual stream must
    start at zero and stay so until training moves them: whatever writes into a stream (stem,
    injections, down- and upsamplers, the second convolution of each block) gets zero rows for new
    output channels, while readers keep the fresh random columns for them (they read zeros at first,
    and pass gradient back to the writers). A block's new hidden channels are read by its second
    convolution through zero columns (its fresh init is zero anyway). FiLM rows are remapped.
    A residual block that `old` lacks (a deeper level) keeps its fresh init, whose second
    convolution and FiLM are zero: it starts as the identity.
    """
    out = {}
    for name, new in fresh.items():
        if name not in old:
            if "_blocks." not in name:  # down_blocks, mid_blocks, up_blocks
                raise KeyError(f"{name}: only residual blocks can be new")
            out[name] = new.clone()
            continue
        w = old[name].to(new.device)
        if w.shape == new.shape:
            out[name] = w.clone()
            continue
        t = new.clone()
        writer = any(k in name for k in ("stem.", "inject.", "downsamplers.", "upsamplers.", "conv2."))
        if ".film." in name:
            rows = _film_rows(w.shape[0] // 2, new.shape[0] // 2).to(t.device)
            t.zero_()  # FiLM starts at zero for new channels: no modulation
            t[rows] = w  # the embedding width is not widened
        else:
            if writer:
                t[w.shape[0] :] = 0.0
            if "conv2." in name and t.dim() == 4:
                t[:, w.shape[1] :] = 0.0
            t[tuple(slice(0, n) for n in w.shape)] = w
        out[name] = t
    return out


def lr_at(cfg: TrainConfig, it: int, elapsed: float = 0.0) -> float:
    """Warm-up, constant, linear decay to min_lr over the last decay_frac of the run: of --steps, or
    with --decay-by-time of --minutes (`elapsed` seconds; for a lease whose step count is unknown)."""
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    if cfg.decay_by_time and cfg.minutes > 0:
        progress = elapsed / (60.0 * cfg.minutes)
    else:
        progress = it / max(1, cfg.steps)
    start = 1.0 - cfg.decay_frac
    if progress < start:
        return cfg.lr
    frac = min(1.0, (progress - start) / max(cfg.decay_frac, 1e-9))
    return cfg.lr + (cfg.min_lr - cfg.lr) * frac


CHECKPOINT_KEYS = ("model", "ema", "opt", "step", "rng", "model_config")  # what save_checkpoint writes
FLOAT_EXAMPLE = "weights/uqdm-small-float.safetensors"  # --init's example: the shipped float weights


def read_checkpoint(path: Path, device: torch.device) -> dict:
    """The run's checkpoint; SystemExit, one line, for a file that is not one (cut short by a full
    disk, or another program's), so the user moves it away rather than reading a torch traceback."""
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, pickle's errors, EOFError, ... for a bad file
        first = first_line(exc).split(". ")[0][:120]  # torch's runs on over sentences of advice
        raise SystemExit(
            f"{path} is not a checkpoint this trainer can read ({first}); move it away or use a new --out"
        ) from None
    if not isinstance(ck, dict) or any(key not in ck for key in CHECKPOINT_KEYS):
        raise SystemExit(f"{path} is not a checkpoint of uqdm train; move it away or use a new --out")
    return ck


def make_run_folder(out: Path) -> None:
    """--out, made if missing; SystemExit, one line, where it cannot be (a file there, no permission)."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: not a folder (it names the run's folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"--out {out}: cannot make the folder ({exc.strerror or exc})") from None


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main loop


def train(cfg: TrainConfig) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    mcfg = cfg.check()
    try:
        device = pick_device(cfg.device)
    except UqdmError as exc:
        raise SystemExit(str(exc)) from None
    if world > 1:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    master = rank == 0
    root = Path(cfg.data_dir)
    if not root.is_dir():  # before the run folder is made: a typo leaves nothing behind
        raise SystemExit(f"{cfg.data_dir}: {'not a folder' if root.exists() else 'no such folder'}")
    paths = list_images(root)
    if len(paths) <= cfg.holdout:
        raise SystemExit(
            f"{cfg.data_dir}: {len(paths)} image(s) found; training needs more than the {cfg.holdout} "
            "held aside for validation (--holdout)"
        )
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.pt"
    checkpoint = read_checkpoint(ckpt_path, device) if ckpt_path.exists() else None
    init = None
    if checkpoint is None and cfg.init:  # read before the run folder is made, like the data folder
        from .model import EXACT_FORMAT, load_model, read_config, resolve_model_path

        try:
            path = resolve_model_path(cfg.init)
            if read_config(path)[1].get("format") == EXACT_FORMAT:
                raise SystemExit(
                    f"--init {cfg.init}: the codec's integer weights; training starts from float weights, "
                    f"such as {FLOAT_EXAMPLE}"
                )
            init = load_model(path)
        except UqdmError as exc:
            raise SystemExit(f"--init: {exc}") from None
    make_run_folder(out)
    held = held_aside(paths, cfg.holdout)
    kept = set(paths) - set(held)
    train_paths = [p for p in paths if p in kept and not excluded(p, root, cfg.exclude)]
    t0 = time.time()
    data = PhotoCrops(train_paths, min_side=cfg.crop)
    if cfg.val_dir:  # e.g. the photos that decide what ships, carried to a GPU beside a packed subset
        val_paths = list_images(Path(cfg.val_dir))
        if not val_paths:
            raise SystemExit(f"--val-dir {cfg.val_dir}: no images there")
        val = torch.from_numpy(holdout_batch(val_paths))
    else:
        val = torch.from_numpy(holdout_batch(held)) if held else None
    calibration = []  # for --eval-codec's exact model; only the master evaluates
    if cfg.eval_codec and master:
        calibration = calibration_crops(Path(cfg.data_dir), 16, 256, cfg.holdout)
    if master:
        print(
            f"loaded {len(data.images)} training crops sources from {len(train_paths)} photos "
            f"in {time.time() - t0:.0f}s; {len(held)} held aside",
            flush=True,
        )

    model = UQDM(mcfg).to(device)
    if not 0 <= cfg.grad_steps <= len(network_steps(model)):
        raise SystemExit(f"--grad-steps must be 0 (all) to {len(network_steps(model))}, not {cfg.grad_steps}")
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    start = 0
    rng = np.random.default_rng(cfg.seed + 1000 * rank)
    if checkpoint is not None:
        if checkpoint["model_config"] != mcfg.to_dict():
            raise SystemExit(f"{ckpt_path} was made with another model config; use a new --out")
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        opt.load_state_dict(checkpoint["opt"])
        start = checkpoint["step"]
        rng.bit_generator.state = checkpoint["rng"]
        if master:
            print(f"resumed from step {start}", flush=True)
    elif init is not None:  # a new run that continues from committed weights (fresh optimiser and schedule)
        # The weights fit any schedule of the same network: a run may fine-tune them to new noise
        # levels or a new threshold, or widen them (the ablations of docs/MODEL.md section 11).
        ours, theirs = mcfg.to_dict(), init.config.to_dict()

        def topology(d: dict) -> tuple:
            """All that must match: the network but for how wide and deep each level is."""
            net = {**d["network"], "widths": len(d["network"]["widths"])}
            for key in ("blocks_down", "blocks_up"):
                net[key] = len(net[key])
            del net["blocks_mid"]
            return net, d["band_sigma"], d["prior"]

        old_net = init.config.network
        if topology(ours) != topology(theirs):
            raise SystemExit(f"--init {cfg.init} has another network than this run")
        if any(a < b for a, b in zip(cfg.widths, old_net.widths)):
            raise SystemExit(f"--init {cfg.init} is wider than this run's --widths")
        depth = (*cfg.blocks_down, cfg.blocks_mid, *cfg.blocks_up)
        old_depth = (*old_net.blocks_down, old_net.blocks_mid, *old_net.blocks_up)
        if any(a < b for a, b in zip(depth, old_depth)):
            raise SystemExit(f"--init {cfg.init} is deeper than this run's --blocks-*")
        state = widen_state(init.state_dict(), model.state_dict())
        model.load_state_dict(state)
        ema.load_state_dict(state)
        if master:
            change = "" if ours["schedule"] == theirs["schedule"] else ", fine-tuning it to a new schedule"
            if ours["network"]["widths"] != theirs["network"]["widths"]:
                change += f", widened from {list(old_net.widths)}"
            if depth != old_depth:
                change += ", deepened by identity blocks"
            print(f"started from {cfg.init}{change}", flush=True)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    # Each chain step back-propagates on its own; under DDP the gradients are summed locally and
    # all-reduced once, with the last step.
    sync = (lambda last: nullcontext() if last else net.no_sync()) if world > 1 else None

    if master:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    log_file = open(out / "log.jsonl", "a") if master else None

    def record(rec: dict) -> None:
        """One line of the run's log (master only), on the console and in log.jsonl."""
        print(json.dumps(rec), flush=True)
        log_file.write(json.dumps(rec) + "\n")
        log_file.flush()

    acc: dict = {}
    n_acc = 0
    skipped = 0
    t_last = t_start = time.time()

    def save_checkpoint(done: int) -> None:
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": done,
                "rng": rng.bit_generator.state,
                "model_config": mcfg.to_dict(),
            },
            ckpt_path,
        )
        save_model(ema.cpu(), out / f"{cfg.name}.safetensors")
        ema.to(device)

    def evaluate(done: int) -> None:
        """The EMA model's chain on the held-aside crops (fixed seed): cumulative bpp and PSNR per step."""
        cm, cc = chain_estimates(ema, val, cfg.filter_from)
        rec = {
            "step": done,
            "eval": True,
            "minutes": round((time.time() - t_start) / 60, 2),  # wall time of this session's run
            "bpp": [round(v, 4) for v in cm["bpp"]],
            "psnr": [round(v, 2) for v in cm["psnr"]],
            "lossless_bpp": round(cm["nelbo_bpp"], 4),
            "coded": [round(v, 3) for v in cm["coded"]],
            # the same chain as the codec codes it (objective.run_chain's corrections), either loss
            "corrected_bpp": [round(v, 4) for v in cc["bpp"]],
            "corrected_psnr": [round(v, 2) for v in cc["psnr"]],
            "corrected_lossless_bpp": round(cc["nelbo_bpp"], 4),
        }
        if cfg.eval_codec:
            rec.update(codec_evaluation(ema, val.numpy(), calibration))
        record(rec)

    if master and val is not None and cfg.eval_at_start and start == 0:
        evaluate(0)
    for it in range(start, cfg.steps):
        lr = lr_at(cfg, it, time.time() - t_start)
        for g in opt.param_groups:
            g["lr"] = lr
        big = cfg.big_every > 0 and it % cfg.big_every == cfg.big_every - 1
        n, crop = (max(1, cfg.batch // 4), cfg.big_crop) if big else (cfg.batch, cfg.crop)
        pixels = torch.from_numpy(data.batch(rng, n, crop)).to(device)
        opt.zero_grad(set_to_none=True)
        chosen = random_grad_steps(model, cfg.grad_steps, rng)
        m = run_chain(
            model,
            pixels,
            net=net,
            backward=True,
            display_lambda=cfg.display_lambda,
            skip_lambda=cfg.skip_lambda,
            sync=sync,
            grad_steps=chosen,
            corrections=cfg.corrections,
            filter_from=cfg.filter_from,
            raw_display=cfg.raw_display,
        )
        if world > 1:  # step 1's prior runs outside the DDP forward: average its gradients by hand
            import torch.distributed as dist

            for p in (model.first_loc, model.first_log_scale):
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not (math.isfinite(float(grad_norm)) and math.isfinite(float(m["loss"]))):
            # a rare batch whose loss overflows: skip it rather than let NaN reach the weights
            # (every DDP rank sees the same all-reduced norm, so all skip together)
            skipped += 1
            if master:  # in the log too: a run's compute in the model card counts its skipped steps
                record({"step": it + 1, "skipped": "non-finite loss or gradient"})
            if skipped > 50:
                raise RuntimeError("training diverged: more than 50 non-finite steps")
        else:
            opt.step()
            decay = min(cfg.ema, (1 + it) / (10 + it))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1.0 - decay)
            for key in ("bits", "coded", "psnr"):
                acc[key] = [a + b for a, b in zip(acc.get(key, [0.0] * len(m[key])), m[key])]
            acc["loss"] = acc.get("loss", 0.0) + m["loss"]
            n_acc += 1

        done = it + 1
        if master and done % cfg.log_every == 0 and n_acc:
            rec = {
                "step": done,
                "lr": lr,
                "loss": round(acc["loss"] / n_acc, 4),
                "nelbo_bpp": round(3 * sum(acc["bits"]) / n_acc, 4),
                "layer_bpp": [round(3 * v / n_acc, 4) for v in acc["bits"]],
                "coded": [round(v / n_acc, 3) for v in acc["coded"]],
                "psnr": [round(v / n_acc, 2) for v in acc["psnr"]],
                "sec_per_step": round((time.time() - t_last) / n_acc, 3),
            }
            record(rec)
            acc, n_acc, t_last = {}, 0, time.time()
        if master and val is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            evaluate(done)
        out_of_time = _out_of_time(cfg.minutes, t_start, device, world)
        if master and (done % cfg.ckpt_every == 0 or done == cfg.steps or out_of_time):
            save_checkpoint(done)
        if out_of_time:
            if master:
                print(json.dumps({"step": done, "stopped": f"--minutes {cfg.minutes:g} reached"}), flush=True)
            break
    if log_file:
        log_file.close()
    if world > 1:
        import torch.distributed as dist

        # every rank waits for rank 0's last checkpoint before the group goes: a rank that tears
        # down its gloo pairs while another still works on them can abort (seen once in CI)
        dist.barrier()
        dist.destroy_process_group()


def _out_of_time(minutes: float, t_start: float, device: torch.device, world: int) -> bool:
    """Whether the wall-time budget is spent (decided by rank 0 for every rank under DDP, so all
    stop after the same step)."""
    if minutes <= 0:
        return False
    over = time.time() - t_start >= 60.0 * minutes
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([float(over)], device=device)
        dist.broadcast(flag, 0)
        over = bool(flag.item())
    return over


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="uqdm train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", help="folder of photos (searched recursively: .jpg, .png, .webp, ...)")
    parser.add_argument("--out", required=True, help=OPTION_HELP["out"])
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name in ("data_dir", "out_dir"):
            continue
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        option, what = "--" + f.name.replace("_", "-"), OPTION_HELP[f.name]
        if isinstance(default, bool):
            parser.add_argument(option, action="store_true", help=what)
            continue
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else repr(default)
        what += f" (default: {shown})"
        if isinstance(default, tuple):
            kind = float if isinstance(default[0], float) else int
            parser.add_argument(option, type=kind, nargs="+", default=default, help=what)
        else:
            parser.add_argument(option, type=type(default), default=default, help=what)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    cfg = TrainConfig(
        data_dir=args.pop("data_dir"),
        out_dir=out,
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()},
    )
    train(cfg)


if __name__ == "__main__":
    main()

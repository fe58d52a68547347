"""Would a learned post-filter on the shown image pay? (a probe; docs/MODEL.md section 32)

    python scripts/postfilter_probe.py collect PHOTOS... --out runs/pf/train.npz --crop 256
    python scripts/postfilter_probe.py collect $(cat runs/held.txt) --out runs/pf/held.npz --crop 512 --centre
    python scripts/postfilter_probe.py train runs/pf/train.npz --test runs/pf/held.npz runs/pf/misc.npz \
        --minutes 30 --json F [--steps 4 5 6 7] [--base raw]
    python scripts/postfilter_probe.py linear runs/pf/train.npz --test runs/pf/held.npz runs/pf/misc.npz \
        --json F

`collect` drives the chain as the encoder does (`codec.ChainRun`, display filters included, seed =
photo index) and keeps, after every Haar step from 2 on, the image a decoder shows, the network's
image before the display filter, the state's image (inverse Haar of z) and the network's pixel
scale, beside the original. `train` fits a small float CNN that adds a correction to the shown
image (one network for all steps, told the step), on the training crops only, and reports its
PSNR gain over the shown image per step on the test sets. The figure is an upper bound for a
shipped filter: float arithmetic, no rounding of the corrected image beyond 8 bits. `--base raw`
starts from the network's image before the display filter instead, a check that the training finds
what the per-image filters are known to find. `linear` fits the best global linear filter per step
in closed form, from the shown image and from the network's (docs/MODEL.md section 32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from uqdm_codec import entropy, get_codec, haar  # noqa: E402
from uqdm_codec.bench import center_crop, psnr  # noqa: E402
from uqdm_codec.codec import ChainRun  # noqa: E402
from uqdm_codec.image_io import load_image  # noqa: E402

FIRST = 2  # the first step whose images are kept


def _crop(px: np.ndarray, size: int, centre: bool, rng: np.random.Generator) -> np.ndarray:
    if centre:
        px = center_crop(px, size)
    else:
        h, w = px.shape[:2]
        y = int(rng.integers(0, max(1, h - size + 1)))
        x = int(rng.integers(0, max(1, w - size + 1)))
        px = px[y : y + size, x : x + size]
    h, w = px.shape[:2]
    return np.ascontiguousarray(px[: h - h % 16, : w - w % 16])


def collect(paths: list[Path], out: Path, size: int, centre: bool) -> None:
    codec = get_codec()
    rng = np.random.default_rng(1234)
    records: dict[str, list] = {
        k: [] for k in ("original", "shown", "raw", "state", "scale", "step", "photo")
    }
    t0 = time.time()
    for seed, path in enumerate(paths):
        px = _crop(load_image(path).pixels, size, centre, rng)
        h, w = px.shape[:2]
        run = ChainRun(codec, px, seed)
        for i in range(1, codec.num_steps):
            p, k = run.code_all(i, run.prior(i), run.values(i))
            run.finish(i, float(entropy.step_element_bits(k, p).sum()))
            if i < FIRST:
                continue
            pred = run.pred
            sent, pred.filter = pred.filter, None
            raw = pred.display_crop(h, w).astype(np.float16)
            pred.filter = sent
            shown = pred.image(h, w)
            state = haar.inverse([b.copy() for b in run.chain.z])[:, :h, :w].astype(np.float16)
            records["original"].append(px)
            records["shown"].append(shown)
            records["raw"].append(raw)
            records["state"].append(state)
            records["scale"].append(np.log(pred.pixel_scale_crop(h, w)).astype(np.float16))
            records["step"].append(i)
            records["photo"].append(seed)
        print(f"{seed + 1}/{len(paths)} {path.name} {h}x{w} {time.time() - t0:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    same = len({r.shape for r in records["original"]}) == 1
    arrays = {}
    for k, v in records.items():
        if same or k in ("step", "photo"):
            arrays[k] = np.stack(v)
        else:
            arrays[k] = np.empty(len(v), dtype=object)
            arrays[k][:] = v
    np.savez(out, **arrays)


# ----------------------------------------------------------------------------- the filter


class PostFilter(nn.Module):
    """shown, raw, state (data units), log pixel scale and the step -> a correction, in levels."""

    def __init__(self, width: int = 32, depth: int = 6, steps: int = 8):
        super().__init__()
        self.steps = steps
        layers: list[nn.Module] = [nn.Conv2d(12 + steps, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, shown, raw, state, scale, step):
        onehot = torch.zeros(shown.shape[0], self.steps, *shown.shape[2:], device=shown.device)
        onehot[torch.arange(shown.shape[0]), step] = 1.0
        x = torch.cat([shown / 127.5 - 1.0, raw, state, scale / 4.0, onehot], dim=1)
        return self.net(x) * 8.0


BASE = "shown"  # what the filter corrects: the shown image, or (--base raw) the network's unfiltered one


def _base(d, j) -> np.ndarray:
    """(H, W, 3) uint8: the image the filter starts from."""
    if BASE == "shown":
        return d["shown"][j]
    raw = np.asarray(d["raw"][j], np.float64)
    return entropy.data_to_pixels(raw).transpose(1, 2, 0)


def _tensors(d, idx, crop: int | None, rng):
    """One batch: uint8 and float arrays of records idx, cut to `crop` at random if given."""
    out = {k: [] for k in ("original", "shown", "raw", "state", "scale")}
    for j in idx:
        arrs = {
            "original": d["original"][j].transpose(2, 0, 1),
            "shown": _base(d, j).transpose(2, 0, 1),
            "raw": d["raw"][j],
            "state": d["state"][j],
            "scale": d["scale"][j],
        }
        if crop:
            h, w = arrs["raw"].shape[1:]
            y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            arrs = {k: v[:, y : y + crop, x : x + crop] for k, v in arrs.items()}
        for k, v in arrs.items():
            out[k].append(torch.from_numpy(np.ascontiguousarray(v).astype(np.float32)))
    t = {k: torch.stack(v) for k, v in out.items()}
    t["step"] = torch.as_tensor([int(d["step"][j]) for j in idx])
    return t


def evaluate(model: PostFilter, d) -> dict:
    """Mean PSNR of the shown image and of the corrected one per step (8-bit, clipped)."""
    rows: dict[int, list] = {}
    with torch.no_grad():
        for j in range(len(d["step"])):
            t = _tensors(d, [j], None, None)
            corr = model(t["shown"], t["raw"], t["state"], t["scale"], t["step"])
            fixed = torch.clamp(torch.round(t["shown"] + corr), 0, 255)[0].numpy().transpose(1, 2, 0)
            orig = d["original"][j]
            rows.setdefault(int(d["step"][j]), []).append((psnr(orig, _base(d, j)), psnr(orig, fixed)))
    return {
        s: {"shown": float(np.mean([a for a, _ in r])), "gain": float(np.mean([b - a for a, b in r]))}
        for s, r in sorted(rows.items())
    }


def _load(paths: list[Path]) -> dict:
    """The records of several collect files, as lists."""
    out: dict[str, list] = {}
    for path in paths:
        with np.load(path, allow_pickle=True) as f:
            for k in f.files:
                out.setdefault(k, []).extend(list(f[k]))
    return out


def _only(d: dict, steps: list[int]) -> dict:
    keep = [j for j, s in enumerate(d["step"]) if int(s) in steps]
    return {k: [v[j] for j in keep] for k, v in d.items()}


def train(
    data: list[Path],
    tests: list[Path],
    only: list[int],
    minutes: float,
    width: int,
    depth: int,
    crop: int,
    batch: int,
    lr: float,
    out: Path | None,
    save: Path | None,
) -> dict:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    d, sets = _load(data), {p.stem: _load([p]) for p in tests}
    if only:
        d = _only(d, only)
        sets = {name: _only(s, only) for name, s in sets.items()}
    model = PostFilter(width, depth)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(d["step"])
    t0, it, curve, running = time.time(), 0, [], 0.0
    while time.time() - t0 < minutes * 60:
        frac = (time.time() - t0) / (minutes * 60)
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 if frac > 0.8 else 1.0)
        t = _tensors(d, rng.integers(0, n, batch), crop, rng)
        corr = model(t["shown"], t["raw"], t["state"], t["scale"], t["step"])
        # the mean over crops of 10 log10(MSE after / MSE shown): every step's dB count alike
        err = torch.mean((t["shown"] + corr - t["original"]) ** 2, dim=(1, 2, 3))
        base = torch.mean((t["shown"] - t["original"]) ** 2, dim=(1, 2, 3))
        loss = torch.mean(10 * torch.log10((err + 1e-3) / (base + 1e-3)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        running = float(loss) if it == 1 else 0.98 * running + 0.02 * float(loss.detach())
        if it % 200 == 0:
            curve.append({"step": it, "seconds": time.time() - t0, "db_change": running})
            print(f"it {it} {time.time() - t0:.0f} s  dB change {running:+.4f}", flush=True)
    result = {"iterations": it, "params": sum(p.numel() for p in model.parameters()), "curve": curve}
    result["tests"] = {name: evaluate(model, s) for name, s in sets.items()}
    result["train_fit"] = evaluate(model, {k: v[:: max(1, n // 60)] for k, v in d.items()})
    for name, r in result["tests"].items():
        print(name, "  ".join(f"step {s}: {v['shown']:.2f} dB {v['gain']:+.3f}" for s, v in r.items()))
    if out:
        out.write_text(json.dumps(result, indent=1) + "\n")
    if save:
        torch.save(model.state_dict(), save)
    return result


def _windows(img: np.ndarray, r: int = 2) -> np.ndarray:
    """(3, H, W) -> (H*W, 3 (2r+1)^2): every colour's (2r+1)^2 window, edges repeated."""
    c, h, w = img.shape
    p = np.pad(img, ((0, 0), (r, r), (r, r)), mode="edge")
    cols = [
        p[ch, dy : dy + h, dx : dx + w].ravel()
        for ch in range(c)
        for dy in range(2 * r + 1)
        for dx in range(2 * r + 1)
    ]
    return np.stack(cols, 1)


def linear(data: list[Path], tests: list[Path], steps: list[int], per: int = 4000) -> dict:
    """The best global linear filter per step (5x5 in all three colours, and a constant), fitted by
    least squares on `per` random pixels of every training crop, applied to the test sets: the PSNR
    gain over the base image, 8-bit and clipped as a decoder would show it."""
    d, out = _load(data), {}
    sets = {p.stem: _load([p]) for p in tests}
    for step in steps:
        rng = np.random.default_rng(0)
        rows, want = [], []
        for j in (j for j, s in enumerate(d["step"]) if int(s) == step):
            b = _base(d, j).astype(np.float64).transpose(2, 0, 1)
            o = d["original"][j].astype(np.float64).transpose(2, 0, 1)
            x = _windows(b)
            pick = rng.choice(x.shape[0], min(per, x.shape[0]), replace=False)
            rows.append(x[pick])
            want.append((o - b).reshape(3, -1).T[pick])
        a = np.concatenate(rows)
        coef = np.linalg.lstsq(np.c_[a, np.ones(len(a))], np.concatenate(want), rcond=None)[0]
        for name, t in sets.items():
            gains = []
            for j in (j for j, s in enumerate(t["step"]) if int(s) == step):
                b = _base(t, j).astype(np.float64).transpose(2, 0, 1)
                x = np.c_[_windows(b), np.ones(b.shape[1] * b.shape[2])]
                fixed = np.clip(np.rint(b + (x @ coef).T.reshape(b.shape)), 0, 255).astype(np.uint8)
                gains.append(
                    psnr(t["original"][j], fixed.transpose(1, 2, 0)) - psnr(t["original"][j], _base(t, j))
                )
            out.setdefault(name, {})[step] = float(np.mean(gains))
            print(f"{BASE} step {step} {name}: {np.mean(gains):+.3f} dB", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("photos", nargs="+", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--crop", type=int, default=256)
    c.add_argument("--centre", action="store_true")
    t = sub.add_parser("train")
    t.add_argument("data", nargs="+", type=Path)
    t.add_argument("--test", nargs="*", type=Path, default=[])
    t.add_argument("--minutes", type=float, default=20)
    t.add_argument("--width", type=int, default=32)
    t.add_argument("--depth", type=int, default=6)
    t.add_argument("--crop", type=int, default=96)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--json", type=Path)
    t.add_argument("--save", type=Path)
    t.add_argument("--steps", nargs="*", type=int, default=[], help="only these steps' images")
    t.add_argument("--base", choices=("shown", "raw"), default="shown")
    li = sub.add_parser("linear")
    li.add_argument("data", nargs="+", type=Path)
    li.add_argument("--test", nargs="*", type=Path, default=[])
    li.add_argument("--steps", nargs="*", type=int, default=[4, 5, 6, 7])
    li.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.cmd == "linear":
        result = {}
        global BASE
        for BASE in ("shown", "raw"):
            result[BASE] = linear(a.data, a.test, a.steps)
        if a.json:
            a.json.write_text(json.dumps(result, indent=1) + "\n")
        return
    if a.cmd == "collect":
        collect(a.photos, a.out, a.crop, a.centre)
    else:
        BASE = a.base
        train(a.data, a.test, a.steps, a.minutes, a.width, a.depth, a.crop, a.batch, a.lr, a.json, a.save)


if __name__ == "__main__":
    main()

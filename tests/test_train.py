"""Training runs, checkpoints, resumes, and writes weights the codec can load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from uqdm_codec.codec import Codec
from uqdm_codec.train import main

from .conftest import load_script, synthetic_image

# a tiny network on tiny crops: enough to exercise every part of training in seconds
TINY = [
    "--crop",
    "32",
    "--big-crop",
    "64",
    "--batch",
    "2",
    "--widths",
    "16",
    "16",
    "16",
    "16",
    "--holdout",
    "1",
]


def _photos(tmp_path, count: int):
    """A folder of small synthetic photos to train on."""
    data = tmp_path / "photos"
    data.mkdir()
    for k in range(count):
        Image.fromarray(synthetic_image(72, 80, seed=k)).save(data / f"{k}.png")
    return data


def test_train_checkpoint_resume_and_use(tmp_path, capsys):
    data = _photos(tmp_path, 5)
    out = tmp_path / "run"
    common = [str(data), "--out", str(out), *TINY, "--log-every", "1", "--eval-every", "2"]
    common += ["--ckpt-every", "1", "--name", "tiny-run"]
    main([*common, "--steps", "2"])
    assert (out / "checkpoint.pt").exists() and (out / "tiny-run.safetensors").exists()
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logs[0]["step"] == 1 and np.isfinite(logs[0]["loss"]) and any(r.get("eval") for r in logs)
    main([*common, "--steps", "3"])
    assert "resumed from step 2" in capsys.readouterr().out
    codec = Codec(str(out / "tiny-run.safetensors"), "cpu")
    img = synthetic_image(16, 24)
    assert np.array_equal(codec.decode(codec.encode(img, seed=1)).pixels, img)


def test_train_starts_from_committed_weights(tmp_path, capsys):
    """--init continues from float weights (e.g. the shipped ones) in a new run directory."""
    from safetensors.torch import load_file

    data = _photos(tmp_path, 3)
    first = tmp_path / "first"
    common = [str(data), *TINY, "--ckpt-every", "1", "--name", "tiny-run", "--steps", "1", "--lr", "0"]
    main([*common, "--out", str(first)])
    second = tmp_path / "second"
    main([*common, "--out", str(second), "--init", str(first / "tiny-run.safetensors")])
    assert "started from" in capsys.readouterr().out
    a, b = load_file(str(first / "tiny-run.safetensors")), load_file(str(second / "tiny-run.safetensors"))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # lr 0: the weights carried over


def test_init_fine_tunes_to_a_new_schedule_or_a_wider_network(tmp_path, capsys):
    """--init accepts weights of the same network for another schedule, and widens or deepens
    smaller weights without changing what they compute; a narrower or shallower run is refused."""
    from uqdm_codec.model import load_model
    from uqdm_codec.objective import run_chain

    data = _photos(tmp_path, 3)
    common = [
        str(data),
        *TINY[:6],
        "--holdout",
        "1",
        "--ckpt-every",
        "1",
        "--name",
        "tiny-run",
        "--steps",
        "1",
    ]

    def run(widths: str, out: str, *extra: str) -> None:
        main([*common, "--widths", *widths.split(), "--out", str(tmp_path / out), *extra])

    run("16 16 16 16", "first")
    init = str(tmp_path / "first" / "tiny-run.safetensors")
    run("16 16 16 16", "t", "--init", init, "--threshold", "0.5")
    assert "fine-tuning it to a new schedule" in capsys.readouterr().out
    run("24 32 16 16", "wide", "--init", init, "--lr", "0")
    assert "widened from [16, 16, 16, 16]" in capsys.readouterr().out
    narrow, widened = load_model(init), load_model(tmp_path / "wide" / "tiny-run.safetensors")
    assert widened.config.network.widths == (24, 32, 16, 16)
    pixels = torch.from_numpy(synthetic_image(32, 32, seed=7).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        a = run_chain(narrow, pixels, generator=torch.Generator().manual_seed(0))
        b = run_chain(widened, pixels, generator=torch.Generator().manual_seed(0))
    assert np.allclose(a["bpp"], b["bpp"], rtol=1e-4) and np.allclose(a["psnr"], b["psnr"], atol=1e-3)
    run("16 16 16 16", "deep", "--init", init, "--lr", "0", "--blocks-up", "1", "2", "1", "--blocks-mid", "3")
    assert "deepened by identity blocks" in capsys.readouterr().out
    deep = load_model(tmp_path / "deep" / "tiny-run.safetensors")
    assert deep.config.network.blocks_up == (1, 2, 1) and deep.config.network.blocks_mid == 3
    with torch.no_grad():
        c = run_chain(deep, pixels, generator=torch.Generator().manual_seed(0))
    assert np.allclose(a["bpp"], c["bpp"], rtol=1e-4) and np.allclose(a["psnr"], c["psnr"], atol=1e-3)
    with pytest.raises(SystemExit, match="wider than"):
        run("8 16 16 16", "n", "--init", init)
    with pytest.raises(SystemExit, match="deeper than"):
        run("16 16 16 16", "d", "--init", init, "--blocks-mid", "1")


def test_train_under_torchrun_ddp(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo on CPU) runs the same script unchanged."""
    import os
    import subprocess
    import sys

    data = _photos(tmp_path, 4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "uqdm_codec.train"]
    cmd += [str(data), "--out", str(out), "--steps", "2", *TINY, "--ckpt-every", "2", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[:2000] + "\n...\n" + result.stderr[-2000:]
    assert (out / "checkpoint.pt").exists() and (out / "uqdm-small.safetensors").exists()


def test_train_skips_non_finite_steps(tmp_path, capsys, monkeypatch):
    """A batch whose loss is NaN is skipped: the weights stay finite and the run goes on."""
    import torch

    import uqdm_codec.train as train_mod

    data = _photos(tmp_path, 3)
    real_run_chain = train_mod.run_chain
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        m = real_run_chain(*args, **kwargs)
        if kwargs.get("backward") and calls["n"] == 2:  # the second training step
            for p in args[0].parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
            m["loss"] = float("nan")
        return m

    monkeypatch.setattr(train_mod, "run_chain", poisoned)
    out = tmp_path / "run"
    args = [str(data), "--out", str(out), *TINY, "--log-every", "1", "--eval-every", "100"]
    args += ["--name", "nan-run", "--steps", "3"]
    main(args)
    printed = capsys.readouterr().out
    assert '"skipped"' in printed
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_logs = [r for r in logs if "loss" in r]
    assert [r["step"] for r in train_logs] == [1, 3] and all(np.isfinite(r["loss"]) for r in train_logs)
    assert [r["step"] for r in logs if "skipped" in r] == [2]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_minutes_stop_a_run_with_a_checkpoint_and_device_pieces_resume_it(tmp_path, capsys):
    """--minutes ends a run early with a checkpoint (one device call); the device script cuts the
    checkpoint into parts the device tool can return and joins them for the next call."""
    data = _photos(tmp_path, 3)
    run = tmp_path / "run"
    main(
        [str(data), "--out", str(run), *TINY, "--steps", "1000", "--ckpt-every", "1000", "--minutes", "1e-6"]
    )
    assert '"stopped"' in capsys.readouterr().out
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 1

    device_train = load_script("device_train")
    device_train.PIECE = (run / "checkpoint.pt").stat().st_size // 3 + 1  # three parts
    device_train.split(run, tmp_path / "out")
    assert len(list((tmp_path / "out").glob("checkpoint.pt.part*"))) == 3
    assert device_train.join(tmp_path / "out", tmp_path / "again")
    assert (tmp_path / "again" / "checkpoint.pt").read_bytes() == (run / "checkpoint.pt").read_bytes()
    assert not device_train.join(tmp_path / "nothing", tmp_path / "none")


def test_default_network_is_the_shipped_one():
    """`uqdm train DATA --init weights/uqdm-small-float.safetensors` (README) continues the shipped model
    without naming its widths: the trainer's default network is the one the shipped weights have."""
    from uqdm_codec.model import resolve_model_path
    from uqdm_codec.train import TrainConfig

    shipped = json.loads(resolve_model_path("uqdm-small-float").with_suffix(".json").read_text())
    default = TrainConfig(data_dir="", out_dir="")
    net = shipped["network"]
    assert list(default.widths) == net["widths"] and list(default.blocks_down) == net["blocks_down"]
    assert default.blocks_mid == net["blocks_mid"] and list(default.blocks_up) == net["blocks_up"]


def test_grad_steps_back_propagates_only_the_chosen_steps():
    """`--grad-steps`: the chain and its figures are the same; all steps chosen is the full
    gradient; one step chosen is that step's gradient, weighted by the number of network steps."""
    from uqdm_codec.model import UQDM, ModelConfig
    from uqdm_codec.network import NetworkConfig
    from uqdm_codec.objective import run_chain

    torch.manual_seed(0)
    model = UQDM(ModelConfig(network=NetworkConfig(widths=(8, 8, 8, 8))))
    for p in model.parameters():  # the heads start at zero: give every weight a gradient path
        p.data.add_(0.01 * torch.randn_like(p))
    pixels = np.stack([synthetic_image(32, 32, seed=k) for k in range(2)])
    pixels = torch.from_numpy(pixels.transpose(0, 3, 1, 2))
    steps = model.schedule.num_steps

    def grads(chosen):
        model.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(3)
        m = run_chain(model, pixels, generator=gen, backward=True, grad_steps=chosen)
        flat = [
            (torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in model.denoiser.parameters()
        ]
        return m, torch.cat(flat)

    full_m, full = grads(None)
    all_m, every = grads(frozenset(range(2, steps + 1)))
    assert torch.equal(full, every) and full_m["bits"] == all_m["bits"]
    parts = []
    for i in range(2, steps + 1):
        m, g = grads(frozenset({i}))
        assert m["bits"] == full_m["bits"] and m["psnr"] == full_m["psnr"]
        parts.append(g / (steps - 1))
    assert torch.allclose(sum(parts), full, rtol=1e-4, atol=1e-7)


def test_grad_steps_out_of_range_is_refused_in_one_line(tmp_path):
    data = _photos(tmp_path, 3)
    for bad in ("8", "-1"):
        with pytest.raises(SystemExit, match=r"--grad-steps must be 0 \(all\) to 7, not"):
            main([str(data), "--out", str(tmp_path / "run"), *TINY, "--steps", "1", "--grad-steps", bad])


def test_eval_codec_reports_the_real_bytes_of_the_held_aside_crops(tmp_path):
    """--eval-codec logs what the codec makes of the EMA weights: the held-aside crop's real file
    size, the same bytes a user gets encoding that crop with the saved weights (photos too small for
    the 256 px calibration crops fall back to the synthetic calibration the codec uses too)."""
    from uqdm_codec.train import holdout_batch, list_images

    data = _photos(tmp_path, 4)
    out = tmp_path / "run"
    main([str(data), "--out", str(out), *TINY, "--steps", "2", "--eval-every", "2", "--eval-codec"])
    rec = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"eval"' in line][-1]
    bpp, quality = rec["codec_bpp"], rec["codec_psnr"]
    assert len(bpp) == len(quality) == len(rec["bpp"])  # one point per lossy step, as the trainer's own
    assert all(b1 >= b0 for b0, b1 in zip(bpp, bpp[1:])) and rec["codec_lossless_bpp"] > bpp[-1]
    assert all(np.isfinite(q) for q in quality)
    crop = holdout_batch(list_images(data)[:1])[0].transpose(1, 2, 0)
    file = Codec(str(out / "uqdm-small.safetensors"), "cpu").encode(np.ascontiguousarray(crop), seed=0)
    assert rec["codec_lossless_bpp"] == round(8.0 * len(file) / (crop.shape[0] * crop.shape[1]), 4)


def test_exclude_drops_photos_from_training_but_keeps_the_held_aside_ones(tmp_path, capsys):
    from uqdm_codec.train import excluded, held_aside, list_images

    data = _photos(tmp_path, 6)
    for k in range(3):
        Image.fromarray(synthetic_image(72, 80, seed=10 + k)).save(data / f"{k}.jpg")
    paths = list_images(data)
    held = held_aside(paths, 1)
    dropped = [p.name for p in paths if excluded(p, data, "*.jpg, 4.png")]
    assert sorted(dropped) == ["0.jpg", "1.jpg", "2.jpg", "4.png"] and held[0].name == "0.jpg"
    assert not any(excluded(p, data, "") for p in paths)
    main([str(data), "--out", str(tmp_path / "run"), *TINY, "--steps", "1", "--exclude", "*.jpg, 4.png"])
    # 9 photos: 0.jpg held aside (chosen before the exclusion), 1.jpg, 2.jpg and 4.png excluded
    assert "from 5 photos in" in capsys.readouterr().out


def test_average_weights_is_the_element_wise_mean_and_refuses_runs_that_differ(tmp_path):
    """scripts/average_weights.py (docs/MODEL.md section 22): float tensors averaged, others kept
    only where every run agrees, the first run's description copied beside the result."""
    from safetensors.torch import load_file, save_file

    average_weights = load_script("average_weights")

    runs = []
    for i, (w, steps) in enumerate(((1.0, 7), (2.0, 7), (6.0, 7))):
        run = tmp_path / f"run{i}.safetensors"
        save_file({"w": torch.full((2, 3), w), "steps": torch.tensor([steps])}, str(run))
        run.with_suffix(".json").write_text(json.dumps({"name": f"run{i}"}))
        runs.append(run)
    mean = average_weights.average(runs)
    assert torch.equal(mean["w"], torch.full((2, 3), 3.0)) and mean["w"].dtype == torch.float32
    assert torch.equal(mean["steps"], torch.tensor([7]))

    out = tmp_path / "mean.safetensors"
    average_weights.main([str(out), str(runs[0]), str(runs[1])])
    assert torch.equal(load_file(str(out))["w"], torch.full((2, 3), 1.5))
    assert json.loads(out.with_suffix(".json").read_text()) == {"name": "run0"}

    odd = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(2, 3), "steps": torch.tensor([8])}, str(odd))
    with pytest.raises(SystemExit, match="differs"):
        average_weights.average([runs[0], odd])
    save_file({"v": torch.zeros(2, 3), "steps": torch.tensor([7])}, str(odd))
    with pytest.raises(SystemExit, match="same tensors"):
        average_weights.average([runs[0], odd])


def test_lr_schedule_decays_by_steps_or_by_the_minutes_of_a_lease():
    """--decay-by-time: a run bound by a lease (--minutes) does not know its step count, so its decay
    follows wall time; without it the schedule is the step-based one."""
    from uqdm_codec.train import TrainConfig, lr_at

    cfg = TrainConfig("d", "o", steps=1000, lr=1e-3, min_lr=0.0, warmup=10, decay_frac=0.5)
    assert lr_at(cfg, 4) == pytest.approx(5e-4)  # warm-up
    assert lr_at(cfg, 400, elapsed=1e9) == 1e-3 and lr_at(cfg, 750) == pytest.approx(5e-4)
    timed = TrainConfig("d", "o", steps=10**6, lr=1e-3, min_lr=0.0, warmup=10, decay_frac=0.5, minutes=2.0)
    assert lr_at(timed, 900_000, elapsed=30.0) == pytest.approx(2e-4)  # by steps: elapsed is ignored
    timed.decay_by_time = True
    assert lr_at(timed, 50, elapsed=30.0) == 1e-3  # a quarter of the minutes: constant
    assert lr_at(timed, 50, elapsed=90.0) == pytest.approx(5e-4)  # three quarters: half way down
    assert lr_at(timed, 50, elapsed=500.0) == 0.0  # past the end: min_lr


def test_device_sweep_trains_runs_side_by_side_and_copies_them_out(tmp_path):
    """scripts/device_train.py sweep (one device call): every run starts from --init, stops at
    --minutes, and its EMA weights and logs land in the output folder under the run's name."""
    data = _photos(tmp_path, 4)
    main([str(data), "--out", str(tmp_path / "first"), *TINY, "--steps", "1", "--name", "uqdm-small"])
    device_train = load_script("device_train")
    tiny = " ".join(TINY[:6]) + " --holdout 1 --steps 1000 --eval-every 1000 --ckpt-every 1000"
    runs = [("a", [*tiny.split(), "--widths", "16", "16", "16", "16"])]
    runs += [("b", [*tiny.split(), "--widths", "24", "16", "16", "16"])]
    out = tmp_path / "out"
    failed = device_train.sweep(
        1e-6, runs, tmp_path / "root", out, data, 0.2, tmp_path / "first" / "uqdm-small.safetensors"
    )
    assert failed == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.safetensors",
        "b.json",
        "b.safetensors",
        "logs.tar",
    ]
    codec = Codec(str(out / "b.safetensors"), "cpu")
    assert codec.model.config.network.widths == (24, 16, 16, 16)
    import tarfile

    with tarfile.open(out / "logs.tar") as tar:
        assert {"a/log.jsonl", "b/console.log", "b/train_config.json"} <= set(tar.getnames())


def test_pack_keeps_pixels_and_leaves_out_the_photos_that_decide_what_ships(tmp_path):
    """The device's training set holds the photos' own pixels (JPEGs byte for byte, the others as
    lossless WebP: never a lossy re-encode) and never the trainer's held-aside photos of the whole
    folder nor the PNG photos of misc/ (held aside for decisions since run v13b); photos too small
    for a crop are left out."""
    from uqdm_codec.train import held_aside, list_images, load_rgb

    source = tmp_path / "train"
    for folder, count, ext in (("a", 10, "jpg"), ("b", 4, "png"), ("misc", 3, "png")):
        (source / folder).mkdir(parents=True)
        for k in range(count):
            Image.fromarray(synthetic_image(40, 48, seed=k)).save(source / folder / f"{k}.{ext}")
    Image.fromarray(synthetic_image(20, 48, seed=99)).save(source / "a" / "small.jpg")
    device_train = load_script("device_train")
    dest = tmp_path / "packed"
    device_train.pack(source, dest, mib=10, min_side=32)
    packed = {p.name: p for p in dest.iterdir()}
    decisions = {
        "__".join(p.relative_to(source).with_suffix("").parts) for p in held_aside(list_images(source), 6)
    }
    stems = {name.rsplit(".", 1)[0] for name in packed}
    assert stems and not stems & decisions and not any(name.startswith("misc") for name in packed)
    assert stems == ({f"a__{k}" for k in range(10)} | {f"b__{k}" for k in range(4)}) - decisions
    for name, path in packed.items():
        folder, file = name.split("__")
        original = source / folder / file.replace(".webp", ".png")
        if name.endswith(".jpg"):
            assert path.read_bytes() == original.read_bytes()
        else:
            assert np.array_equal(load_rgb(path), load_rgb(original))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_widening_on_a_gpu_starts_from_the_same_weights():
    """--init on CUDA with a wider network (the narrow weights load on the CPU): widen_state moves
    them to the device of the new network (a run on the lent GPU failed here once)."""
    from uqdm_codec.model import UQDM, ModelConfig
    from uqdm_codec.network import NetworkConfig
    from uqdm_codec.train import widen_state

    old = UQDM(ModelConfig(network=NetworkConfig(widths=(16, 16, 16, 16)))).state_dict()
    fresh = UQDM(ModelConfig(network=NetworkConfig(widths=(24, 32, 16, 16)))).cuda().state_dict()
    out = widen_state(old, fresh)
    assert all(t.is_cuda for t in out.values())
    assert all(
        torch.equal(out[k][tuple(slice(0, n) for n in v.shape)].cpu(), v)
        for k, v in old.items()
        if ".film." not in k
    )


def test_val_dir_evaluates_on_other_photos(tmp_path):
    """--val-dir: the run's evaluations use centre crops of another folder's photos (the decision
    photos, carried beside a packed subset), and an empty folder is refused in one line."""
    data = _photos(tmp_path, 3)
    main([str(data), *TINY, "--steps", "1", "--out", str(tmp_path / "first")])
    init = str(tmp_path / "first" / "uqdm-small.safetensors")
    val = tmp_path / "val"
    val.mkdir()
    args = [str(data), *TINY, "--steps", "1", "--eval-every", "1", "--eval-at-start", "--init", init]
    with pytest.raises(SystemExit, match="no images there"):
        main([*args, "--val-dir", str(val), "--out", str(tmp_path / "r0")])
    for k in range(2):
        Image.fromarray(synthetic_image(96, 112, seed=40 + k)).save(val / f"{k}.png")
    main([*args, "--val-dir", str(val), "--out", str(tmp_path / "r1")])
    main([*args, "--out", str(tmp_path / "r2")])
    evals = {}
    for run in ("r1", "r2"):
        logs = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        evals[run] = [r for r in logs if r.get("eval")]
    assert [r["step"] for r in evals["r1"]] == [0, 1]
    # the same weights at step 0 (both start from `first`): other crops, other figures
    assert evals["r1"][0]["lossless_bpp"] != evals["r2"][0]["lossless_bpp"]


def test_estimate_script_prints_the_trainers_figures_per_model(tmp_path, capsys, monkeypatch):
    """scripts/estimate.py: the trainer's evaluation (same crops, same seed) for any photos."""
    data = _photos(tmp_path, 3)
    main([str(data), *TINY, "--steps", "1", "--out", str(tmp_path / "r")])
    listing = tmp_path / "photos.txt"
    listing.write_text(" ".join(str(p) for p in sorted(data.iterdir())))
    model = str(tmp_path / "r" / "uqdm-small.safetensors")
    monkeypatch.setattr("sys.argv", ["estimate.py", str(listing), model, model, "--size", "64"])
    capsys.readouterr()
    load_script("estimate").main()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].startswith(model)
    bare, corrected = (float(lines[0].split(word)[1].split()[0]) for word in (" bare ", " corrected "))
    assert 0 < corrected < 30 and 0 < bare < 30
    # --tf32: a second line per model, the same chain with TF32-rounded convolutions
    monkeypatch.setattr("sys.argv", ["estimate.py", str(listing), model, "--size", "64", "--tf32"])
    load_script("estimate").main()
    plain, tf32 = capsys.readouterr().out.strip().splitlines()
    assert plain == lines[0] and tf32.startswith(f"{model} (TF32 convolutions): bare ")
    bare32 = float(tf32.split(" bare ")[1].split()[0])
    assert abs(bare32 - bare) < 0.05 * bare


def test_a_missing_data_folder_is_one_error_line_and_makes_no_run_folder(tmp_path):
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(tmp_path / "nope"), "--out", str(run), *TINY])
    assert r.exit_code == 1 and r.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"
    assert not run.exists()
    r = CliRunner().invoke(app, ["train", str(_photos(tmp_path, 1)), "--out", str(run), *TINY])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {tmp_path / 'photos'}: 1 image(s) found; training needs more")


def test_run_folders_checkpoints_and_init_weights_it_cannot_use_are_one_error_line(tmp_path):
    """--out naming a file, a checkpoint cut short or of another program, and --init naming no
    model or the codec's integer weights were tracebacks (FileExistsError, torch's RuntimeError,
    KeyError, ModelError); --init's came after the run folder was made."""
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    photos = _photos(tmp_path, 3)
    note = tmp_path / "note.txt"
    note.write_text("mine")

    def refused(out, *extra) -> str:
        r = CliRunner().invoke(app, ["train", str(photos), "--out", str(out), *TINY, *extra])
        text = r.stderr.strip()
        assert r.exit_code == 1 and text.startswith("error: ") and "\n" not in text, r.output
        return text

    assert refused(note) == f"error: --out {note}: not a folder (it names the run's folder)"
    assert note.read_text() == "mine"
    assert refused(note / "run").startswith(f"error: --out {note / 'run'}: cannot make the folder (")
    assert refused(tmp_path / "run", "--init", str(tmp_path / "none.safetensors")).startswith(
        "error: --init: model "
    )
    words = "the codec's integer weights; training starts from float weights, such as"
    assert words in refused(tmp_path / "run", "--init", "uqdm-small")
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, ["train", str(note), "--out", str(tmp_path / "run"), *TINY])
    assert r.exit_code == 1 and r.stderr.strip() == f"error: {note}: not a folder"

    for name, checkpoint in (("cut", b"PK\x03\x04 cut short"), ("other", None)):
        run = tmp_path / name
        run.mkdir()
        if checkpoint is None:
            torch.save({"weights": torch.zeros(2)}, run / "checkpoint.pt")
        else:
            (run / "checkpoint.pt").write_bytes(checkpoint)
        kept = (run / "checkpoint.pt").read_bytes()
        text = refused(run)
        assert text.startswith(f"error: {run / 'checkpoint.pt'} is not a checkpoint")
        assert text.endswith("; move it away or use a new --out")
        assert (run / "checkpoint.pt").read_bytes() == kept and sorted(run.iterdir()) == [
            run / "checkpoint.pt"
        ]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--batch", "0"], "--batch must be at least 1, not 0"),
        (["--crop", "7"], "--crop must be a multiple of 16"),
        (["--lr", "nan"], "--lr must be a number from 0 up, not nan"),
        (["--ema", "2"], "--ema must be a number from 0 to below 1"),
        (["--decay-frac", "3"], "--decay-frac must be a number from 0 to 1"),
        (["--widths", "0", "16", "16", "16"], "widths must be at least 1 channel each"),
        (["--blocks-down", "1", "1"], "blocks_down needs 3 block counts for 4 widths"),
        (["--noise-levels", "1", "2"], "schedule levels must be strictly decreasing"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--name", "runs/a"], "--name must be 1 to 64 letters"),  # would be a folder in the run's
        (["--name", "x" * 65], "--name must be 1 to 64 letters"),  # more than a header holds
    ],
)
def test_values_a_run_cannot_use_are_one_error_line_and_make_no_run_folder(tmp_path, extra, words):
    """They were tracebacks from inside the first step (IndexError, ZeroDivisionError, torch's
    RuntimeError), or, for --steps -1 and the like, runs that trained nothing."""
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(_photos(tmp_path, 3)), "--out", str(run), *TINY, *extra])
    assert r.exit_code == 1, r.output
    text = r.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text and words in text, text
    assert not run.exists()


def test_train_help_says_what_each_option_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "crops per optimiser step (default: 4)" in text
    assert "(default: 48 96 128 192)" in text and "(default: 'uqdm-small')" in text

"""Shared fixtures: a small randomly initialised model (fast), converted once to the exact model
the codec runs (conversion calibrates in float, so it is done once and the result shared), and
synthetic images."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from uqdm_codec.exactmodel import ExactModel, from_float, save_exact
from uqdm_codec.model import UQDM, ModelConfig
from uqdm_codec.network import NetworkConfig


def make_tiny_model(seed: int = 0, name: str = "tiny-test") -> UQDM:
    torch.manual_seed(seed)
    config = ModelConfig(
        name=name,
        network=NetworkConfig(
            widths=(16, 16, 16, 16), blocks_down=(1, 1, 1), blocks_mid=1, blocks_up=(1, 1, 1), embed_dim=16
        ),
    )
    model = UQDM(config)
    with torch.no_grad():  # non-zero heads, so the priors depend on the input
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model() -> ExactModel:
    return from_float(make_tiny_model())


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tiny_model) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny-test.safetensors"
    save_exact(tiny_model, path)
    return str(path)


@pytest.fixture(scope="session")
def other_model_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("other") / "tiny-other.safetensors"
    save_exact(from_float(make_tiny_model(seed=1, name="tiny-other")), path)
    return str(path)


@pytest.fixture(scope="session")
def codec(tiny_model):
    from uqdm_codec.codec import Codec

    return Codec(tiny_model, device="cpu")


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with an edge and texture: photo-like enough to exercise every band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            128 + 80 * np.sin(xx / 7.0 + seed),
            100 + 0.5 * yy + 40 * (xx > w // 2),
            60 + 60 * np.cos(yy / 5.0) * np.sin(xx / 9.0),
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def image() -> np.ndarray:
    return synthetic_image(40, 56)


@pytest.fixture(scope="session")
def encoded(codec) -> tuple[np.ndarray, bytes]:
    img = synthetic_image(40, 56, seed=3)
    return img, codec.encode(img, seed=123)


@pytest.fixture
def uqd(tmp_path, tiny_model_path) -> Path:
    """photo.uqd, encoded by the command line (seed 5) from photo.png beside it, a 24x40 synthetic
    image."""
    from PIL import Image
    from typer.testing import CliRunner

    from uqdm_codec.cli import app

    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_image(24, 40, seed=9)).save(photo)
    result = CliRunner().invoke(app, ["encode", str(photo), "-m", tiny_model_path, "--seed", "5"])
    assert result.exit_code == 0, result.output
    return photo.with_suffix(".uqd")


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module: the scripts are not a package, but their functions are tested."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


D50 = (0.9642, 1.0, 0.8249)


def _xyz(values) -> bytes:
    return struct.pack(">3i", *(round(v * 65536) for v in values))


def _icc(kind: bytes, space: bytes, pcs: bytes, name: str, tag: tuple[bytes, bytes]) -> bytes:
    """An ICC v2 profile of device class `kind`, colour space `space` and PCS `pcs`, with a
    description, a D50 white point, a copyright and `tag` (signature, data), written by hand."""
    text = name.encode("ascii") + b"\0"
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 79),
        (b"wtpt", b"XYZ \0\0\0\0" + _xyz(D50)),
        tag,
        (b"cprt", b"text\0\0\0\0No copyright\0\0\0\0"),
    ]
    at = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, at, len(data))
        body += data
        at += len(data)
    header = struct.pack(">I4sI4s4s4s12s4s", at, b"none", 0x02100000, kind, space, pcs, b"\0" * 12, b"acsp")
    header += b"\0" * 28 + _xyz(D50)  # platform, flags, maker, model, attributes, intent; illuminant
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


def gray_icc_profile(gamma: float = 1.8, name: str = "Gray Gamma 1.8") -> bytes:
    """A valid grayscale display profile (a gamma curve): Pillow's ImageCms makes none."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    return _icc(b"mntr", b"GRAY", b"XYZ ", name, (b"kTRC", curve))


def cmyk_icc_profile(name: str = "Test CMYK") -> bytes:
    """A valid CMYK printer profile (an A2B0 lut8 to Lab over the 16 corners of the CMYK cube): the
    corners' colours are the naive ones (R = 255 - C - K) with a printer's black, no darker than 30,
    so that converting through it differs from Pillow's conversion. Pillow's ImageCms makes none."""
    from PIL import Image, ImageCms

    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]  # C slowest
    rgb = [
        [max(30 if k else 0, round(255 * (1 - min(1, v + k)))) for v in (c, m, y)] for c, m, y, k in corners
    ]
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = np.asarray(ImageCms.applyTransform(Image.fromarray(np.uint8([rgb]), "RGB"), to_lab))[0].astype(
        np.int16
    )
    lab[:, 1:] = (
        lab[:, 1:].astype(np.uint8).astype(np.int8).astype(np.int16) + 128
    )  # Pillow's a, b are signed; lut8's offset
    identity = bytes(range(256))
    lut = b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
    lut += identity * 4 + lab.astype(np.uint8).tobytes() + identity * 3
    return _icc(b"prtr", b"CMYK", b"Lab ", name, (b"A2B0", lut))

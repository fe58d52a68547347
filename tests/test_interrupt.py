"""Killing or interrupting encode/decode leaves no partial output and never touches the input."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_interrupted_run_leaves_nothing(tmp_path, tiny_model_path, sig, command):
    rng = np.random.default_rng(0)
    src = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (1024, 1536, 3)).astype(np.uint8)).save(src, compress_level=1)
    uqd = tmp_path / "big.uqd"
    if command == "decode":
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uqdm_codec.cli",
                "encode",
                str(src),
                "-m",
                tiny_model_path,
                "-o",
                str(uqd),
                "-q",
            ],
            check=True,
            capture_output=True,
        )
    target = tmp_path / ("out.uqd" if command == "encode" else "out.png")
    source = src if command == "encode" else uqd
    before = _sha(source)
    args = [
        sys.executable,
        "-m",
        "uqdm_codec.cli",
        command,
        str(source),
        "-m",
        tiny_model_path,
        "-o",
        str(target),
        "-q",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.5)  # past start-up, inside the work
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert _sha(source) == before
    if proc.returncode == 0:  # finished before the signal: the output must then be whole
        assert target.exists()
        return
    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL

"""Killing or interrupting encode/decode leaves no partial output and never touches the input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_cpu_time(pid: int, seconds: float, timeout: float = 60.0) -> None:
    """Wait until the process has used `seconds` of CPU (user + system), so that a signal lands
    inside the work rather than in interpreter start-up on a busy machine."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # not Linux: fall back to wall time
        time.sleep(seconds + 0.5)
        return
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            return  # already gone
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def big(tmp_path_factory, tiny_model_path) -> tuple[Path, Path]:
    """A 1.5-megapixel noise image and its file, made once for every case (the encode is most of
    this module's time); the cases only read them."""
    folder = tmp_path_factory.mktemp("big")
    src, uqd = folder / "big.png", folder / "big.uqd"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1024, 1536, 3)).astype(np.uint8)).save(src, compress_level=1)
    command = [sys.executable, "-m", "uqdm_codec.cli", "encode", str(src), "-m", tiny_model_path]
    subprocess.run([*command, "-o", str(uqd), "-q", "--fast"], check=True, capture_output=True)
    return src, uqd


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_interrupted_run_leaves_nothing(tmp_path, tiny_model_path, big, sig, command):
    src, uqd = big
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
    # a shell starts background jobs with SIGINT ignored, and a child inherits that (Python then
    # installs no KeyboardInterrupt handler): give the child SIGINT's default, as a terminal would
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    # past start-up and torch's import (about 3.5 s of CPU here), inside the work, however loaded
    # the machine: one CI run of 3 s got a child killed by the signal itself (-2) during the import
    _wait_for_cpu_time(proc.pid, 8.0)
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
        message = err.decode(errors="replace")[-2000:]
        assert proc.returncode == 130 and "interrupted" in message and "Traceback" not in message, message
    else:
        assert proc.returncode == -signal.SIGKILL

#!/usr/bin/env bash
# One call of the device tool (a lent GPU, at most 10 minutes): training runs side by side, and
# the portability check of files made on this project's CPU machine, decoded and encoded again on
# the GPU and on that machine's CPU (another CPU, another torch version).
#
# Here, first (docs/MODEL.md section 28):
#   python scripts/device_train.py pack ../shared/data/train --mib 32      # -> .carry/train
#   mkdir -p .carry/val && cp $(cat runs/held.txt) .carry/val/    # the 6 held-aside decision photos
#   cp ../shared/data/kodak/kodim0{1,2,3}.png .carry/kodak/        # portability (optional)
#   python scripts/portability.py .carry/kodak --out .carry/port --limit 3 --variant threads1
#   python scripts/portability.py .carry/kodak --out .carry/port-tail --tail --limit 2 --variant threads1
#   pip download constriction==0.5.0 (cp312 manylinux wheel, the device notes) -d .whl
# Then the device tool's `run` with carry [".carry", ".whl"], timeout_s about 60 s over the minutes
# (one call of 8.3 minutes fits a 15-minute lease with a fresh start: 548 s of command, 583 s held):
#   bash scripts/gpu_session.sh 8.3
# and afterwards `tar xf FILES_AT/logs.tar -C runs/gpuN`; the EMA weights are FILES_AT/NAME.safetensors.
# Environment: RUNS (the runs, below), COMMON (every run's arguments), PORTABILITY=1 and SPEED=1
# (the checks of section 28, left out by default: done on this device image and torch 2.11 already).
#
# What has run (docs/MODEL.md sections 28-29), nothing shipped:
#   uqdm 0.24: `base` (--lr 2e-4) and `wide` (--widths 64 128 128 192), batch 16, on a pack of
#     JPEG q95 re-encodes;
#   uqdm 0.25: RUNS='--run b64 "--batch 64 --lr 2e-4" --run b32 "--batch 32 --lr 1e-4"' on the
#     photos' own pixels: 31,680 and 21,056 crops, both within +-0.3 % of the shipped model.
# The small network's fine-tuning has stopped paying; the default run is now the capacity lever
# (section 9 item 2): the wider network, widened in place from the shipped weights, alone on the
# GPU at a batch that fills it (batch 128 of the shipped network: 1.1 s/step, 116 crops/s).
set -u
MINUTES=${1:-8.3}
PY=${PY:-python3}
[ -n "${NO_WHEEL:-}" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"

VAL=""
[ -d .carry/val ] && VAL="--val-dir .carry/val"
COMMON=${COMMON:-"--crop 256 --batch 64 --big-every 0 --warmup 50 --decay-by-time --decay-frac 0.3 --min-lr 1e-5
        --ema 0.997 --steps 1000000 --log-every 25 --eval-every 100 --eval-at-start --ckpt-every 100
        --corrections --filter-from 5 --raw-display 0.5 --seed 21 $VAL"}
# RUNS: the sweep's --run pairs (NAME "ARGS"), given to it word by word as the shell reads them.
RUNS=${RUNS:-'--run wide "--widths 64 128 128 192 --batch 96 --lr 2e-4"'}
eval "set -- $RUNS"
$PY scripts/device_train.py sweep --minutes "$MINUTES" --poll 30 --common "$COMMON" "$@" \
    > "$OUT/sweep.log" 2>&1 &
SWEEP=$!

# Portability while the runs train (so its seconds are not speed figures: the GPU is shared).
# PORTABILITY=1 and SPEED=1 add the checks of section 28 (docs/bench/gpu-h200).
if [ "${PORTABILITY:-0}" = 1 ]; then
    mkdir -p /tmp/pt
    for files in port port-tail; do
        [ -f .carry/$files/reference.json ] || continue
        for dev in ${DEVICES:-cuda cpu}; do
            $PY scripts/portability.py .carry/kodak --out .carry/$files --decode-only --variant plain \
                --device $dev $([ $dev = cuda ] && echo --reencode) 2>&1 | grep -v '^encoded'
        done
        mkdir -p /tmp/pt/$files && cp .carry/$files/summary-*.json /tmp/pt/$files/
    done
    tar cf "$OUT/portability.tar" -C /tmp/pt .
fi

wait $SWEEP
STATUS=$?
echo "sweep exit $STATUS"
tail -n 30 "$OUT/sweep.log"

# Speed on the GPU alone (the runs are done): encode and decode one Kodak image, after a warm-up.
[ "${SPEED:-0}" = 1 ] && [ -f .carry/kodak/kodim03.png ] && $PY - <<'PY' 2>&1 | tee "$OUT/speed.txt"
import time, uqdm_codec
from uqdm_codec.image_io import load_image
pixels = load_image(".carry/kodak/kodim03.png").pixels
for dev in ("cuda", "cpu"):
    codec = uqdm_codec.get_codec(None, dev)
    for attempt in ("warm-up", "timed") if dev == "cuda" else ("timed",):
        t = time.perf_counter(); data = codec.encode(pixels, seed=1); enc = time.perf_counter() - t
        t = time.perf_counter(); images = list(codec.iter_decode(data)); dec = time.perf_counter() - t
        print(f"{dev} {attempt}: encode {enc:.2f} s, full decode {dec:.2f} s, {len(data)} bytes", flush=True)
PY
exit $STATUS  # the runs' status, not the optional checks'

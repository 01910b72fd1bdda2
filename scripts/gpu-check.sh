#!/usr/bin/env bash
# scripts/gpu-check.sh: what only a machine with an NVIDIA GPU can show, as one short run
# (the tests use virtual GPUs). Run it from the repository's root after `make install`.
#
# 1. NVML finds the GPUs: `podsweep up` without --gpus hands out what NVML reports.
# 2. Two -g 0.5 pods run at once on one GPU: each sees that GPU in CUDA_VISIBLE_DEVICES and
#    its share in PODSWEEP_GPU_FRACTION, both wait for each other at a barrier (so they ran
#    together), and where PyTorch is installed each holds memory on the GPU while the other
#    does (nvidia-smi lists both processes).
# Exits 0 with "gpu-check: ok", else names what failed. VIRTUAL=1 runs step 2 on one virtual
# GPU instead, on any machine: a rehearsal of the script itself, not a check of a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
fail() { echo "gpu-check: $*" >&2; exit 1; }

if [ "${VIRTUAL:-0}" != 1 ]; then
  command -v nvidia-smi >/dev/null || fail "no nvidia-smi: this machine has no NVIDIA driver"
  # the [nvidia] extra: NVML's bindings (a machine that reaches no registry must have them)
  "$BIN/python" -c 'import pynvml' 2>/dev/null || "$BIN/pip" install -q 'nvidia-ml-py>=12' \
    || fail "no NVML bindings: pip install nvidia-ml-py (into .venv) where a registry is reachable"
fi
PODSWEEP_HOME=$(mktemp -d)
WORK=$(mktemp -d)
export PODSWEEP_HOME
trap '"$BIN/podsweep" down >/dev/null 2>&1 || true; rm -rf "$PODSWEEP_HOME" "$WORK"' EXIT

if [ "${VIRTUAL:-0}" = 1 ]; then
  "$BIN/podsweep" up --gpus 1 >/dev/null
  want=1
else
  "$BIN/podsweep" up >/dev/null
  want=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
  got=$("$BIN/python" -c 'from podsweep.runtime.gpus import discover_gpus
print(len(discover_gpus()))')
  [ "$got" = "$want" ] || fail "NVML found $got GPU(s), nvidia-smi lists $want"
fi
"$BIN/podsweep" status

# each pod: write what it sees, hold memory on its GPU if it can, meet the other, let go
cat > "$WORK/pod.sh" <<'POD'
set -eu
echo "$CUDA_VISIBLE_DEVICES $PODSWEEP_GPU_FRACTION" > "$1/seen-$PODSWEEP_POD_INDEX"
touch "$1/at-$PODSWEEP_POD_INDEX"
python3 - "$1" <<'PY' || true
import sys, time, pathlib
d = pathlib.Path(sys.argv[1])
try:
    import torch
except ImportError:
    torch = None
if torch is not None:       # with PyTorch, each pod holds 256 MiB on its GPU, or says why not
    try:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        (d / "held-{}".format(__import__("os").environ["PODSWEEP_POD_INDEX"])).touch()
    except Exception as exc:
        (d / "no-memory").write_text(str(exc))
deadline = time.time() + 60
while len(list(d.glob("at-*"))) < 2 and time.time() < deadline:
    time.sleep(0.1)
(d / "met").touch() if len(list(d.glob("at-*"))) == 2 else None
time.sleep(3)            # both hold their memory here: nvidia-smi is read now
PY
POD
"$BIN/podsweep" project create gpu-check --gpus "$want" >/dev/null
"$BIN/podsweep" submit halves -p gpu-check -g 0.5 --parallelism 2 --completions 2 \
  -- sh "$WORK/pod.sh" "$WORK" >/dev/null
for _ in $(seq 60); do
  [ -e "$WORK/met" ] && break
  sleep 1
done
[ -e "$WORK/met" ] || fail "the two -g 0.5 pods never ran at the same time"
[ "${VIRTUAL:-0}" = 1 ] || nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv
[ "${VIRTUAL:-0}" = 1 ] || [ ! -e "$WORK/no-memory" ] || fail "a pod could not hold memory on its GPU: $(cat "$WORK/no-memory")"
if [ "${VIRTUAL:-0}" = 1 ]; then
  echo "gpu-check: a virtual GPU: memory on it not checked"
elif ls "$WORK"/held-* >/dev/null 2>&1; then
  [ -e "$WORK/held-0" ] && [ -e "$WORK/held-1" ] || fail "only one pod held memory on the GPU"
  echo "gpu-check: both pods held 256 MiB on the GPU at once"
else
  echo "gpu-check: no PyTorch in the pods' Python: memory on the GPU not checked"
fi
seen0=$(cat "$WORK/seen-0") seen1=$(cat "$WORK/seen-1")
[ "$seen0" = "$seen1" ] || fail "the pods saw different GPUs: '$seen0' and '$seen1'"
[ "${seen0#* }" = "0.5" ] || fail "PODSWEEP_GPU_FRACTION was '${seen0#* }', not 0.5"
"$BIN/podsweep" get halves -p gpu-check
echo "gpu-check: ok (both pods on GPU ${seen0%% *} at once)"

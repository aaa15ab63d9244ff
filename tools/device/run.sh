#!/usr/bin/env bash
# The book's checks on a lent GPU machine, in stages, within one time budget; see README.md here.
#
#   bash tools/device/run.sh [STAGE ...]        (on the device machine, from the repository root)
#
# Stages, run in the order given (default: check smoke epochs part7):
#   check    versions, CUDA, every import the notebooks need, the CUDA unit tests (seconds)
#   smoke    every notebook under the smoke profile on CUDA (catches device bugs; minutes)
#   epochs   seconds per training epoch against the brief's H100 targets (benchmarks/bench_epochs.py)
#   part7    Part 7 under the full profile: its models pre-built (each timed), then the notebook
#   full:NB  any chapter NB (e.g. full:03_uncertainty) likewise
#   bench    benchmarks/bench_c3lt.py with the full profile's models on CUDA
# The budget is RNI_BUDGET seconds (default 540; keep it at most the run call's timeout_s - 60):
# each stage gets what is left, a stage that finds under 20 s left is skipped, and results.tar.gz
# and log.txt in $OUT are rewritten after every stage and every 60 s, so a cut-off run still
# returns what finished.
#
# Needs: .devsite/ and data/FashionMNIST/ carried (made by tools/device/kit.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
t_start=$(date +%s)
BUDGET=${RNI_BUDGET:-540}
DEV=${RNI_STAGE_DEVICE:-cuda}   # cpu only to try this script without a GPU
OUT=${OUT:-/tmp/rni_out_final}
RES=${RNI_RESULTS:-/tmp/rni_results}
rm -rf "$RES"; mkdir -p "$OUT" "$RES"   # results of this call only (models stay in data/checkpoints)
LOG="$RES/log.txt"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(check smoke epochs part7)

say() { echo "[$(( $(date +%s) - t_start )) s] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - t_start) )); }
pack() {  # results.tar.gz and log.txt into $OUT, replaced atomically (a packer also runs every 60 s)
    local tmp="$OUT/.results.$$.$RANDOM"
    tar -C "$RES" --exclude="./smoke/*.ipynb" -czf "$tmp" . 2>/dev/null && mv "$tmp" "$OUT/results.tar.gz"
    cp "$LOG" "$OUT/.log.$$" 2>/dev/null && mv "$OUT/.log.$$" "$OUT/log.txt"
    rm -f "$tmp"
}
record() { echo "{\"stage\": \"$1\", \"rc\": $2, \"seconds\": $3}" >> "$RES/stages.jsonl"; }

# --- environment: the device's Python holds torch and the scientific stack; the rest comes unpacked
# in .devsite (tools/device/kit.sh), read through PYTHONPATH
if [ ! -d .devsite/papermill ]; then say "no .devsite/: run tools/device/kit.sh here and carry .devsite"; pack; exit 2; fi
if ! ls data/FashionMNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1; then
    say "no data/FashionMNIST/raw: run tools/device/kit.sh here and carry data/FashionMNIST"; pack; exit 2; fi
export PYTHONPATH="$PWD/.devsite:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export RNI_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1 RNI_PROGRESS=text
export JUPYTER_RUNTIME_DIR=/tmp/rni_jupyter IPYTHONDIR=/tmp/rni_ipython MPLCONFIGDIR=/tmp/rni_mpl
# if the device tool ends the command before the budget does, the last minute's results still come back
# (its output goes nowhere, so that a sleep it leaves behind holds no pipe of the caller open)
( while sleep 60; do pack; done ) >/dev/null 2>&1 </dev/null &
packer=$!
trap 'pkill -P $packer 2>/dev/null; kill $packer 2>/dev/null' EXIT
say "$(python3 --version); budget ${BUDGET} s; stages: ${stages[*]}"

run_stage() {  # name, then the command
    local name=$1; shift
    local l; l=$(left)
    if [ "$l" -lt 20 ]; then say "SKIPPED $name (only ${l} s left)"; record "$name" '"skipped"' 0; return; fi
    say "START $name (${l} s left): $*"
    local t0; t0=$(date +%s)
    timeout -k 10 "$l" "$@" >>"$LOG" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "TIMED OUT $name after ${dt} s"
        sleep 2  # a Jupyter kernel left behind exits about a second after its runner (frees the GPU)
    else
        say "END $name rc=$rc after ${dt} s"
    fi
    record "$name" "$rc" "$dt"
    pack
}

for st in "${stages[@]}"; do
    case "$st" in
        check)
            run_stage check bash -ec '
                nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
                python3 -c "import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
                python3 -c "import papermill, nbformat, nbclient, ipykernel, ipywidgets, docutils, captum, ot, torchattacks, pyautoattack, foolbox, ttach, torchmetrics, skimage, sklearn, pandas, safetensors, robust_utils; print(\"imports ok\")"
                python3 -m pytest -q -p no:cacheprovider tests/test_voice.py -k cuda'
            ;;
        smoke)
            run_stage smoke python3 -m robust_utils.runner --profile smoke --device "$DEV" --keep-going \
                --output-dir "$RES/smoke" --summary "$RES/smoke_cuda.json"
            ;;
        epochs)
            run_stage epochs python3 benchmarks/bench_epochs.py --device "$DEV" --json "$RES/epochs.json"
            ;;
        part7|full:*)
            nb=${st#full:}; [ "$st" = part7 ] && nb=07_counterfactuals
            run_stage "full:$nb" python3 -m robust_utils.runner --profile full --device "$DEV" --prebuild --keep-going \
                --only "$nb" --output-dir "$RES/full" --summary "$RES/full_gpu_$nb.json"
            ;;
        bench)  # needs Part 7's full-profile models (stage part7): it would otherwise train them first
            run_stage bench python3 benchmarks/bench_c3lt.py --profile full --device "$DEV"
            ;;
        *) say "unknown stage $st (check, smoke, epochs, part7, full:NB, bench)" ;;
    esac
done
say "done"
pack

#!/usr/bin/env bash
# Every GPU check of issue 13 in one unattended command, under 5 minutes on an H100/H200-class machine.
#
#   bash benchmarks/gpu_checks.sh            # outputs under ${OUT:-benchmarks/results/gpu}
#
# Stages (each under `timeout`; a stage that fails or times out is recorded and the next one runs):
#   env       nvidia-smi and torch's view of the device                                     (10 s)
#   a_tests   the project's tests of the device path: tests/engine/test_cuda_path.py (CPU
#             against CUDA: same verdicts, scores within stated tolerances, passes on the
#             GPU) and the plugin session's default device                                   (70 s)
#   b_tutorial  benchmarks/gpu_tutorial_shape.py --repeat 3 (target: under 1.5 s, first run)  (100 s)
#   c_sweep   benchmarks/sweep.py --device cuda: ResNet-18 at 10 and 50 random sets of 20
#             images, and ResNet-50, ViT-B/16 and BERT-base at 10 x 20                       (110 s)
# Each stage writes STAGE.txt (its whole output); b and c also STAGE.json (their final JSON line; the
# sweep also prints each point's record as it completes, {"point": ...}, in c_sweep.txt);
# summary.txt lists every stage's exit status and seconds (124: timed out).  Exit status: 0 when
# every stage passed, 1 otherwise.  PYTHON picks the interpreter (default: python).
set -u

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DIR=${OUT:-benchmarks/results/gpu}
mkdir -p "$DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, whatever is installed
: > "$DIR/summary.txt"
failed=0

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit} s): $*" | tee -a "$DIR/summary.txt"
    timeout --kill-after=5 "$limit" "$@" > "$DIR/$name.txt" 2>&1
    local rc=$?
    grep '^{"benchmark"' "$DIR/$name.txt" | tail -n 1 > "$DIR/$name.json" || true
    [ -s "$DIR/$name.json" ] || rm -f "$DIR/$name.json"
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$DIR/summary.txt"
    tail -n 15 "$DIR/$name.txt"
    [ "$rc" -eq 0 ] || failed=1
}

stage env 10 bash -c "nvidia-smi; $PYTHON -c 'import torch; print(torch.__version__, torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, torch.get_num_threads())'"
stage a_tests 70 "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/engine/test_cuda_path.py \
    tests/session/test_session.py::test_the_plugin_session_is_the_assertions_session
stage b_tutorial 100 "$PYTHON" benchmarks/gpu_tutorial_shape.py --repeat 3
stage c_sweep 110 "$PYTHON" benchmarks/sweep.py --device cuda --random-sets 10,50 --examples 20 \
    --models resnet50,vit_b_16,bert_base --big-points 10x20 --point-timeout 45 --deadline 100 --json

echo "outputs in $DIR" | tee -a "$DIR/summary.txt"
exit $failed

#!/usr/bin/env bash
# The GPU measurements, in one script for a CUDA machine with PyTorch installed and no internet:
#   bash benchmarks/gpu.sh [CIFAR [--sweep]]     (from the repository root; at most GPU_BUDGET_S, 8 minutes by default)
# CIFAR: a folder holding cifar-10-batches-py/, or a cifar10-jpeg.tar.gz such as ../shared/data's (it
# is converted, into a temporary folder, by the prepare_cifar10.py beside it, or else by ../shared/data's);
# the tta and sweep stages need it.
# Results go to $FTPROP_RESULTS (default benchmarks/results): JSON + markdown per measurement,
# and a short table at the end. GPU_BUDGET_S (default 480) bounds the whole script; each stage has
# a cap (CAP below) and is cut at it or when the budget is spent. GPU_STAGES picks the stages, in
# any order (they run in the order below). By default "tests fused unit", whose caps fit the budget:
# the CUDA tests, then "fused" (the fused CUDA kernels of ftprop.cuda_kernels against the aten path,
# eager and graphed, the 6 main variants each timed both ways in the same rounds) and "unit". The
# others were measured in earlier runs: "step" (eager, every layer loss, without the fused kernels)
# and "graph" (graphed, aten only) in run 3, "bf16" (bf16 autocast + channels-last), "profile",
# "compile" (torch.compile, reduce-overhead), "tta" (the fast recipe's 30 epochs) and "sweep" (the
# recipe variants of SWEEP_FILE side by side until the budget is spent; or pass --sweep; SWEEP_NAME
# names its result). GPU_PLAN=1 prints the plan (stages, caps, budget) and exits, on any machine.
# Before anything runs, the Python modules the chosen stages import are looked for in $PYTHON
# (default python3): a missing one stops the script at once, naming it and the stages that need it
# (GPU_PLAN=1 only notes it). A stage skipped for want of time says so.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export FTPROP_RESULTS=${FTPROP_RESULTS:-benchmarks/results}
PY=${PYTHON:-python3}
CIFAR=${1:-}
[ "$CIFAR" = "--sweep" ] && { echo "usage: bash benchmarks/gpu.sh [CIFAR [--sweep]]: --sweep needs the data first"; exit 2; }
case "${2:-}" in ""|--sweep) ;; *) echo "usage: bash benchmarks/gpu.sh [CIFAR [--sweep]]: unknown option '$2'"; exit 2;; esac
[ $# -le 2 ] || { echo "usage: bash benchmarks/gpu.sh [CIFAR [--sweep]]: too many arguments"; exit 2; }
SWEEP_FILE=${SWEEP_FILE:-benchmarks/sweeps/convnet4_sign_fast.txt}
SWEEP_NAME=${SWEEP_NAME:-recipe_sweep_cuda}
STAGES=${GPU_STAGES:-tests fused unit}
[ "${2:-}" = "--sweep" ] && STAGES="$STAGES sweep"
BUDGET=${GPU_BUDGET_S:-480}
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "GPU_BUDGET_S must be a number of seconds, not '$BUDGET'"; exit 2; }
# Each stage's cap in seconds (the sum of its commands' limits; the sweep takes what is left)
declare -A CAP=([tests]=160 [fused]=220 [unit]=50 [step]=150 [bf16]=90 [graph]=90 [profile]=90
                [compile]=300 [tta]=240 [sweep]=0)
ORDER="tests fused step bf16 graph unit profile compile tta sweep"
planned=0
for s in $STAGES; do
    [ -n "${CAP[$s]+x}" ] || { echo "unknown stage '$s' in GPU_STAGES: choose from $ORDER"; exit 2; }
    planned=$((planned + CAP[$s]))
done
uses_data=""
for s in tta sweep; do [[ " $STAGES " == *" $s "* ]] && uses_data=$s; done
[ -n "$uses_data" ] && [ -z "$CIFAR" ] && { echo "stage '$uses_data' needs the CIFAR-10 data: bash benchmarks/gpu.sh CIFAR"; exit 2; }
[ -n "$CIFAR" ] && [ -z "$uses_data" ] && { echo "no chosen stage reads CIFAR: add tta to GPU_STAGES, or pass --sweep"; exit 2; }
[ -z "$CIFAR" ] || [ -e "$CIFAR" ] || { echo "CIFAR '$CIFAR' not found: give a folder holding cifar-10-batches-py/ or the cifar10-jpeg.tar.gz"; exit 2; }
echo "plan: stages '$STAGES', caps adding up to ${planned}s$([[ " $STAGES " == *" sweep "* ]] && echo " and the sweep in what is left"), budget ${BUDGET}s"
[ "$planned" -le "$BUDGET" ] || echo "warning: the caps exceed the budget, so the last stages may be cut or skipped: raise GPU_BUDGET_S or choose fewer GPU_STAGES"
want() { [[ " $STAGES " == *" $1 "* ]]; }
want sweep && [ $((BUDGET - planned)) -le 60 ] && echo "warning: if the other stages use their caps, the sweep gets" \
    "$((BUDGET - planned))s and is skipped (it needs more than 60s): raise GPU_BUDGET_S or choose fewer GPU_STAGES"
# The Python modules each stage imports (ftprop itself comes from src/); looked for, not imported (fast)
declare -A NEEDS=([torch]="every stage" [numpy]="every stage")
want tests && NEEDS[pytest]="tests"
for s in tta sweep; do
    if want $s; then NEEDS[matplotlib]="${NEEDS[matplotlib]:+${NEEDS[matplotlib]}, }$s"; NEEDS[tqdm]=${NEEDS[matplotlib]}; fi
done
[ -f "$CIFAR" ] && NEEDS[PIL]="$uses_data: prepare_cifar10.py decodes the tarball's JPEGs"
missing=$($PY -c '
import importlib.util, sys
def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # a broken or blocked package
        return False
print(" ".join(m for m in sys.argv[1:] if not found(m)))' "${!NEEDS[@]}" 2>/dev/null) || {
    echo "$([ -n "${GPU_PLAN:-}" ] && echo note || echo error): cannot run '$PY': set PYTHON to the Python that has torch"
    [ -n "${GPU_PLAN:-}" ] && exit 0 || exit 2
}
if [ -n "$missing" ]; then
    why=""; for m in $missing; do why="$why $m (${NEEDS[$m]});"; done
    if [ -n "${GPU_PLAN:-}" ]; then
        echo "note: $PY here lacks the Python module(s)${why%;}: the script itself would stop on such a machine"
    else
        echo "error: $PY lacks the Python module(s)${why%;}, which the chosen stages import. Install them into it" \
             "(pip install ${missing/PIL/pillow}; with no internet, from wheels brought along), set PYTHON to a Python that has" \
             "them, or drop those stages from GPU_STAGES. Nothing was run."
        exit 2
    fi
fi
[ -n "${GPU_PLAN:-}" ] && exit 0
mkdir -p "$FTPROP_RESULTS"
export GPU_SH_START=$(date +%s)
nvidia-smi -L || { echo "no NVIDIA GPU here"; exit 1; }
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" || {
    echo "error: $PY's torch cannot use the GPU (a CPU-only build, or a driver older than its CUDA): every stage would"\
         "fail or skip. Set PYTHON to a Python whose torch sees the GPU. Nothing was run."
    exit 1
}
left() { echo $((BUDGET - SECONDS)); }
# stage KEY TITLE: a stage starts; its commands end by its cap (the sweep's: the budget)
stage() {
    local cap=${CAP[$1]}; [ "$cap" -gt 0 ] || cap=$BUDGET
    STAGE_END=$((SECONDS + cap))
    echo; echo "=== $2 (at ${SECONDS}s of ${BUDGET}s; at most ${cap}s)"
}
# within() LIMIT CMD...: run CMD for at most LIMIT seconds, never past its stage's cap or the budget
within() {
    local l s; l=$(left); s=$((STAGE_END - SECONDS))
    [ "$s" -lt "$l" ] && l=$s
    [ "$l" -gt 20 ] || { echo "skipped: the stage's cap or the ${BUDGET}s budget is spent"; return 0; }
    local limit=$(( $1 < l ? $1 : l )) rc
    timeout -k 10 $limit "${@:2}"; rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then  # (137: also a kill by the kernel's out-of-memory killer)
        echo "cut at ${limit}s, its limit, the stage's cap or the budget (exit $rc): ${*:2:4} ..."
    fi
    return $rc
}

# 0. the CUDA paths are correct (tests/test_cuda.py is skipped on machines without a GPU)
if want tests; then
    stage tests "CUDA tests"
    # (the CPU side of the compiled test runs in CI; -rfEs names what failed or skipped)
    # (the fused kernels' tests first: the next stage times them)
    within 160 $PY -m pytest -q -rfEs -p no:cacheprovider tests/test_cuda_kernels.py tests/test_cuda.py \
        "tests/test_activations.py::test_compiled_units_equal_eager_for_every_loss[cuda]" 2>&1 | tail -15
fi

# 0b. the fused kernels (one pass per unit and direction) against the aten path: one unit at resnet18
#     size, then whole steps, eager (is jiterator's host cost paid back?) and replayed from CUDA graphs
#     (the GPU's work alone)
if want fused; then
    stage fused "fused kernels"
    within 40 $PY benchmarks/perf.py unit-time --force --device cuda --shape 256x64x56x56 --rounds 20 --variants quick \
        --fused --name unit_time_cuda_fused
    within 90 $PY benchmarks/perf.py step-time --force --device cuda --models convnet8,resnet18 --batch 256 \
        --variants quick --rounds 5 --steps 4 --target 1.05 --fused --name step_time_cuda_fused
    within 90 $PY benchmarks/perf.py step-time --force --device cuda --models convnet8,resnet18 --batch 256 \
        --variants quick --rounds 5 --steps 4 --target 1.05 --cuda-graph --fused --name step_time_cuda_graph_fused
fi

# 1. step time of hard-threshold training / ReLU training (target <= 1.05): eager fp32 with every
#    layer loss; eager bf16 autocast + channels-last with the 6 main variants; and every step
#    replayed from a CUDA graph (the GPU's work alone, without the host's)
if want step; then
    stage step "step time, fp32"
    within 150 $PY benchmarks/perf.py step-time --force --device cuda --models convnet8,resnet18 --batch 256 \
        --variants all --rounds 5 --steps 4 --target 1.05 --name step_time_cuda
fi
if want bf16; then
    stage bf16 "step time, bf16 + channels-last"
    within 90 $PY benchmarks/perf.py step-time --force --device cuda --models convnet8,resnet18 --batch 256 \
        --variants quick --rounds 5 --steps 4 --target 1.05 --bf16 --channels-last --name step_time_cuda_bf16_cl
fi
if want graph; then
    stage graph "step time, CUDA graphs"
    within 90 $PY benchmarks/perf.py step-time --force --device cuda --models convnet8,resnet18 --batch 256 \
        --variants quick --rounds 5 --steps 4 --target 1.05 --cuda-graph --name step_time_cuda_graph
fi

# 2. one unit's forward and backward against ReLU's on a resnet18-sized tensor (what each unit
#    costs the GPU), where the time goes (host-bound or GPU-bound), and torch.compile with CUDA graphs
#    (mode reduce-overhead: fused unit kernels and no host work per step) against compiled ReLU
if want unit; then
    stage unit "unit time"
    within 50 $PY benchmarks/perf.py unit-time --force --device cuda --shape 256x64x56x56 --rounds 30 --name unit_time_cuda
fi
if want profile; then
    stage profile "profile"
    within 90 $PY benchmarks/perf.py profile --force --device cuda --models convnet8,resnet18 --batch 256 --steps 5 \
        --variants "relu,sign linear,sign soft_hinge,sign saturated_hinge" --name profile_cuda
fi
if want compile; then
    stage compile "torch.compile"
    for model in convnet8 resnet18; do
        within 150 $PY benchmarks/perf.py compile --force --device cuda --models $model --speed-models $model \
            --batch 256 --variants "relu,sign soft_hinge,sign saturated_hinge,staircase3 soft_hinge" \
            --mode reduce-overhead --no-check --rounds 5 --steps 5 --name compile_cuda_$model
    done
fi

# 3. time to accuracy of the fast CIFAR-10 recipe (30 epochs), alone on the GPU
if [ -n "$uses_data" ]; then
    if want tta; then stage tta "time to accuracy"; else stage sweep "recipe sweep"; fi
    if [ -f "$CIFAR" ]; then  # the JPEG tarball: convert it once
        dir=$(mktemp -d) conv=$(mktemp -d)
        trap 'rm -rf "$dir" "$conv"' EXIT  # the converted data (about 180 MB) goes with the script
        prep=$(dirname "$CIFAR")/prepare_cifar10.py
        [ -f "$prep" ] || prep=../shared/data/prepare_cifar10.py
        # the script converts the tarball beside itself: a copy of it beside a link to the one given
        cp "$prep" "$conv/" && ln -s "$(cd "$(dirname "$CIFAR")" && pwd)/$(basename "$CIFAR")" "$conv/cifar10-jpeg.tar.gz" \
            || { echo "error: cannot find prepare_cifar10.py beside $CIFAR or in ../shared/data"; exit 1; }
        within 120 $PY "$conv/prepare_cifar10.py" "$dir" || exit 1
        CIFAR=$dir
    fi
    if want tta; then
        within 120 $PY benchmarks/time_to_accuracy.py --device cuda --data-root "$CIFAR" --name time_to_accuracy_cuda \
            --set train.tensorboard=false --force | grep -v "^ *[0-9]*%|"
    fi
    if want sweep && [ "$(left)" -gt 60 ]; then
        want tta && stage sweep "recipe sweep"
        $PY benchmarks/sweep.py --device cuda --data-root "$CIFAR" --name "$SWEEP_NAME" \
            --variants-file "$SWEEP_FILE" --deadline $(( $(left) - 20 )) --force  # a warm machine keeps runs/
    elif want sweep; then
        echo "skipped: the recipe sweep, since only $(left)s of the ${BUDGET}s budget is left (it needs more than" \
            "60s); raise GPU_BUDGET_S or choose fewer GPU_STAGES"
    fi
fi

# 4. the short table
echo; echo "=== summary (at ${SECONDS}s of ${BUDGET}s)"
$PY - <<'PYEOF'
import json, os, pathlib
res = pathlib.Path(os.environ["FTPROP_RESULTS"])
start = float(os.environ["GPU_SH_START"])


def fresh(f):  # written by this run: a skipped or cut stage must not show older results
    return f.is_file() and f.stat().st_mtime >= start


for name in ("step_time_cuda_fused", "step_time_cuda_graph_fused", "step_time_cuda", "step_time_cuda_bf16_cl",
             "step_time_cuda_graph"):
    f = res / f"{name}.json"
    if fresh(f):
        rows = json.loads(f.read_text())["rows"]
        worst = max(rows, key=lambda r: r["ratio_to_relu"])
        print(f"\n{name}: step time / ReLU step time (target <= 1.05); worst {worst['model']} {worst['variant']}")
        for r in rows:
            if "fused" in name or "soft_hinge" in r["variant"] or r["variant"] in ("relu", "saturated_relu") or r is worst:
                print(f"  {r['model']:10s} {r['variant']:30s} {r['median_ms']:8.2f} ms  x{r['ratio_to_relu']:.3f}")
for f in sorted(filter(fresh, res.glob("compile_cuda_*.json"))):
    print(f"\n{f.stem}: compiled step / compiled ReLU step")
    for r in json.loads(f.read_text())["rows"]:
        if "compiled_ms" in r:
            print(f"  {r['model']:10s} {r['variant']:30s} {r['compiled_ms']:8.2f} ms  x{r.get('compiled_vs_relu', 0):.3f}"
                  f"  (eager {r['eager_ms']:.2f} ms)")
f = res / "time_to_accuracy_cuda.json"
if fresh(f):
    d = json.loads(f.read_text())
    print(f"\ntime to {d['target_pct']:.1f}%: epoch {d['reached_epoch']} after {d['reached_after_s']} s; "
          f"best {100 * d['best_test_acc']:.2f}% in {d['epochs']} epochs ({d['wall_s']} s)")
PYEOF

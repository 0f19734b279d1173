"""Speed and memory of hard-threshold training against full-precision training.

  step-time  training-step time of each activation / layer loss divided by the same network
             with ReLU; one process, variants interleaved round by round, median of the
             per-round ratios (robust to the machine's drift).
  unit-time  forward + backward time of one activation module on one tensor, against ReLU's.
  allocator  step time with glibc keeping freed memory (what ftprop train does on CPU) against
             its default: pairs of step-time processes, one each way.
  footprint  resident memory over a long run of steps, freed memory kept against glibc's
             default: does the kept heap settle?
  profile    where a step's time goes, per operator.
  memory     bytes saved for backward per element by each activation unit, and the whole
             network's saved bytes against the ReLU network's.
  compile    torch.compile of the model (forward + backward graphs) for every model x
             activation: same losses as eager, and the eager / compiled step-time ratio.

Each writes JSON and markdown into benchmarks/results/ with the command, date, machine and
versions. Examples:
  python benchmarks/perf.py step-time --models mlp,convnet4 --batch 128
  python benchmarks/perf.py memory
  python benchmarks/perf.py compile --models mlp,convnet4
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no page-fault counts
    resource = None

import torch
import torch.nn.functional as F
from results_file import check_device, check_name, claim, write_result
from torch import nn

from ftprop import LOSSES, allocator, build_model, cuda_kernels
from ftprop.activations import HardThreshold
from ftprop.config import TrainConfig
from ftprop.engine import CUDA_GRAPH_MODES, WeightAverage, distillation_loss, twin_backward
from ftprop.runs import cpu_model, git_commit

RESULTS = Path(os.environ.get("FTPROP_RESULTS", Path(__file__).resolve().parent / "results"))
INPUT = {"mlp": (3, 32, 32), "convnet4": (3, 32, 32), "convnet8": (3, 32, 32), "resnet18_cifar": (3, 32, 32),
         "alexnet": (3, 224, 224), "resnet18": (3, 224, 224)}
MODEL_OPTS = {"mlp": {"hidden": [1024, 1024]}}


def variants(kind: str) -> list[tuple[str, dict]]:
    """(label, build_model activation kwargs); the first is the ReLU baseline."""
    out = [("relu", {"activation": "relu"}), ("saturated_relu", {"activation": "saturated_relu"})]
    if kind == "quick":
        return out + [("sign soft_hinge", {"activation": "sign", "loss": "soft_hinge"}),
                      ("sign saturated_hinge", {"activation": "sign", "loss": "saturated_hinge"}),
                      ("staircase3 soft_hinge", {"activation": "staircase", "loss": "soft_hinge"}),
                      ("staircase3 saturated_hinge", {"activation": "staircase", "loss": "saturated_hinge"})]
    for loss in LOSSES:
        out.append((f"sign {loss}", {"activation": "sign", "loss": loss}))
    for loss in LOSSES:
        out.append((f"staircase3 {loss}", {"activation": "staircase", "loss": loss}))
    out.append(("staircase3 per_step soft_hinge", {"activation": "staircase", "surrogate": "per_step"}))
    out.append(("step soft_hinge", {"activation": "step"}))
    out.append(("sign soft_hinge unweighted", {"activation": "sign", "weighted": False}))
    return out


def pick_variants(labels: str) -> list[tuple[str, dict]]:
    """The variants named in a comma-separated list, in variants("all") order; unknown names refused."""
    wanted = labels.split(",")
    known = [v[0] for v in variants("all")]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {unknown}; known: {known}")
    if len(set(wanted)) != len(wanted):
        raise SystemExit(f"error: --variants names a variant twice: {wanted}")
    return [v for v in variants("all") if v[0] in wanted]


def pick_ratio_variants(labels: str) -> list[tuple[str, dict]]:
    """:func:`pick_variants` for a run whose ratios are to ReLU's step: relu must be among them."""
    if "relu" not in labels.split(","):
        raise SystemExit("error: --variants: a list of variants must include relu, the base of every ratio")
    return pick_variants(labels)


def has_units(kw: dict) -> bool:
    """Whether a variant has hard-threshold units (which the fused kernels could serve)."""
    return kw["activation"] not in ("relu", "saturated_relu")


def rotated(items: list, r: int, rounds: int) -> list:
    """``items`` starting at a different place in each of ``rounds`` rounds: no variant is always
    timed first, and the starts spread over all of them."""
    first = r * len(items) // rounds
    return items[first:] + items[:first]


def machine(device: torch.device) -> dict:
    import numpy

    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "command": "python " + shlex.join(sys.argv), "git_commit": git_commit(), "cpu": cpu_model(),
            "keeps_freed_memory": allocator.kept()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_memory_gib=round(
                        torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    return info


def make(model: str, kw: dict, num_classes: int, device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    m = build_model(model, num_classes=num_classes, input_shape=INPUT[model], **MODEL_OPTS.get(model, {}), **kw)
    m = m.to(device)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def batch(model: str, n: int, num_classes: int, device, channels_last: bool):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *INPUT[model], generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, num_classes, (n,), generator=g).to(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults() -> int:
    """The process's minor page faults so far (0 where the resource module is missing: Windows)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


class TwinnedStep:
    """The engine's step with ``train.twin`` (``twin_backward``, then the network's forward and
    backward on the labels and the twin's outputs, 0.5 CE + 0.5 KL at T = 1, the mix measured in
    benchmarks/README.md), then both optimisers' steps."""

    def __init__(self, model: nn.Module, twin: nn.Module, twin_opt, bf16: bool) -> None:
        self.model, self.twin, self.twin_opt = model, twin, twin_opt
        self.settings = TrainConfig(distill_weight=0.5, distill_temperature=1.0, bf16=bf16)

    def run(self, opt, x, y) -> torch.Tensor:
        teacher_out, _ = twin_backward(self.twin, self.twin_opt, x, y, self.settings)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.settings.bf16):
            out = self.model(x)
        loss = distillation_loss(out, y, teacher_out, self.settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.twin_opt.step()
        return loss


def train_step(model, opt, x, y, bf16: bool) -> torch.Tensor:
    if isinstance(model, TwinnedStep):
        return model.run(opt, x, y)
    if isinstance(model, GraphedStep):
        model.graph.replay()
        return model.loss
    if isinstance(model, CompiledStep) and model.cudagraphs:
        torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    loss = F.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    model.step() if isinstance(model, CompiledStep) else opt.step()
    return loss


class GraphedStep:
    """A whole training step (forward, backward, Adam update) captured once in a CUDA graph and
    replayed: no Python and no kernel launches per step, so a step costs the GPU's work alone.
    This is how host-bound training is run fast (PyTorch's whole-network capture); the optimiser
    must be made with capturable=True.

    ``pool`` (a :func:`torch.cuda.graph_pool_handle`) is shared by the graphs of one model's variants:
    each graph's temporaries (the activations, about 12 GB for resnet18 at batch 256) are then reused
    by the next capture instead of held per graph, which ten graphs could not fit on an 80 GB GPU.
    That is safe here: the graphs never run at once; what outlives a capture (its gradients and loss)
    stays allocated, so no later capture takes it; and a graph that finds its gradients or loss
    overwritten by another graph's temporaries writes them anew before it reads them. So a graph's
    ``loss`` and its parameters' ``.grad`` hold its own values only until another graph of the pool
    replays (nothing here reads them); parameters, buffers, Adam's state and the batch live outside it."""

    def __init__(self, model: nn.Module, opt, x, y, bf16: bool, pool=None) -> None:
        # the graph writes into these tensors' memory on every replay (BN running statistics,
        # parameters, optimiser state, inputs): they must outlive it
        self.model, self.opt, self.x, self.y = model, opt, x, y
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cudnn's kernel choice, the units' cached constants)
            for _ in range(3):
                train_step(model, opt, x, y, bf16)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):  # the eager step, recorded: its zero_grad(set_to_none=True)
            self.loss = train_step(model, opt, x, y, bf16)  # makes backward write the grads in the graph's pool


def time_steps(model, opt, x, y, steps: int, bf16: bool, device, average: WeightAverage | None = None,
               faults: list | None = None) -> float:
    """Seconds per step over ``steps`` steps; the minor page faults per step appended to ``faults``."""
    sync(device)
    f0, t0 = minor_faults(), time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, x, y, bf16)
        if average is not None:  # as the engine does after each optimiser step (train.ema_decay)
            average.update()
    sync(device)
    t1 = time.perf_counter()
    if faults is not None:
        faults.append((minor_faults() - f0) / steps)
    return (t1 - t0) / steps


def settings(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}


def write(name: str, payload: dict, table: list[str], notes: list[str], quiet: bool = False) -> None:
    m = payload["machine"]
    head = [f"# {name}", "", f"- command: `{m['command']}`", f"- date: {m['date']}",
            f"- machine: {m.get('gpu', m['cpu'])}, {m['cpu_count']} CPU cores, torch {m['torch']} "
            f"({m['torch_threads']} threads), Python {m['python']}, device `{m['device']}`",
            f"- git: {m.get('git_commit')}"]
    if m.get("keeps_freed_memory"):
        head.append("- glibc keeps freed memory for reuse (`--keep-freed-memory`, as `ftprop train` on CPU)")
    head.append("")
    write_result(RESULTS / name, payload, "\n".join(head + table + [""] + notes))
    if not quiet:
        print("\n".join(table + [""] + notes))


# ---- step time -------------------------------------------------------------------------

def quartiles(ratios: list[float]) -> str:
    """The first and third quartiles of per-round ratios, as "q1–q3" ("-" with fewer than 2 rounds)."""
    if len(ratios) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")  # within the data, whatever the count
    return f"{q1:.3f}–{q3:.3f}"


def step_time_rows(args, model: str, device, listed, extras) -> list[dict]:
    """One model's rows of ``step-time``: every variant built, then timed in interleaved rounds."""
    rows = []
    kind = args.variants if args.variants != "auto" else ("all" if model in ("mlp", "convnet4") else "quick")
    vs = listed or variants(kind)
    x, y = batch(model, args.batch, 10, device, args.channels_last)
    pool = torch.cuda.graph_pool_handle() if args.cuda_graph else None  # one per model (GraphedStep)
    built = []
    for label, kw in vs:
        for averaged, twinned in extras:
            for fused in (False, True) if args.fused and has_units(kw) else (False,):
                cuda_kernels.use_fused_kernels(fused)  # a CUDA graph records the kernels chosen now
                m = make(model, kw, 10, device, args.channels_last)
                opt = torch.optim.Adam(m.parameters(), 1e-4, capturable=args.cuda_graph)
                if args.cuda_graph:
                    m = GraphedStep(m, opt, x, y, args.bf16, pool)
                avg = WeightAverage(m, args.with_average) if averaged else None
                if twinned:
                    twin = make(model, {"activation": args.with_twin}, 10, device, args.channels_last)
                    m = TwinnedStep(m, twin, torch.optim.Adam(twin.parameters(), 1e-4), args.bf16)
                time_steps(m, opt, x, y, 2, args.bf16, device, avg)  # warm-up
                built.append((label + (" + average" if averaged else "") + (" + twin" if twinned else "")
                              + (" + fused" if fused else ""), m, opt, avg, fused))
    # enough steps per timing window that the timer and one-off stalls stay small against it
    _, m0, opt0, *_ = built[0]
    cuda_kernels.use_fused_kernels(False)
    steps = max(args.steps, math.ceil(args.min_window / time_steps(m0, opt0, x, y, 2, args.bf16, device)))
    per_round: dict[str, list[float]] = {label: [] for label, *_ in built}
    faults: dict[str, list[float]] = {label: [] for label, *_ in built}
    for r in range(args.rounds):
        for label, m, opt, avg, fused in rotated(built, r, args.rounds):
            cuda_kernels.use_fused_kernels(fused)
            per_round[label].append(time_steps(m, opt, x, y, steps, args.bf16, device, avg, faults[label]))
    cuda_kernels.use_fused_kernels(False)
    base = per_round["relu"]
    for label in per_round:
        ratios = [a / b for a, b in zip(per_round[label], base)]
        rows.append({"model": model, "variant": label, "batch": args.batch, "steps_per_window": steps,
                     "median_ms": 1e3 * statistics.median(per_round[label]),
                     "ratio_to_relu": statistics.median(ratios), "ratios": ratios,
                     "ratio_of_fastest": min(per_round[label]) / min(base),
                     "faults_per_step": statistics.median(faults[label])})
        print(f"{model:15s} {label:34s} {rows[-1]['median_ms']:9.2f} ms  x{rows[-1]['ratio_to_relu']:.3f}",
              flush=True)
    return rows


def cmd_step_time(args) -> None:
    device = torch.device(args.device)
    listed = None  # --variants as a list of labels: checked before anything is built
    if args.variants not in ("auto", "all", "quick"):
        listed = pick_ratio_variants(args.variants)
    if args.cuda_graph and device.type != "cuda":
        raise SystemExit("--cuda-graph replays CUDA graphs: it needs --device cuda")
    if not 0.0 <= args.with_average < 1.0:
        raise SystemExit(f"--with-average is a decay in [0, 1) (0: off), got {args.with_average}")
    if args.with_average and args.cuda_graph:
        raise SystemExit("--with-average times the engine's eager weight average: leave out --cuda-graph")
    if args.with_twin and args.cuda_graph:
        raise SystemExit("--with-twin times the engine's eager step with a twin: leave out --cuda-graph")
    if args.with_twin:
        from ftprop.activations import canonical_activation

        try:
            canonical_activation(args.with_twin)
        except ValueError as err:
            raise SystemExit(f"--with-twin {args.with_twin!r}: {err}") from None
    check_fused(args, device)
    torch.backends.cudnn.benchmark = True  # the usual setting for fixed shapes; the warm-up picks the kernels
    extras = [(False, False)] + ([(True, False)] if args.with_average else []) + (
        [(False, True)] if args.with_twin else [])  # the plain step, and each addition alone
    rows, missing = [], []
    for model in args.models.split(","):
        try:
            rows += step_time_rows(args, model, device, listed, extras)
            continue
        except torch.cuda.OutOfMemoryError as err:  # the rows of the other models are still written
            cuda_kernels.use_fused_kernels(False)
            missing.append(f"{model}: out of GPU memory with {args.batch} examples per batch "
                           f"({(str(err).splitlines() or [repr(err)])[0]}), not measured")
            print("error:", missing[-1], flush=True)
        gc.collect()  # after the except block, whose traceback held the model's graphs and networks
        torch.cuda.empty_cache()
    if not rows:
        raise SystemExit("error: nothing measured: " + "; ".join(missing))
    target = args.target
    table = ["| model | activation / layer loss | step (ms) | / ReLU step | middle half of rounds | "
             f"fastest / fastest ReLU | target <= {target} | page faults / step |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = ("base" if r["variant"] == "relu" else "-" if " + twin" in r["variant"]  # two networks' steps
              else "yes" if r["ratio_to_relu"] <= target else "**no**")
        table.append(f"| {r['model']} | {r['variant']} | {r['median_ms']:.2f} | {r['ratio_to_relu']:.3f} | "
                     f"{quartiles(r['ratios'])} | {r['ratio_of_fastest']:.3f} | {ok} | {r['faults_per_step']:.0f} |")
    notes = [f"Batch {args.batch}, Adam, {args.rounds} rounds per variant of at least {args.steps} steps and "
             f"{args.min_window:g} s each (steps per model in the JSON), variants interleaved and rotated every round; "
             f"ratio = median over rounds of (variant step / ReLU step of the same round); the middle half of "
             f"the rounds' ratios (first to third quartile) says how much one round moves. On a shared machine "
             f"other work only ever adds time, so the ratio of each variant's fastest round to ReLU's fastest is a "
             f"second, less disturbed reading. "
             + ("saturated_relu (no ftprop code) shows the noise floor. "
                if any(r["variant"] == "saturated_relu" for r in rows) else "")
             + f"Page faults: the process's minor page faults per step (median over "
             f"rounds), fresh memory the step touched. "
             f"bf16 autocast: {args.bf16}; channels-last: {args.channels_last}; "
             + (f"'+ average': the same step followed by the engine's weight-average update "
                f"(train.ema_decay = {args.with_average:g}); " if args.with_average else "")
             + (f"'+ twin': the engine's step with train.twin = {args.with_twin!r} (the twin's forward and "
                f"backward on the labels, the network's on 0.5 CE + 0.5 KL from the twin's outputs, both "
                f"optimisers' steps), two networks' steps, so the target does not apply to it (its cost against "
                f"the same variant's plain step: the quotient of the two rows' ratios); " if args.with_twin else "")
             + ("each step replayed from a CUDA graph (whole step captured, Adam capturable=True): the ratio of "
                "the GPU's work alone, without host overhead." if args.cuda_graph else "eager.")]
    notes += [f"**Not measured**: {line}." for line in missing]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if resource is not None else None  # KiB on Linux
    write(args.name, {"machine": machine(device), "rows": rows, "args": settings(args), "peak_rss_mib": peak,
                      "not_measured": missing}, table, notes)


# ---- allocator -------------------------------------------------------------------------

def child(tmp: str, name: str, keep: bool, argv: list[str]) -> dict:
    """Run this script's subcommand ``argv`` in a fresh process (with ``--keep-freed-memory`` if
    ``keep``), its result files going to ``tmp``; its JSON. A failed child stops the comparison
    with the end of what it printed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--name", name] + (
        ["--keep-freed-memory"] if keep else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "FTPROP_RESULTS": tmp})
    result = Path(tmp) / f"{name}.json"
    if out.returncode != 0 or not result.exists():
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"a child process failed (exit {out.returncode}"
                         f"{'' if out.returncode else ', no result file'}): "
                         f"FTPROP_RESULTS={tmp} {shlex.join(cmd)}\n{tail}")
    return json.loads(result.read_text())


def both_ways(tmp: str, k: int, argv: list[str], what: str) -> list[tuple[bool, dict]]:
    """The ``k``-th pair of :func:`child` processes running ``argv``, one with glibc's default
    malloc and one keeping freed memory, the order alternating with ``k``: (keep, JSON) as run."""
    out = []
    for keep in (False, True) if k % 2 == 0 else (True, False):
        print(f"{what}: {'freed memory kept' if keep else 'glibc default'}", flush=True)
        out.append((keep, child(tmp, f"{'kept' if keep else 'default'}_{k}", keep, argv)))
    return out


def refuse_unless_glibc_cpu(device: str, what: str) -> None:
    """An allocator comparison needs CPU tensors and glibc's malloc (the setting is its)."""
    if device != "cpu":
        raise SystemExit("--device: the allocator setting is glibc's malloc, for CPU tensors: use --device cpu")
    if not allocator.can_keep_freed_memory():
        raise SystemExit(f"the {what} comparison needs glibc's malloc; this C library is not glibc")


def cmd_allocator(args) -> None:
    """Step time with glibc keeping freed memory (ftprop.allocator, what ``ftprop train`` does on
    CPU) against glibc's default. The setting cannot be undone within a process, so this runs
    ``--pairs`` pairs of step-time processes, one each way, the order alternating from pair to pair."""
    pick_ratio_variants(args.variants)  # refused before anything runs: no relu, or an unknown label
    refuse_unless_glibc_cpu(args.device, "allocator")
    runs: dict[bool, list[dict]] = {False: [], True: []}
    argv = ["step-time", "--models", args.models, "--variants", args.variants, "--rounds", str(args.rounds),
            "--steps", str(args.steps), "--batch", str(args.batch), "--min-window", str(args.min_window),
            "--device", "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.pairs):
            for keep, run in both_ways(tmp, k, argv, f"pair {k + 1}/{args.pairs}"):
                runs[keep].append(run)
    rows = []
    for i, row in enumerate(runs[False][0]["rows"]):
        per = {keep: [run["rows"][i] for run in runs[keep]] for keep in (False, True)}
        ms = {keep: [r["median_ms"] for r in per[keep]] for keep in per}
        rows.append({"model": row["model"], "variant": row["variant"],
                     "median_ms": {str(keep).lower(): statistics.median(ms[keep]) for keep in ms},
                     "kept_over_default": statistics.median(a / b for a, b in zip(ms[True], ms[False])),
                     "ratio_to_relu": {str(keep).lower(): statistics.median(x for r in per[keep] for x in r["ratios"])
                                       for keep in per},
                     "faults_per_step": {str(keep).lower(): statistics.median(r["faults_per_step"] for r in per[keep])
                                         for keep in per}})
    peak = {str(keep).lower(): statistics.median(run["peak_rss_mib"] for run in runs[keep]) for keep in runs}
    table = ["| model | activation / layer loss | step (ms), default | step (ms), kept | kept / default | "
             "/ ReLU step, default | / ReLU step, kept | page faults / step, default / kept |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['variant']} | {r['median_ms']['false']:.2f} | "
                     f"{r['median_ms']['true']:.2f} | "
                     f"{r['kept_over_default']:.3f} | {r['ratio_to_relu']['false']:.3f} | "
                     f"{r['ratio_to_relu']['true']:.3f} | {r['faults_per_step']['false']:.0f} / "
                     f"{r['faults_per_step']['true']:.0f} |")
    notes = [f"{args.pairs} pairs of `perf.py step-time` processes (batch {args.batch}, {args.rounds} rounds of at "
             f"least {args.steps} steps per variant each), one with glibc's default malloc and one with "
             f"`--keep-freed-memory` (ftprop.allocator: M_MMAP_MAX = 0, M_TRIM_THRESHOLD = -1, what `ftprop train` "
             f"does on CPU), the pair's order alternating. Step: median over the processes of each one's median; "
             f"kept / default: median over the pairs of the ratio of the two processes' steps (absolute times, "
             f"so the machine's drift between processes is in it); / ReLU step: median of the per-round ratios "
             f"of all processes of that kind (one process each: drift-free); page faults: minor faults per step. "
             f"Peak resident memory of a process (median): {peak['false']:.0f} MiB default, "
             f"{peak['true']:.0f} MiB kept."]
    write(args.name, {"machine": machine(torch.device("cpu")), "rows": rows, "peak_rss_mib": peak,
                      "processes": {str(keep).lower(): runs[keep] for keep in runs}, "args": settings(args)},
          table, notes)


# ---- footprint -------------------------------------------------------------------------

def resident_mib() -> float | None:
    """The process's resident memory now, in MiB (None without /proc/self/statm: not Linux)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def footprint_one(args) -> None:
    """One process of :func:`cmd_footprint`: one model and variant trained ``--steps`` Adam steps on
    a fresh random batch each step (as from a data loader) and, every ``--eval-every`` steps, two
    batches of 4 x batch evaluated without gradients (the engine's evaluation batch); resident
    memory, time and page faults sampled every ``--every`` steps."""
    (label, kw), = pick_variants(args.variants)
    model, cpu = args.models, torch.device("cpu")
    m = make(model, kw, 10, cpu, False)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    samples = [{"step": 0, "rss_mib": resident_mib(), "seconds": 0.0, "faults": 0, "evaluations": 0}]
    f0, t0, evaluations = minor_faults(), time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        train_step(m, opt, torch.randn(args.batch, *INPUT[model], generator=g),
                   torch.randint(0, 10, (args.batch,), generator=g), False)
        if args.eval_every and step % args.eval_every == 0:
            m.eval()
            with torch.no_grad():
                for _ in range(2):
                    m(torch.randn(4 * args.batch, *INPUT[model], generator=g))
            m.train()
            evaluations += 1
        if step % args.every == 0 or step == args.steps:
            samples.append({"step": step, "rss_mib": resident_mib(), "seconds": time.perf_counter() - t0,
                            "faults": minor_faults() - f0, "evaluations": evaluations})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write(args.name, {"machine": machine(cpu), "model": model, "variant": label, "samples": samples,
                      "peak_rss_mib": peak}, [], [], quiet=True)


def footprint_row(run: dict) -> dict:
    """What one process's samples say: memory after building, early, halfway and at the end, its
    growth over the second half, time and page faults per step."""
    samples = run["samples"]
    end = samples[-1]
    half = min(samples, key=lambda s: abs(s["step"] - end["step"] / 2))
    per_step = lambda key, a, b: (b[key] - a[key]) / max(b["step"] - a["step"], 1)  # noqa: E731
    return {"model": run["model"], "variant": run["variant"], "kept": run["machine"]["keeps_freed_memory"],
            "built_mib": samples[0]["rss_mib"], "first_mib": samples[1]["rss_mib"], "first_step": samples[1]["step"],
            "half_mib": half["rss_mib"], "half_step": half["step"], "end_mib": end["rss_mib"],
            "end_step": end["step"], "evaluations": end["evaluations"],
            "most_sampled_mib": max(s["rss_mib"] for s in samples),
            "peak_rss_mib": run["peak_rss_mib"], "second_half_growth_mib": end["rss_mib"] - half["rss_mib"],
            "ms_per_step": 1000 * per_step("seconds", samples[0], end),
            "faults_per_step_second_half": per_step("faults", half, end)}


def cmd_footprint(args) -> None:
    """Resident memory over a long run of training steps with glibc keeping freed memory against
    its default: a fresh process each way for every model and variant (the setting cannot be
    undone), the order alternating. Does the kept heap settle, or keep growing?"""
    if args.eval_every < 0:
        raise SystemExit(f"--eval-every must be >= 0 (0: no evaluation), got {args.eval_every}")
    if args.steps < 2 * args.every:
        raise SystemExit(f"--steps {args.steps} gives fewer than three samples at --every {args.every}: "
                         f"give --steps at least twice --every")
    chosen = [label for label, _ in pick_variants(args.variants)]
    refuse_unless_glibc_cpu(args.device, "footprint")
    if resident_mib() is None:
        raise SystemExit("the footprint comparison reads /proc/self/statm, which this system does not have")
    if args.one:
        if "," in args.models or len(chosen) != 1:
            raise SystemExit("--one runs one model and one variant")
        return footprint_one(args)
    if args.keep_freed_memory:
        raise SystemExit("--keep-freed-memory: footprint runs one process each way itself; leave it out")
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (model, label) in enumerate((m, v) for m in args.models.split(",") for v in chosen):
            argv = ["footprint", "--one", "--models", model, "--variants", label, "--steps", str(args.steps),
                    "--every", str(args.every), "--eval-every", str(args.eval_every), "--batch", str(args.batch)]
            for _, run in both_ways(tmp, i, argv, f"{model}, {label}"):
                runs.append(run)
                rows.append(footprint_row(run))
    table = ["| model | activation / layer loss | malloc | MiB built | early | halfway | end | most sampled "
             "| peak | growth, second half | ms / step | page faults / step, second half |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['variant']} | {'kept' if r['kept'] else 'default'} | "
                     f"{r['built_mib']:.0f} | {r['first_mib']:.0f} (step {r['first_step']}) | "
                     f"{r['half_mib']:.0f} (step {r['half_step']}) | {r['end_mib']:.0f} (step {r['end_step']}) | "
                     f"{r['most_sampled_mib']:.0f} | {r['peak_rss_mib']:.0f} | {r['second_half_growth_mib']:+.0f} | "
                     f"{r['ms_per_step']:.1f} | {r['faults_per_step_second_half']:.0f} |")
    notes = [f"One fresh process per row: {args.steps} Adam steps at batch {args.batch} on a new random batch "
             f"each step" + (f", and every {args.eval_every} steps two batches of {4 * args.batch} evaluated "
                             f"without gradients (the engine's evaluation batch)"
                             if 0 < args.eval_every <= args.steps else "")
             + f"; resident memory (/proc/self/statm) sampled every {args.every} steps. kept: glibc keeps freed "
             f"memory (`--keep-freed-memory`, ftprop.allocator, what `ftprop train` does on CPU); default: glibc's "
             f"own policy. Peak: the process's maximum resident memory (getrusage). ms / step includes the "
             f"evaluations and the batches' making; the two processes of a pair ran one after the other, so "
             f"their times differ by the machine's drift too."]
    write(args.name, {"machine": machine(torch.device("cpu")), "rows": rows, "processes": runs,
                      "args": settings(args)}, table, notes)


# ---- unit time -------------------------------------------------------------------------

def check_fused(args, device) -> None:
    """--fused where the fused kernels do not compile or run (they are tried on the GPU first): said,
    and only the aten path is timed (args.fused, in the results, reads False)."""
    if args.fused and device.type == "cuda":
        try:
            cuda_kernels.use_fused_kernels(True)
        except RuntimeError as err:
            print(f"warning: {err}: --fused dropped, the aten path is timed alone", flush=True)
            args.fused = False
        cuda_kernels.use_fused_kernels(False)


def cmd_unit_time(args) -> None:
    """Forward and backward time of one activation module on one tensor, against ReLU's."""
    from ftprop import make_activation

    device = torch.device(args.device)
    check_fused(args, device)
    shape = tuple(int(v) for v in args.shape.split("x"))
    x0 = torch.randn(*shape, device=device)
    g0 = torch.randn(*shape, device=device)
    chosen = [(label + (" + fused" if fused else ""), fused,
               make_activation(kw["activation"], **{k: v for k, v in kw.items() if k != "activation"}))
              for label, kw in variants(args.variants)
              for fused in ((False, True) if args.fused and has_units(kw) else (False,))]
    times = {label: ([], []) for label, *_ in chosen}
    faults = {label: ([], []) for label, *_ in chosen}  # minor page faults: fresh memory the call touched
    for _, fused, mod in chosen:  # warm-up: one-off costs (the fused kernels' compilation) stay out of the rounds
        cuda_kernels.use_fused_kernels(fused)
        x = x0.clone().requires_grad_()
        mod(x).backward(g0)
    for r in range(args.rounds):
        for label, fused, mod in rotated(chosen, r, args.rounds):
            cuda_kernels.use_fused_kernels(fused)
            x = x0.clone().requires_grad_()
            sync(device)
            f0, t0 = minor_faults(), time.perf_counter()
            y = mod(x)
            sync(device)
            t1 = time.perf_counter()
            f1 = minor_faults()  # read between the two timed calls, in neither
            t1b = time.perf_counter()
            y.backward(g0)
            sync(device)
            t2, f2 = time.perf_counter(), minor_faults()
            times[label][0].append(t1 - t0)
            times[label][1].append(t2 - t1b)
            faults[label][0].append(f1 - f0)
            faults[label][1].append(f2 - f1)
    cuda_kernels.use_fused_kernels(False)
    rows = []
    for label, (fw, bw) in times.items():
        rows.append({"variant": label, "shape": list(shape), "forward_ms": 1e3 * statistics.median(fw),
                     "backward_ms": 1e3 * statistics.median(bw),
                     "forward_faults": statistics.median(faults[label][0]),
                     "backward_faults": statistics.median(faults[label][1])})
    base = rows[0]["forward_ms"] + rows[0]["backward_ms"]
    table = ["| activation / layer loss | forward (ms) | backward (ms) | total / ReLU's "
             "| page faults forward / backward |", "|---|---|---|---|---|"]
    for r in rows:
        r["ratio_to_relu"] = (r["forward_ms"] + r["backward_ms"]) / base
        table.append(f"| {r['variant']} | {r['forward_ms']:.3g} | {r['backward_ms']:.3g} | {r['ratio_to_relu']:.2f} | "
                     f"{r['forward_faults']:.0f} / {r['backward_faults']:.0f} |")
    notes = [f"One module on a {args.shape} float32 tensor (fresh copy each time, so allocation is included), "
             f"medians of {args.rounds} interleaved rounds. This is the units' own cost; in a network it is diluted by "
             "the convolutions and matrix products (see step-time). Page faults: the process's minor page faults "
             "during the call (median), i.e. fresh pages of memory it touched; on this kind of machine each fresh "
             "tensor the size of the input costs about as much as a few passes over it, and whether the allocator "
             "reuses memory or maps fresh pages moves a row's time by a few ms between runs."]
    write(args.name, {"machine": machine(device), "rows": rows, "args": settings(args)},
          table, notes)


# ---- profile ---------------------------------------------------------------------------

def _inside_aten_op(event) -> bool:
    p = event.cpu_parent
    while p is not None:
        if p.name.startswith("aten::"):
            return True
        p = p.cpu_parent
    return False


def cmd_profile(args) -> None:
    """Where a step's time goes: GPU kernel time vs wall time, kernels and top-level ops per step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    chosen = pick_variants(args.variants)
    rows = []
    for model in args.models.split(","):
        x, y = batch(model, args.batch, 10, device, False)
        for label, kw in chosen:
            m = make(model, kw, 10, device, False)
            opt = torch.optim.Adam(m.parameters(), 1e-4)
            time_steps(m, opt, x, y, 3, False, device)  # warm-up (and cudnn's kernel choice)
            wall = statistics.median(time_steps(m, opt, x, y, 1, False, device) for _ in range(args.steps))
            with profile(activities=acts) as prof:
                time_steps(m, opt, x, y, args.steps, False, device)
            events = prof.events()
            gpu = [e for e in events if e.device_type == DeviceType.CUDA]
            ops = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")
                   and not _inside_aten_op(e)]
            rows.append({"model": model, "variant": label, "batch": args.batch, "wall_ms": 1e3 * wall,
                         "gpu_busy_ms": sum(e.time_range.elapsed_us() for e in gpu) / 1e3 / args.steps,
                         "kernels_per_step": len(gpu) / args.steps, "top_level_ops_per_step": len(ops) / args.steps})
            r = rows[-1]
            print(f"{model:10s} {label:28s} wall {r['wall_ms']:7.2f} ms  GPU busy {r['gpu_busy_ms']:7.2f} ms  "
                  f"kernels {r['kernels_per_step']:6.0f}  ops {r['top_level_ops_per_step']:6.0f}", flush=True)
    table = ["| model | activation / layer loss | wall step (ms) | GPU kernels busy (ms) | kernels / step | "
             "top-level ops / step |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['variant']} | {r['wall_ms']:.2f} | {r['gpu_busy_ms']:.2f} | "
                     f"{r['kernels_per_step']:.0f} | {r['top_level_ops_per_step']:.0f} |")
    notes = [f"Batch {args.batch}, Adam, float32, eager. Wall = median of {args.steps} synchronised single steps; "
             "GPU busy = summed kernel time per step under torch.profiler. Wall well above GPU busy means the "
             "step is bound by the host (Python and kernel launches), not by the GPU."]
    write(args.name, {"machine": machine(device), "rows": rows, "args": settings(args)},
          table, notes)


# ---- memory --------------------------------------------------------------------------

class SavedBytes:
    """Counts the bytes of tensors saved for backward, once per storage."""

    def __init__(self) -> None:
        self.total = 0
        self.seen: set[tuple[int, int]] = set()

    def pack(self, t: torch.Tensor):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in self.seen:
            self.seen.add(key)
            self.total += t.untyped_storage().nbytes()
        return t


def activation_modules(model: nn.Module) -> list[nn.Module]:
    kinds = (HardThreshold, nn.ReLU, nn.Hardtanh)
    return [m for m in model.modules() if isinstance(m, kinds) or type(m).__name__ == "SaturatedReLU"]


def measure_memory(model: nn.Module, x: torch.Tensor) -> tuple[int, float]:
    """(network saved bytes, activation units' saved bytes per output element)."""
    net = SavedBytes()
    unit_bytes, unit_elems = [0], [0]
    contexts = []

    def pre(module, inp):
        counter = SavedBytes()
        ctx = torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t)
        ctx.__enter__()
        contexts.append((ctx, counter))

    def post(module, inp, out):
        ctx, counter = contexts.pop()
        ctx.__exit__(None, None, None)
        unit_bytes[0] += counter.total
        unit_elems[0] += out.numel()
        for key in counter.seen:  # the network total counts these too
            if key not in net.seen:
                net.seen.add(key)
                net.total += key[1]

    handles = []
    for m in activation_modules(model):
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    with torch.autograd.graph.saved_tensors_hooks(net.pack, lambda t: t):
        model(x)
    for h in handles:
        h.remove()
    return net.total, unit_bytes[0] / max(1, unit_elems[0])


def cmd_memory(args) -> None:
    device = torch.device("cpu")
    rows = []
    for model in args.models.split(","):
        x, _ = batch(model, args.batch, 10, device, False)
        base = None
        for label, kw in variants("all"):
            m = make(model, kw, 10, device, False)
            total, per_elem = measure_memory(m, x)
            base = base if base is not None else total
            rows.append({"model": model, "variant": label, "network_saved_MB": total / 2**20,
                         "vs_relu": total / base, "unit_bytes_per_element": per_elem})
            print(f"{model:15s} {label:34s} {total / 2**20:8.2f} MB x{total / base:.3f}  unit {per_elem:.2f} B/elem",
                  flush=True)
    table = ["| model | activation / layer loss | network saved (MB) | / ReLU net | unit bytes per element | target |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        v = r["variant"]
        if v.startswith(("relu", "saturated")):
            limit = None
        else:
            loss = v.split()[-1] if "unweighted" not in v else "soft_hinge"
            limit = 1.0 if LOSSES[loss].piecewise_constant else 4.0
        ok = "-" if limit is None else (f"<= {limit:g}: yes" if r["unit_bytes_per_element"] <= limit + 1e-9
                                        else f"<= {limit:g}: **no**")
        table.append(f"| {r['model']} | {v} | {r['network_saved_MB']:.2f} | {r['vs_relu']:.3f} | "
                     f"{r['unit_bytes_per_element']:.2f} | {ok} |")
    notes = [f"Batch {args.batch}, float32. Saved tensors are counted once per storage with "
             "torch.autograd.graph.saved_tensors_hooks; a unit's bytes are those saved while its forward runs. "
             "ReLU saves its output (4 B/element); the next layer also saves its input, the unit's output, in every "
             "network alike."]
    write(args.name, {"machine": machine(device), "rows": rows, "args": settings(args)}, table, notes)


# ---- compile -------------------------------------------------------------------------

class CompiledStep(nn.Module):
    """The model compiled (forward + backward graphs) with its optimiser's update compiled too,
    as the engine does with train.compile; train_step calls the compiled update."""

    def __init__(self, model: nn.Module, opt, mode: str | None = None) -> None:
        super().__init__()
        self.model = torch.compile(model, mode=mode)
        self.step = torch.compile(opt.step, mode=mode)
        self.cudagraphs = mode in CUDA_GRAPH_MODES

    def forward(self, x):
        return self.model(x)


def gradients_match(model: str, kw: dict, x, y, device) -> bool:
    """The compiled forward and backward graphs compute what eager does: one step from the same
    weights (and dropout masks) in float64, where float rounding cannot push a pre-activation
    across a threshold, gives the same loss and gradients."""
    eager, comp = (make(model, kw, 10, device, False).double() for _ in range(2))
    out = []
    for m in (eager, torch.compile(comp)):
        torch.manual_seed(0)
        loss = F.cross_entropy(m(x.double()), y)
        loss.backward()
        out.append(loss.item())
    if abs(out[0] - out[1]) > 1e-9 * max(1.0, abs(out[0])):
        return False
    return all(torch.allclose(p.grad, q.grad, rtol=1e-6, atol=1e-9 * max(1.0, p.grad.abs().max().item()))
               for p, q in zip(eager.parameters(), comp.parameters()))


def cmd_compile(args) -> None:
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # compiled dropout draws the same numbers as eager
    # every variant's step stays compiled (the ReLU one is timed beside each): more graphs per code
    # object than dynamo's default limit of 8, past which it would fall back to eager
    dynamo_config = torch._dynamo.config
    setattr(dynamo_config, "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit", 64)
    device = torch.device(args.device)
    chosen = pick_variants(args.variants)
    rows = []
    for model in args.models.split(","):
        timed = model in args.speed_models.split(",")
        n = args.batch if timed else 4
        x, y = batch(model, n, 10, device, False)
        relu_c = None  # the compiled ReLU step, timed in the same rounds as every other compiled step
        for label, kw in chosen:
            same = gradients_match(model, kw, x, y, device) if args.check else None
            comp = make(model, kw, 10, device, False)
            graphs = args.mode in CUDA_GRAPH_MODES and device.type == "cuda"
            opt_c = torch.optim.Adam(comp.parameters(), torch.tensor(1e-4, device=device if graphs else "cpu"),
                                     capturable=graphs)
            cmodel = CompiledStep(comp, opt_c, args.mode)
            t0 = time.perf_counter()
            lc = [train_step(cmodel, opt_c, x, y, False).item()]
            compile_s = time.perf_counter() - t0
            lc += [train_step(cmodel, opt_c, x, y, False).item() for _ in range(2)]
            row = {"model": model, "variant": label, "batch": n, "compile_s": compile_s, "gradients_match": same,
                   "compiled_step_finite": all(math.isfinite(v) for v in lc), "compiled_losses": lc}
            if label == "relu":
                relu_c = (cmodel, opt_c)
            if timed:
                eager = make(model, kw, 10, device, False)
                opt_e = torch.optim.Adam(eager.parameters(), 1e-4)
                te, tc, tr = [], [], []
                for _ in range(args.rounds):
                    te.append(time_steps(eager, opt_e, x, y, args.steps, False, device))
                    tc.append(time_steps(cmodel, opt_c, x, y, args.steps, False, device))
                    if relu_c is not None:
                        tr.append(time_steps(*relu_c, x, y, args.steps, False, device))
                row["eager_ms"] = 1e3 * statistics.median(te)
                row["compiled_ms"] = 1e3 * statistics.median(tc)
                row["speedup"] = statistics.median([a / b for a, b in zip(te, tc)])
                if tr:
                    row["compiled_vs_relu"] = statistics.median([a / b for a, b in zip(tc, tr)])
            rows.append(row)
            print(f"{model:15s} {label:30s} compile {compile_s:6.1f}s gradients match {same} "
                  + (f"speed-up x{row['speedup']:.2f}" if "speedup" in row else "")
                  + (f" compiled/compiled ReLU x{row['compiled_vs_relu']:.3f}" if "compiled_vs_relu" in row else ""),
                  flush=True)
            report(args, device, rows, final=False)  # what is done survives a time limit
        del relu_c
        torch._dynamo.reset()
    report(args, device, rows, final=True)


def report(args, device, rows: list[dict], final: bool) -> None:
    table = ["| model | activation / layer loss | batch | same loss and gradients as eager (float64) | "
             "compiled step runs (3 steps, finite) | compile time (s) | "
             "eager step (ms) | compiled step (ms) | speed-up | compiled / compiled ReLU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = (f"{r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | x{r['speedup']:.2f} | "
              + (f"{r['compiled_vs_relu']:.3f}" if "compiled_vs_relu" in r else "-")) if "speedup" in r \
            else "- | - | - | -"
        same, runs = ({True: "yes", False: "**no**", None: "not checked"}[r[k]]
                      for k in ("gradients_match", "compiled_step_finite"))
        table.append(f"| {r['model']} | {r['variant']} | {r['batch']} | {same} | {runs} | "
                     f"{r['compile_s']:.1f} | {sp} |")
    cold = os.environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") == "1"
    notes = [f"torch.compile (inductor, mode {args.mode or 'default'}) of the model (forward and backward graphs) "
             "and of the Adam update (with a tensor learning rate, as the engine's train.compile does). "
             "Correctness: one forward + backward in float64 from the same weights and dropout masks (inductor's "
             "fallback_random) gives the eager loss (1e-9 relative) and gradients (1e-6 relative); in float32 a "
             "network of threshold units is chaotic (rounding that differs between kernels puts a pre-activation on "
             "the other side of a threshold), and compiled Adam computes its bias correction from a float32 step "
             "count (updates differ by ~7e-6 relative), so float32 losses are recorded in the JSON but not compared. "
             "Speed-up = median over rounds of eager step / compiled step; compiled / compiled ReLU = median over "
             "the same rounds of the compiled step / the compiled ReLU step (timed in every round). Compile time = "
             "the first compiled step, with inductor's caches "
             + ("disabled (TORCHINDUCTOR_FORCE_DISABLE_CACHES=1): cold." if cold
                else "enabled: warm if an earlier variant or run compiled the same graph.")]
    # Progress goes to NAME.partial.*, so a run cut short (a GPU stage's time limit) leaves what it
    # measured without replacing a complete NAME.* (even with --force); the finished table takes NAME
    # and removes the partial files.
    partial = f"{args.name}.partial"
    if not final:
        notes.append(f"**Incomplete**: written after each variant; the run stopped before the last one, so "
                     f"{args.name}.json / .md (if any) are from an earlier, complete run.")
    write(args.name if final else partial, {"machine": machine(device), "rows": rows, "args": settings(args)},
          table, notes, quiet=not final)
    if final:
        for suffix in (".json", ".md"):
            (RESULTS / f"{partial}{suffix}").unlink(missing_ok=True)


KEEP_HELP = ("glibc keeps freed memory for reuse (ftprop.allocator; what ftprop train does on CPU), "
             "instead of returning it and page-faulting it in again at the next step")
FUSED_HELP = ("also time each hard-threshold variant with the fused CUDA kernels (ftprop.cuda_kernels; they "
              "serve float32 CUDA tensors only, so on a CPU both rows run the same code)")
SHARED_HELP = {"models": "comma-separated model names", "batch": "batch size", "rounds": "interleaved rounds",
               "steps": "steps per timing window (at least), or in all (footprint, profile)", "device": "cpu or cuda",
               "name": "result file name, without extension (default: the subcommand and device)",
               "min_window": "seconds; more steps for fast models"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(cmd: str, func, **shared) -> argparse.ArgumentParser:
        """A subcommand with the options several share (SHARED_HELP), each with this one's default."""
        s = sub.add_parser(cmd)
        for opt, default in shared.items():
            s.add_argument(f"--{opt.replace('_', '-')}", type=None if default is None else type(default),
                           default=default, help=SHARED_HELP[opt])
        s.add_argument("--force", action="store_true", help="replace the result files of an existing --name")
        s.set_defaults(func=func, default_name=cmd.replace("-", "_"))
        return s

    s = command("step-time", cmd_step_time, models="mlp,convnet4,convnet8,resnet18_cifar", batch=128, rounds=7,
                steps=3, min_window=0.25, device="cpu", name=None)
    s.add_argument("--variants", default="auto",
                   help="auto: all for mlp and convnet4, quick (6) for the larger models; all; quick; or a comma "
                        "list of variant labels, relu among them (the ratios' base)")
    s.add_argument("--bf16", action="store_true")
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--target", type=float, default=1.10)
    s.add_argument("--cuda-graph", action="store_true", help="replay each whole step from a CUDA graph")
    s.add_argument("--with-average", type=float, default=0.0, metavar="DECAY",
                   help="also time each variant followed by the weight-average update (train.ema_decay)")
    s.add_argument("--with-twin", metavar="UNITS",
                   help="also time each variant's step with a twin of these units trained alongside (train.twin)")
    s.add_argument("--fused", action="store_true", help=FUSED_HELP)
    s.add_argument("--keep-freed-memory", action="store_true", help=KEEP_HELP)
    s = command("unit-time", cmd_unit_time, rounds=30, device="cpu", name=None)
    s.add_argument("--shape", default="128x64x32x32", help="e.g. 128x64x32x32 (resnet18_cifar's first stage)")
    s.add_argument("--variants", default="all", choices=["all", "quick"])
    s.add_argument("--fused", action="store_true", help=FUSED_HELP)
    s.add_argument("--keep-freed-memory", action="store_true", help=KEEP_HELP)
    s = command("allocator", cmd_allocator, models="convnet8,resnet18_cifar", batch=128, rounds=3, steps=2,
                min_window=0.25, device="cpu", name=None)
    s.add_argument("--variants", default="relu,saturated_relu,sign soft_hinge,staircase3 per_step soft_hinge",
                   help="a comma list of step-time variant labels, relu among them")
    s.add_argument("--pairs", type=int, default=3, help="pairs of step-time processes, one each way")
    s = command("footprint", cmd_footprint, models="convnet4", batch=128, steps=800, device="cpu", name=None)
    s.add_argument("--variants", default="relu,sign soft_hinge", help="a comma list of step-time variant labels")
    s.add_argument("--every", type=int, default=20, help="sample resident memory every this many steps")
    s.add_argument("--eval-every", type=int, default=391,
                   help="evaluate every this many steps (391: an epoch of CIFAR-10 at batch 128; 0: never)")
    # a child process: one model, one variant, the allocator setting given or not
    s.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    s = command("profile", cmd_profile, models="convnet8", batch=256, steps=10, device="cpu", name=None)
    s.add_argument("--variants", default="relu,sign linear,sign soft_hinge,sign hinge")
    command("memory", cmd_memory, models="mlp,convnet4,convnet8,resnet18_cifar", batch=128, name="memory")
    s = command("compile", cmd_compile, models="mlp,convnet4,convnet8,resnet18_cifar,alexnet,resnet18", batch=128,
                rounds=5, steps=3, device="cpu", name=None)
    s.add_argument("--speed-models", default=None,
                   help="models also timed, among --models (default: those of mlp and convnet4 that are)")
    s.add_argument("--variants", default=",".join(label for label, _ in variants("quick")))
    s.add_argument("--no-check", dest="check", action="store_false", help="skip the float64 gradient check")
    s.add_argument("--mode", choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode; reduce-overhead replays CUDA graphs")
    args = p.parse_args()
    check_args(p, args)
    if getattr(args, "keep_freed_memory", False) and not allocator.keep_freed_memory():
        p.error("--keep-freed-memory tells glibc's malloc to keep freed memory; this C library is not glibc")
    args.func(args)


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Bad counts and names are refused before anything runs, and so is a --name whose result files
    exist (without --force): a smoke test must not replace a committed measurement."""
    for opt in ("rounds", "steps", "batch", "pairs", "every"):
        if getattr(args, opt, 1) < 1:
            p.error(f"--{opt} must be >= 1")
    for opt in ("models", "speed_models"):
        given = getattr(args, opt, None)
        if given is None:
            continue
        if any(not m.strip() for m in given.split(",")):  # 'mlp,' or 'mlp,,convnet4' would reach a KeyError
            p.error(f"--{opt.replace('_', '-')} {given!r}: an empty name; give model names joined by commas, "
                    f"with none empty and no space (e.g. mlp,convnet4)")
        unknown = [m for m in given.split(",") if m not in INPUT]
        if unknown:
            p.error(f"--{opt.replace('_', '-')}: unknown model(s) {', '.join(unknown)}; choose from {', '.join(INPUT)}")
    if args.cmd == "compile" and args.speed_models is None:
        args.speed_models = ",".join(m for m in ("mlp", "convnet4") if m in args.models.split(","))
    elif args.cmd == "compile" and set(args.speed_models.split(",")) - set(args.models.split(",")):
        p.error(f"--speed-models {args.speed_models}: each must also be among --models ({args.models}), which are "
                f"the ones built")
    if getattr(args, "shape", None) is not None:
        parts = args.shape.split("x")
        if not all(v.isdigit() and int(v) > 0 for v in parts):
            p.error(f"--shape {args.shape!r}: positive whole numbers joined by 'x', e.g. 128x64x32x32")
    check_device(p, str(getattr(args, "device", "cpu")))
    if args.name is None:
        args.name = f"{args.default_name}_{'cuda' if str(args.device).startswith('cuda') else 'cpu'}"
    claim(RESULTS / check_name(args.name), args.force)


if __name__ == "__main__":
    main()

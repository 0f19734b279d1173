"""Run variants of a recipe side by side (one process each) and tabulate their accuracy.

Each variant is a name and config overrides; every variant runs the recipe through
``time_to_accuracy.py`` in its own process, so several share one GPU (or the CPU cores) at
once; each gets an equal share of the CPU threads (a lone run all of them; the results say how
many: sweeps before 2026-12-06 gave every run one thread, even alone). When ``--deadline``
seconds have passed, unfinished runs are stopped and reported with the epochs they completed, so
a sweep always leaves a table.

  python benchmarks/sweep.py --data-root DIR --device cuda --name recipe_sweep_cuda \\
      --variant "base" --variant "lr2e-3: optim.lr=2e-3" --variant "seed1: train.seed=1"
  python benchmarks/sweep.py --data-root DIR --variants-file benchmarks/sweeps/convnet4_sign_fast.txt

Writes <results>/<name>.json and .md (results: $FTPROP_RESULTS or benchmarks/results); the
runs go to runs/<name>/<variant>. ``--tabulate`` runs nothing and rebuilds the table from those
runs (after a change to the table, or when the sweep itself was killed), keeping the command and
date the sweep recorded (only a record not older than the runs: a later ``--force`` sweep of the same
name that was stopped before it wrote its own leaves an older record, which describes other runs).
A run whose summary.json does not say "completed" (stopped, failed, killed or still training) is
marked with its status beside its name, and ``--tabulate`` gives each row the overrides its run
recorded in its environment.json. The variant name ``results`` is reserved: runs/<name>/results
holds the runs' own result files. A sweep holds runs/<name> (a lock) while it runs: a second
sweep of that name is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_file import check_name, claim, write_result

from ftprop.config import apply_overrides, load_config
from ftprop.data import needs_root
from ftprop.engine import check_config
from ftprop.runs import RunDirError, lock_run_dir, read_metrics

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("FTPROP_RESULTS", HERE / "results"))
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # never '.' or '..': --force removes runs/NAME/VARIANT
CHILD_RESULTS = "results"  # runs/NAME/results: the runs' own result files (so no variant may take the name)
CHILD_SETTINGS = ("train.tensorboard=false", "train.checkpoint_every=10")  # every run's, before its variant's
NOT_RECORDED = "not recorded"
NO_RECORD = "the sweep's own process was stopped before it wrote one"
HEADER = ("date", "command", "config", "jobs_at_once", "threads_per_run")  # what a sweep records of itself
# summary.json's status (the engine writes "running" after each epoch, "failed: X" on an error)
STATUS_WORDS = {"stopped": "stopped by a signal", "running": "status 'running': killed, or still training",
                None: "no summary.json: its state is unknown"}


def threads_per_run(at_once: int) -> int:
    """CPU threads for each of ``at_once`` runs sharing this machine's cores: a share each, at least
    one (a single run gets them all; runs on a GPU use few)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, at_once))


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'name: key=value key=value' (or just 'name', the recipe unchanged) -> (name, overrides)."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not NAME_RE.match(name):
        raise SystemExit(f"variant name {name!r}: use letters, digits, '.', '_' and '-' only, not starting with '.'")
    if name == CHILD_RESULTS:
        raise SystemExit(f"variant name {name!r} is reserved: runs/<sweep>/{CHILD_RESULTS} holds the runs' own result "
                         f"files; give the variant another name (e.g. '{name}2')")
    overrides = rest.split()
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"variant {name!r}: overrides are key=value, got {bad}")
    return name, overrides


def _when(text) -> datetime | None:
    """An ISO date as an aware datetime (naive ones taken as UTC); None if it is not one."""
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _read_json(path: Path) -> dict | None:
    """A run's JSON file as a dict; None when it is missing or unreadable (said on stderr)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        print(f"warning: {path} is unreadable ({err}); left out", file=sys.stderr)
        return None
    return data if isinstance(data, dict) else None


def run_status(run: Path) -> str | None:
    """The run's summary.json status ("completed", "running", "stopped", "failed: X"); None without one."""
    summary = run / "summary.json"
    data = _read_json(summary)
    if data is None:
        return "summary.json unreadable" if summary.is_file() else None
    return str(data.get("status", "summary.json has no status"))


def flag(returncode, status: str | None) -> str:
    """What goes beside a variant's name: how its process ended and, if it did not complete, its run's state."""
    parts = []
    if isinstance(returncode, int) and returncode != 0:
        parts.append(f"exit {returncode}" if returncode > 0 else f"killed by signal {-returncode}")
    elif isinstance(returncode, str) and returncode != NOT_RECORDED:
        parts.append(returncode)
    said = (status == "stopped" and returncode == "stopped at the deadline") or (
        status is None and returncode not in (0, NOT_RECORDED))  # a run that never started writes no summary
    words = STATUS_WORDS.get(status, status)
    if status != "completed" and not said and words not in parts:  # a record may already say it
        parts.append(words)
    return f" ({'; '.join(parts)})" if parts else ""


def option_values(env: dict | None, option: str) -> list[str] | None:
    """The values a run was given for ``option`` ('--set', '--config'; as '--opt V' or '--opt=V'), in
    order, from the argv its environment.json records; None where it records none."""
    argv = env.get("argv") if isinstance(env, dict) else None
    if not isinstance(argv, list):
        return None
    argv = [str(a) for a in argv]
    return [argv[i + 1] if a == option else a.split("=", 1)[1] for i, a in enumerate(argv)
            if (a == option and i + 1 < len(argv)) or a.startswith(option + "=")]


def recipe_of(envs: list[dict]) -> str | None:
    """The --config the runs were started with (each environment.json records its argv)."""
    seen = []
    for value in (v for e in envs for v in option_values(e, "--config") or []):
        if value not in seen:
            seen.append(value)
    return " / ".join(seen) if seen else None


def recorded_header(recorded: Path, envs: list[dict], config: str, now: str) -> tuple[dict, dict]:
    """For --tabulate: the header (date, command, config, runs at once, threads) of the sweep that made
    these runs and each variant's return code and wall time, from the sweep's own record when it
    describes these runs, otherwise from what the runs themselves say."""
    record = _read_json(recorded) or {}
    reason = NO_RECORD
    if str(record.get("command", "")).startswith(NOT_RECORDED):
        record = {}  # a --tabulate without the sweep's record: all it holds comes from the runs, read again below
    if record:  # the record describes these runs only if it was written after they all started
        starts = [t for t in (_when(r.get("started")) for e in envs
                              for r in (e, *[x for x in e.get("resumed", []) if isinstance(x, dict)])) if t]
        written = [t for t in (_when(record.get(k)) for k in ("date", "tabulated_at")) if t]
        if starts and (not written or max(written) < max(starts)):
            reason = (f"the record in {recorded}, dated {record.get('date', 'nothing')}, is older than these runs, "
                      f"so it describes earlier ones: a later sweep of this name was stopped before it wrote its own")
            print(f"note: {reason}; its command, date and return codes are not used", file=sys.stderr)
            record = {}
    if record:
        header = {k: record.get(k, NOT_RECORDED) for k in HEADER}
        ends = {r.get("variant"): r for r in record.get("rows", []) if isinstance(r, dict)}
        return header, {n: {k: r.get(k, NOT_RECORDED) for k in ("returncode", "wall_s")} for n, r in ends.items()}
    seen = sorted({e.get("torch_threads", NOT_RECORDED) for e in envs}, key=str)
    started = sorted(e["started"] for e in envs if e.get("started"))
    header = {"date": started[0] if started else f"{NOT_RECORDED} (tabulated at {now})",
              "command": f"{NOT_RECORDED} ({reason})",
              "config": recipe_of(envs) or f"{config} (as given to --tabulate: the runs do not record theirs)",
              "jobs_at_once": NOT_RECORDED,
              "threads_per_run": (seen[0] if len(seen) == 1 else " / ".join(map(str, seen))) if seen
              else NOT_RECORDED}
    return header, {}


def run_variants(args, variants: list[tuple[str, list[str]]], runs: Path, jobs: int, threads: int) -> dict:
    """Run each variant through time_to_accuracy.py, ``jobs`` at a time, until done or the deadline:
    each variant's return code (or how it was stopped) and wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), FTPROP_RESULTS=str(runs / CHILD_RESULTS),
               PYTHONUNBUFFERED="1")
    pending, running, done = list(variants), {}, {}
    t0 = time.time()

    def ended(name: str, returncode) -> None:
        proc, start, log = running.pop(name)
        log.close()
        done[name] = {"returncode": returncode, "wall_s": round(time.time() - start, 1)}

    while pending or running:
        while pending and len(running) < jobs:
            name, over = pending.pop(0)
            cmd = [sys.executable, str(HERE / "time_to_accuracy.py"), "--config", args.config,
                   "--data-root", args.data_root, "--name", f"{args.name}/{name}"]
            cmd += [a for o in (*CHILD_SETTINGS, *over) for a in ("--set", o)]
            cmd += ["--force"] if args.force else []
            if args.device:
                cmd += ["--device", args.device]
            log = open(runs / f"{name}.log", "w")  # (the sweep's lock on runs/NAME keeps it ours)
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(), log)
        time.sleep(1)
        for name, (proc, *_) in list(running.items()):
            if proc.poll() is not None:
                ended(name, proc.returncode)
        if args.deadline and time.time() - t0 > args.deadline:
            for proc, *_ in running.values():  # all at once: the engine checkpoints on SIGTERM and ends its
                proc.terminate()               # metrics cleanly; none trains on while another is waited for
            grace = time.time() + 120  # for all of them together, to checkpoint and exit
            for name, (proc, *_) in list(running.items()):
                try:
                    proc.wait(timeout=max(0.0, grace - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                ended(name, "stopped at the deadline")
            for name, _ in pending:
                done[name] = {"returncode": "not started before the deadline", "wall_s": 0}
            pending = []
    return done


def metrics_of(run: Path) -> tuple[list[dict], str | None]:
    """A run's metrics by epoch, and why they could not be read (then none), if so."""
    try:
        return read_metrics(run / "metrics.jsonl"), None
    except RunDirError as err:
        return [], f"metrics.jsonl unreadable: {err}"


def run_overrides(env: dict | None) -> list[str] | None:
    """The overrides a sweep gave a run: its --set values after the sweep's own (CHILD_SETTINGS, which
    come first); None where its environment.json records no argv."""
    sets = option_values(env, "--set")
    if sets is None:
        return None
    return sets[len(CHILD_SETTINGS):] if tuple(sets[:len(CHILD_SETTINGS)]) == CHILD_SETTINGS else sets


def row_of(run: Path, name: str, over: list[str], ended: dict) -> dict:
    """A variant's row: how its process ended, its run's state, and its accuracies by epoch."""
    hist, unreadable = metrics_of(run)
    row = {"variant": name, "overrides": over, **ended, "status": unreadable or run_status(run),
           "epochs_done": len(hist)}
    if hist:
        best = max(hist, key=lambda h: h["test_acc"])
        row.update(best_test_acc=best["test_acc"], best_epoch=best["epoch"], final_test_acc=hist[-1]["test_acc"],
                   final_train_acc=hist[-1]["train_acc"],
                   mean_epoch_s=round(sum(h["epoch_time_s"] for h in hist) / len(hist), 2),
                   test_acc_by_epoch=[round(h["test_acc"], 4) for h in hist])
        # train.ema_decay > 0: test_acc is the weight average's, live_ the optimiser's weights';
        # train.twin: twin_ is the twin's
        for kind in ("live", "twin"):
            if f"{kind}_test_acc" in hist[-1]:
                by_epoch = [h[f"{kind}_test_acc"] for h in hist]
                row.update({f"best_{kind}_test_acc": max(by_epoch), f"final_{kind}_test_acc": by_epoch[-1],
                            f"{kind}_test_acc_by_epoch": [round(v, 4) for v in by_epoch]})
    return row


def table(name: str, payload: dict) -> str:
    """The markdown summary of a sweep's payload."""
    rows, e = payload["rows"], payload["environment"] or {}
    at_once, per_run = payload["jobs_at_once"], payload["threads_per_run"]
    lines = [f"# Recipe sweep: {name}", "", f"- command: `{payload['command']}`",
             *([f"- tabulated by `{payload['tabulated_by']}` at {payload['tabulated_at']}"]
               if payload.get("tabulated_by") else []),
             f"- recipe: `{payload['config']}`; "
             + (f"{at_once} run(s) at once" if at_once != NOT_RECORDED else "runs at once: not recorded")
             + ", each in its own process with "
             + (f"{per_run} CPU thread(s)" if per_run != NOT_RECORDED else "CPU threads not recorded"),
             f"- date: {payload['date']}; device: {e.get('device')} {e.get('gpu', '')}; torch {e.get('torch')}; "
             f"{e.get('cpu_count')} CPU cores ({e.get('cpu_model', 'CPU model not recorded')}); "
             f"Python {e.get('python')}; git {e.get('git_commit')}", "",
             "| variant | overrides | epochs | best test % (epoch) | final test % | final train % "
             "| live weights: best / final test % | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        live = (f"{100 * r['best_live_test_acc']:.2f} / {100 * r['final_live_test_acc']:.2f}"
                if "best_live_test_acc" in r else "-")
        head = f"| {r['variant']}{flag(r['returncode'], r['status'])} | {' '.join(r['overrides']) or '(recipe)'} |"
        if "best_test_acc" in r:
            lines.append(f"{head} {r['epochs_done']} | "
                         f"{100 * r['best_test_acc']:.2f} ({r['best_epoch']}) | {100 * r['final_test_acc']:.2f} | "
                         f"{100 * r['final_train_acc']:.2f} | {live} | {r['mean_epoch_s']} |")
        else:
            lines.append(f"{head} 0 | - | - | - | - | - |")
    lines += ["", "Epoch times are of runs sharing the device; compare them only within this table."]
    if any(flag(r["returncode"], r["status"]) for r in rows):
        lines += ["Beside a variant's name: how its process ended, or its run's state when it did not complete "
                  "(summary.json); its numbers are those of the epochs it finished."]
    if any("best_live_test_acc" in r for r in rows):
        lines += ["With train.ema_decay > 0 the test columns measure the weight average; the live column, the "
                  "optimiser's weights in the same run."]
    twins = [f"{r['variant']} {100 * r['best_twin_test_acc']:.2f} / {100 * r['final_twin_test_acc']:.2f}"
             for r in rows if "best_twin_test_acc" in r]
    if twins:
        lines += [f"The twins trained alongside (train.twin), best / final test %: {'; '.join(twins)}."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/recipes/cifar10_convnet4_sign_fast.toml")
    p.add_argument("--data-root", required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--variant", action="append", default=[], help="'name: key=value ...'")
    p.add_argument("--variants-file", help="one variant per line ('#' starts a comment)")
    p.add_argument("--jobs", type=int, default=0, help="runs at once (0: all)")
    p.add_argument("--deadline", type=float, default=0, help="seconds; then stop what is still running")
    p.add_argument("--name", default="recipe_sweep")
    p.add_argument("--force", action="store_true", help="overwrite the runs of a sweep of the same name")
    p.add_argument("--tabulate", action="store_true",
                   help="run nothing: rebuild the table from the runs already in runs/<name>")
    args = p.parse_args()
    if args.jobs < 0 or args.deadline < 0:
        p.error("--jobs and --deadline must be >= 0 (0: all at once, no deadline)")
    check_name(args.name)
    if "/" in args.name:
        p.error("--name must be one plain file name (no '/')")
    lines = list(args.variant)
    if args.variants_file:
        if not Path(args.variants_file).is_file():
            p.error(f"--variants-file {args.variants_file}: no such file")
        lines += [ln for ln in Path(args.variants_file).read_text().splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise SystemExit("no variants: give --variant or --variants-file")
    variants = [parse_variant(v) for v in lines]
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"variant names must differ: {names}")
    runs = Path("runs") / args.name
    taken = [n for n in names if (runs / n / "config.toml").is_file()]
    if taken and not (args.tabulate or args.force):
        raise SystemExit(f"{runs} already holds runs of {', '.join(taken)}; give another --name, --tabulate to "
                         f"rebuild their table, or --force to overwrite them")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if args.tabulate:  # run nothing; keep what the sweep itself recorded of each run
        if not any(metrics_of(runs / n)[0] for n in names):
            raise SystemExit(f"error: no run of {', '.join(names)} in {runs} has a finished epoch: nothing to "
                             f"tabulate (the results file is left as it is)")
        own = {n: _read_json(runs / n / "environment.json") for n in names}
        for i, (n, over) in enumerate(variants):  # a row says what its run was trained with
            made = run_overrides(own[n])
            if made is not None and made != over:
                print(f"note: variant {n}: its run was made with {made or '(the recipe)'}, not "
                      f"{over or '(the recipe)'} as given; the table gives the run's", file=sys.stderr)
                variants[i] = (n, made)
        header, ends = recorded_header(RESULTS / f"{args.name}.json", [e for e in own.values() if e is not None],
                                       args.config, now)
        absent = [n for n in names if not (runs / n).is_dir() and n not in ends]  # neither run nor record of it
        if absent:
            raise SystemExit(f"error: {runs} holds no run of {', '.join(absent)}, nor does the sweep's record name "
                             f"it (check the variant names); the results file is left as it is")
        done = {n: ends.get(n, {"returncode": NOT_RECORDED, "wall_s": NOT_RECORDED}) for n in names}
    else:
        bad, rootless = [], {}
        for n, over in variants:  # every variant's settings load and check out, before any process starts
            try:  # (the settings time_to_accuracy.py gives it: its data.root, then the sweep's, then its own)
                cfg = apply_overrides(load_config(args.config),
                                      [f"data.root={json.dumps(args.data_root)}", *CHILD_SETTINGS, *over])
                check_config(cfg)
            except ValueError as err:  # (ConfigError is one)
                bad.append(f"{n}: {err}")
                continue
            if needs_root(cfg.data.name) and not cfg.data.download and not Path(cfg.data.root).expanduser().exists():
                rootless.setdefault(cfg.data.root, []).append(n)
        bad += [f"the data root {root} does not exist (variant(s) {', '.join(those)}: give the folder that holds "
                f"the data, or set data.download=true where the internet is reachable)"
                for root, those in rootless.items()]
        if bad:
            raise SystemExit("error: " + "; ".join(bad) + ". Nothing was run")
        runs.mkdir(parents=True, exist_ok=True)
        try:
            _held = lock_run_dir(runs)  # a descriptor open until this process ends: one sweep of a name at a time
        except RunDirError:
            raise SystemExit(f"error: another sweep named {args.name!r} is running ({runs} is held); wait for it to "
                             f"end, or give another --name") from None
        claim(RESULTS / args.name, args.force)
        if args.force:  # a variant that fails to start must not show the old run's numbers
            for n in names:
                shutil.rmtree(runs / n, ignore_errors=True)
                for suffix in (".json", ".md"):  # time_to_accuracy.py --name NAME/n writes results/NAME/n.{json,md}
                    (runs / CHILD_RESULTS / args.name / f"{n}{suffix}").unlink(missing_ok=True)
        jobs = args.jobs or len(variants)
        threads = threads_per_run(min(jobs, len(variants)))
        done = run_variants(args, variants, runs, jobs, threads)
        # dated at the end, after every run started: a later --tabulate takes it as this sweep's record
        header = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": "python " + shlex.join(sys.argv), "config": args.config,
                  "jobs_at_once": jobs, "threads_per_run": threads}

    rows = [row_of(runs / name, name, over, done[name]) for name, over in variants]
    if not args.tabulate and not any("best_test_acc" in r for r in rows):
        raise SystemExit(f"error: no variant finished an epoch (return codes: "
                         f"{', '.join(str(r['returncode']) for r in rows)}); see the logs in {runs}/*.log. "
                         f"No results were written")
    envs = [_read_json(runs / n / "environment.json") for n, _ in variants]  # this sweep's runs only
    envs = [e for e in envs if e is not None]
    payload = {**header, "environment": envs[0] if envs else None, "rows": rows}
    if args.tabulate:
        payload.update(tabulated_by="python " + shlex.join(sys.argv), tabulated_at=now)
    text = table(args.name, payload)
    write_result(RESULTS / args.name, payload, text)
    print(text)


if __name__ == "__main__":
    main()

"""The benchmarks' guard for committed result files (benchmarks/results_file.py), and the scripts'
refusals of bad input, which all come before anything is measured, and the sweep's table."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from results_file import check_device, check_name, claim, write_result  # noqa: E402


def test_claim_refuses_existing_results_unless_forced(tmp_path):
    assert claim(tmp_path / "new", force=False) == tmp_path / "new"
    (tmp_path / "old.md").write_text("a committed table")
    with pytest.raises(SystemExit, match="old.md already exist.*--force"):
        claim(tmp_path / "old", force=False)
    assert claim(tmp_path / "old", force=True) == tmp_path / "old"
    assert (tmp_path / "old.md").read_text() == "a committed table"  # claiming writes nothing


def test_claim_takes_out_with_a_suffix_and_names_with_dots(tmp_path):
    (tmp_path / "x.md").write_text("a committed table")
    with pytest.raises(SystemExit, match="x.md already exist"):
        claim(tmp_path / "x.json", force=False)  # --out results/x.json means the pair x.{json,md}
    assert claim(tmp_path / "x.json", force=True) == tmp_path / "x"
    (tmp_path / "lr1.5e-3.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"lr1\.5e-3\.json already exist"):
        claim(tmp_path / "lr1.5e-3", force=False)  # its dot is part of the name, not a suffix to replace


def test_write_result_writes_both_files_or_neither(tmp_path):
    write_result(tmp_path / "sub" / "r1.5", {"a": 1}, "# table")
    assert (tmp_path / "sub" / "r1.5.json").read_text() == '{\n  "a": 1\n}\n'
    assert (tmp_path / "sub" / "r1.5.md").read_text() == "# table\n"
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_result(tmp_path / "sub" / "r1.5", {"a": object()}, "# new table")
    assert (tmp_path / "sub" / "r1.5.md").read_text() == "# table\n"  # the old pair stands
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["r1.5.json", "r1.5.md"]  # no temporaries


def test_check_device_refuses_bad_and_absent_devices(capsys):
    import argparse

    p = argparse.ArgumentParser(prog="bench")
    assert check_device(p, "cpu").type == "cpu"
    with pytest.raises(SystemExit):
        check_device(p, "tpu")
    assert "--device 'tpu': the benchmarks run on cpu, cuda or cuda:N" in capsys.readouterr().err
    for named_but_unusable in ("meta", "cpu:1"):  # torch names them; nothing here runs on them
        with pytest.raises(SystemExit):
            check_device(p, named_but_unusable)
        assert "the benchmarks run on cpu, cuda or cuda:N" in capsys.readouterr().err
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SystemExit):
            check_device(p, "cuda:0")
        assert "no CUDA device here; use --device cpu" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", ".hidden", "a//b", "a/.b", "a\\b"])
def test_result_names_must_be_plain(name):
    with pytest.raises(SystemExit, match="must be a plain file name"):
        check_name(name)


@pytest.mark.parametrize("name", ["u.json", "sweep/u.md"])
def test_result_names_come_without_a_suffix(name):  # --name u.json would write u.json.json
    with pytest.raises(SystemExit, match="give it without .json or .md"):
        check_name(name)


def _run(script: str, *args: str, results: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FTPROP_RESULTS=str(results), PYTHONPATH=str(BENCH.parent / "src"))
    return subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True, text=True,
                          cwd=results.parent, timeout=120)


def test_scripts_refuse_to_replace_a_result_or_tabulate_nothing(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "unit_time_cpu.json").write_text("{}")
    out = _run("perf.py", "unit-time", "--shape", "8x8", "--rounds", "1", results=results)
    assert out.returncode != 0 and "already exist" in out.stderr
    assert (results / "unit_time_cpu.json").read_text() == "{}"
    for bad in (["--rounds", "0"], ["--name", ""]):
        out = _run("perf.py", "unit-time", "--shape", "8x8", *bad, results=results)
        assert out.returncode != 0 and "Traceback" not in out.stderr, bad
    out = _run("sweep.py", "--data-root", str(tmp_path), "--name", "s", "--variant", "a: optim.lr=1e-3", "--tabulate",
               results=results)
    assert out.returncode != 0 and "nothing to tabulate" in out.stderr and not (results / "s.json").exists()
    recipe = str(BENCH.parent / "configs" / "recipes" / "cifar10_convnet4_sign_fast.toml")
    out = _run("time_to_accuracy.py", "--config", recipe, "--data-root", str(tmp_path), "--name", "t", "--resume",
               results=results)
    assert out.returncode != 0 and "no run in" in out.stderr
    (results / "data_pipeline.md").write_text("a committed table")  # in $FTPROP_RESULTS, as for the others
    out = _run("data_pipeline.py", "--data-root", str(tmp_path), results=results)
    assert out.returncode != 0 and "data_pipeline.md already exist" in out.stderr
    (results / "d.png").write_text("a committed picture")  # the demo's third file
    out = _run("demo.py", "--name", "d", results=results)
    assert out.returncode != 0 and "d.png already exist" in out.stderr
    assert (results / "d.png").read_text() == "a committed picture"


def _gpu_plan(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BENCH / "gpu.sh"), *args], env=dict(os.environ, GPU_PLAN="1", **env),
                          capture_output=True, text=True, cwd=BENCH.parent, timeout=30)


def _gpu(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """gpu.sh for real (no GPU_PLAN), its results in tmp_path/results."""
    full = dict(os.environ, FTPROP_RESULTS=str(tmp_path / "results"), **env)
    if "GPU_PLAN" not in env:
        full.pop("GPU_PLAN", None)
    return subprocess.run(["bash", str(BENCH / "gpu.sh"), *args], env=full, capture_output=True, text=True,
                          cwd=BENCH.parent, timeout=30)


def _gpu_faked(tmp_path, python: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """gpu.sh on a fake GPU machine: an nvidia-smi that lists one GPU, and a python that runs the
    shell code ``python`` (then exits 0) instead of anything."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: a fake one'\n")
    (fake / "python").write_text(f"#!/bin/sh\n{python}\nexit 0\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    return _gpu(tmp_path, *args, PYTHON=str(fake / "python"), PATH=f"{fake}:{os.environ['PATH']}", **env)


def _blocked(tmp_path, module: str) -> str:
    """A PYTHONPATH whose sitecustomize makes ``module`` look absent to importlib."""
    blocked = tmp_path / "site"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {module!r}:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n")
    return str(blocked)


def test_gpu_script_names_missing_modules_before_running_anything(tmp_path):
    """A CUDA image without matplotlib failed the tta stage only after its training: the modules the
    chosen stages import are looked for first, and a missing one stops the script, saying what to do."""
    env = {"PYTHON": sys.executable, "PYTHONPATH": _blocked(tmp_path, "matplotlib"), "GPU_STAGES": "tests tta"}
    out = _gpu(tmp_path, str(tmp_path), **env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "lacks the Python module(s) matplotlib (tta)" in out.stdout and "pip install matplotlib" in out.stdout
    assert "pytest" not in out.stdout.split("error:")[1].split("which")[0]  # only what is missing is named
    assert not (tmp_path / "results").exists()  # nothing ran
    plan = _gpu(tmp_path, str(tmp_path), GPU_PLAN="1", **env)
    assert plan.returncode == 0 and "note: " in plan.stdout and "matplotlib (tta)" in plan.stdout
    plan = _gpu(tmp_path, PYTHON=sys.executable, GPU_PLAN="1")  # the default stages, everything installed
    assert plan.returncode == 0 and "lacks" not in plan.stdout


def test_gpu_script_needs_pillow_to_convert_the_cifar_tarball(tmp_path):
    tarball = tmp_path / "cifar10-jpeg.tar.gz"
    tarball.write_bytes(b"")
    env = {"PYTHON": sys.executable, "PYTHONPATH": _blocked(tmp_path, "PIL"), "GPU_STAGES": "tta"}
    out = _gpu(tmp_path, str(tarball), **env)
    assert out.returncode == 2 and "PIL (tta: prepare_cifar10.py decodes" in out.stdout, out.stdout
    assert "pip install pillow" in out.stdout
    assert _gpu(tmp_path, str(tmp_path), GPU_PLAN="1", **env).stdout.count("lacks") == 0  # a folder: no JPEGs


def test_gpu_script_converts_the_tarball_it_is_given(tmp_path):
    """prepare_cifar10.py converts the tarball beside itself: given one elsewhere, the script runs a copy
    of it beside that tarball, not ../shared/data's beside its own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "my-cifar.tar.gz").write_bytes(b"")
    out = _gpu_faked(tmp_path, 'case "$1" in *prepare_cifar10.py) echo "converts $(readlink -f '
                               '"$(dirname "$1")/cifar10-jpeg.tar.gz")";; esac',
                     str(elsewhere / "my-cifar.tar.gz"), GPU_STAGES="tta")
    assert f"converts {elsewhere / 'my-cifar.tar.gz'}" in out.stdout, out.stdout + out.stderr


def test_gpu_script_says_when_it_skips_the_sweep_for_want_of_time(tmp_path):
    out = _gpu_faked(tmp_path, "", str(tmp_path), "--sweep", GPU_STAGES="unit", GPU_BUDGET_S="60")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skipped: the recipe sweep, since only" in out.stdout and "(it needs more than 60s)" in out.stdout


def test_gpu_script_stops_when_torch_cannot_use_the_gpu(tmp_path):
    """nvidia-smi sees a GPU but torch does not (a CPU build, an old driver): every stage would skip or
    fail and the script end "successfully"; it stops at once instead."""
    out = _gpu_faked(tmp_path, 'case "$*" in *get_device_name*) echo "RuntimeError: no CUDA" >&2; exit 1;; esac')
    assert out.returncode == 1 and "torch cannot use the GPU" in out.stdout, out.stdout + out.stderr
    assert "===" not in out.stdout  # no stage started


def test_gpu_script_default_stages_fit_its_budget():
    """A lent GPU's minutes are few: the default stages' caps must add up to at most the budget,
    so none of them is cut for want of time; a plan over budget says so before anything runs."""
    plan = _gpu_plan()
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "stages 'tests fused unit'" in plan.stdout
    assert "warning" not in plan.stdout
    over = _gpu_plan(GPU_STAGES="tests fused unit compile tta", GPU_BUDGET_S="480")
    assert over.returncode == 2 and "needs the CIFAR-10 data" in over.stdout
    over = _gpu_plan(GPU_STAGES="tests fused unit compile")
    assert over.returncode == 0 and "warning: the caps exceed the budget" in over.stdout
    tight = _gpu_plan(str(BENCH), "--sweep")  # the default stages' caps leave the sweep 50 s
    assert tight.returncode == 0 and "the sweep gets 50s and is skipped" in tight.stdout
    assert "the sweep gets" not in _gpu_plan(str(BENCH), "--sweep", GPU_BUDGET_S="900").stdout


@pytest.mark.parametrize("args, env, message", [
    ((), {"GPU_STAGES": "tests fuse"}, "unknown stage 'fuse'"),
    (("cifar.tar.gz",), {}, "no chosen stage reads CIFAR"),
    (("--sweep",), {}, "--sweep needs the data first"),
    (("data", "--swep"), {}, "unknown option '--swep'"),
    (("/nowhere/cifar10-jpeg.tar.gz",), {"GPU_STAGES": "tta"}, "CIFAR '/nowhere/cifar10-jpeg.tar.gz' not found"),
    ((), {"GPU_BUDGET_S": "8min"}, "must be a number of seconds"),
])
def test_gpu_script_refuses_bad_plans(args, env, message):
    plan = _gpu_plan(*args, **env)
    assert plan.returncode == 2 and message in plan.stdout


def test_compile_progress_never_replaces_a_complete_table(tmp_path, monkeypatch):
    """perf.py compile writes its table after each variant (a GPU stage's time limit keeps what was
    measured), but to NAME.partial.*: a run cut short, even with --force, leaves the committed
    NAME.* as they were; the finished run replaces them and removes the partial files."""
    import argparse

    import perf
    import torch

    monkeypatch.setattr(perf, "RESULTS", tmp_path)
    (tmp_path / "compile_x.json").write_text("complete json")
    (tmp_path / "compile_x.md").write_text("complete table")
    args = argparse.Namespace(name="compile_x", mode=None, func=None, force=True)
    row = {"model": "mlp", "variant": "sign soft_hinge", "batch": 8, "gradients_match": True,
           "compiled_step_finite": True, "compile_s": 1.0, "eager_ms": 2.0, "compiled_ms": 1.0, "speedup": 2.0}
    perf.report(args, torch.device("cpu"), [row], final=False)
    assert (tmp_path / "compile_x.json").read_text() == "complete json"
    assert (tmp_path / "compile_x.md").read_text() == "complete table"
    assert "**Incomplete**" in (tmp_path / "compile_x.partial.md").read_text()
    perf.report(args, torch.device("cpu"), [row, row], final=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compile_x.json", "compile_x.md"]
    table = (tmp_path / "compile_x.md").read_text()
    assert "Incomplete" not in table and table.count("| mlp | sign soft_hinge |") == 2


def test_sweep_variant_names_cannot_reach_outside_the_sweep():
    from sweep import parse_variant

    for name in ("..", ".", ".hidden"):
        with pytest.raises(SystemExit, match="not starting with '.'"):
            parse_variant(f"{name}: optim.lr=1e-3")
    assert parse_variant("b256-lr1.4e-3: train.batch_size=256") == ("b256-lr1.4e-3", ["train.batch_size=256"])


def test_a_result_name_in_a_subfolder_gets_its_folder(tmp_path):
    assert claim(tmp_path / "sub" / "m", force=False) == tmp_path / "sub" / "m"
    assert (tmp_path / "sub").is_dir()


@pytest.mark.parametrize("script, args, message", [
    ("perf.py", ["unit-time", "--shape", "axb", "--name", "t1"], "--shape 'axb': positive whole numbers"),
    ("perf.py", ["step-time", "--device", "foo", "--name", "t2"], "--device 'foo'"),
    ("perf.py", ["step-time", "--with-twin", "rleu", "--name", "t5"], "--with-twin 'rleu': unknown activation"),
    ("perf.py", ["compile", "--speed-models", "mlp,nope", "--name", "t3"], "--speed-models: unknown model(s) nope"),
    ("perf.py", ["compile", "--models", "mlp", "--speed-models", "convnet4", "--name", "t21"],
     "each must also be among --models (mlp)"),
    ("perf.py", ["step-time", "--models", "mlp,", "--name", "t6"], "--models 'mlp,': an empty name"),
    ("perf.py", ["step-time", "--variants", "sign hinge", "--name", "t7"], "must include relu"),
    ("perf.py", ["step-time", "--variants", "relu,sign hnige", "--name", "t8"], "unknown variant(s) ['sign hnige']"),
    ("perf.py", ["step-time", "--variants", "relu,relu", "--name", "t19"], "names a variant twice"),
    ("perf.py", ["step-time", "--device", "meta", "--name", "t20"], "the benchmarks run on cpu, cuda or cuda:N"),
    ("perf.py", ["allocator", "--variants", "sign hinge", "--name", "t12"], "must include relu"),
    ("perf.py", ["allocator", "--pairs", "0", "--name", "t13"], "--pairs must be >= 1"),
    ("perf.py", ["footprint", "--every", "0", "--name", "t14"], "--every must be >= 1"),
    ("perf.py", ["footprint", "--eval-every", "-1", "--name", "t15"], "--eval-every must be >= 0"),
    ("perf.py", ["footprint", "--variants", "relu,sign hnige", "--name", "t16"], "unknown variant"),
    ("perf.py", ["footprint", "--steps", "10", "--every", "6", "--name", "t17"], "fewer than three samples"),
    ("perf.py", ["footprint", "--keep-freed-memory", "--name", "t18"], "runs one process each way itself"),
    ("exact_scaling.py", ["--families", "parity,foo", "--quick"], "--families: unknown 'foo'"),
    ("exact_scaling.py", ["--budget", "0", "--quick"], "--budget must be a positive number"),
    ("exact_certify_cost.py", ["--rounds", "0"], "--rounds must be >= 1"),
    ("exact_rational_fuzz.py", ["--seed", "-1"], "--seed must be >= 0"),
    ("data_pipeline.py", ["--epochs", "0"], "--epochs must be >= 1"),
    ("data_pipeline.py", ["--device", "meta"], "the benchmarks run on cpu, cuda or cuda:N"),
    ("tta.py", ["nowhere", "--name", "t4"], "error: "),
    ("ab_tanh_chunks.py", ["--rounds", "1", "--name", "t9"], "--rounds must be at least 2"),
    ("ab_tanh_chunks.py", ["--name", "t10.json"], "ends in a suffix"),
    ("ab_tanh_chunks.py", ["--name", "../t11"], "must be a plain file name"),
])
def test_benchmark_scripts_refuse_bad_arguments_without_a_traceback(tmp_path, script, args, message):
    results = tmp_path / "results"
    out = _run(script, *args, "--out" if script.startswith(("exact", "data")) else "--force",
               *([str(tmp_path / "o")] if script.startswith(("exact", "data")) else []), results=results)
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not list(tmp_path.glob("o*")) and not list(results.glob("*.json"))


def test_step_time_with_a_twin_times_each_variant_with_its_twin_in_the_same_rounds(tmp_path):
    import json

    results = tmp_path / "results"
    out = _run("perf.py", "step-time", "--models", "mlp", "--variants", "quick", "--batch", "8", "--rounds", "2",
               "--steps", "1", "--min-window", "0", "--with-twin", "relu", "--name", "twin", results=results)
    assert out.returncode == 0, out.stderr
    rows = {r["variant"]: r for r in json.loads((results / "twin.json").read_text())["rows"]}
    assert {"relu + twin", "sign soft_hinge + twin", "staircase3 saturated_hinge + twin"} < set(rows)
    assert all(len(r["ratios"]) == 2 for r in rows.values())  # every variant in every round
    assert "train.twin = 'relu'" in (results / "twin.md").read_text()


def test_step_time_writes_the_other_models_when_one_runs_out_of_gpu_memory(tmp_path, monkeypatch, capsys):
    import perf
    import torch

    real = perf.step_time_rows

    def rows(args, model, *rest):
        if model == "convnet4":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB\nmore")
        return real(args, model, *rest)

    monkeypatch.setattr(perf, "step_time_rows", rows)
    monkeypatch.setattr(perf, "RESULTS", tmp_path)
    common = ["perf.py", "step-time", "--variants", "relu,sign soft_hinge", "--batch", "8", "--rounds", "2",
              "--steps", "1", "--min-window", "0"]
    monkeypatch.setattr(sys, "argv", [*common, "--models", "convnet4,mlp", "--name", "oom"])
    perf.main()
    saved = json.loads((tmp_path / "oom.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["mlp", "mlp"]
    assert saved["not_measured"] == ["convnet4: out of GPU memory with 8 examples per batch (CUDA out of memory. "
                                     "Tried to allocate 12.00 GiB), not measured"]
    assert "**Not measured**: convnet4: out of GPU memory" in (tmp_path / "oom.md").read_text()
    monkeypatch.setattr(sys, "argv", [*common, "--models", "convnet4", "--name", "oom_all"])
    with pytest.raises(SystemExit, match="nothing measured: convnet4: out of GPU memory"):
        perf.main()
    assert not (tmp_path / "oom_all.json").exists()


def test_fused_kernels_that_fail_on_the_gpu_leave_the_aten_path_timed(monkeypatch, capsys):
    import argparse

    import perf
    import torch

    from ftprop import cuda_kernels

    def fails(name):
        raise RuntimeError("nvrtc: error: failed to open libnvrtc-builtins.so")

    monkeypatch.setattr(cuda_kernels, "_kernel", fails)  # (on a GPU too)
    monkeypatch.setattr(cuda_kernels, "_WORK", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU where the kernels cannot run
    args = argparse.Namespace(fused=True)
    perf.check_fused(args, torch.device("cuda"))
    assert args.fused is False and not cuda_kernels._ENABLED
    assert "do not compile or run here" in capsys.readouterr().out


def test_compile_times_the_default_speed_models_among_those_built(tmp_path, monkeypatch):
    import perf

    seen = []
    monkeypatch.setattr(perf, "cmd_compile", lambda args: seen.append(args.speed_models))
    monkeypatch.setattr(perf, "RESULTS", tmp_path)
    for models, speed in (("convnet8", ""), ("mlp,convnet8", "mlp"), ("mlp,convnet4,convnet8", "mlp,convnet4")):
        monkeypatch.setattr(sys, "argv", ["perf.py", "compile", "--models", models, "--name", "c"])
        perf.main()
        assert seen[-1] == speed, models


def test_step_time_takes_a_list_of_variants(tmp_path):
    import json

    results = tmp_path / "results"
    out = _run("perf.py", "step-time", "--models", "mlp", "--variants", "relu,sign hinge,staircase3 perceptron",
               "--batch", "8", "--rounds", "2", "--steps", "1", "--min-window", "0", "--name", "some", results=results)
    assert out.returncode == 0, out.stderr
    rows = json.loads((results / "some.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["relu", "sign hinge", "staircase3 perceptron"]


def test_step_time_counts_page_faults_and_peak_memory(tmp_path):
    results = tmp_path / "results"
    out = _run("perf.py", "step-time", "--models", "mlp", "--variants", "relu,sign soft_hinge", "--batch", "8",
               "--rounds", "2", "--steps", "1", "--min-window", "0", "--name", "f", results=results)
    assert out.returncode == 0, out.stderr
    payload = json.loads((results / "f.json").read_text())
    assert all(r["faults_per_step"] >= 0 for r in payload["rows"])
    assert payload["peak_rss_mib"] > 0 and payload["machine"]["keeps_freed_memory"] is False
    assert "page faults / step" in (results / "f.md").read_text()


def test_allocator_runs_step_time_processes_both_ways(tmp_path):
    """perf.py allocator: pairs of step-time processes, one with glibc keeping freed memory, one without."""
    from ftprop import allocator

    if not allocator.can_keep_freed_memory():
        pytest.skip("the setting is glibc's malloc's")
    results = tmp_path / "results"
    out = _run("perf.py", "allocator", "--models", "mlp", "--variants", "relu,sign soft_hinge", "--batch", "8",
               "--rounds", "2", "--steps", "1", "--min-window", "0", "--pairs", "1", "--name", "a", results=results)
    assert out.returncode == 0, out.stderr
    payload = json.loads((results / "a.json").read_text())
    assert [r["variant"] for r in payload["rows"]] == ["relu", "sign soft_hinge"]
    for keep in ("false", "true"):
        runs = payload["processes"][keep]
        assert [run["machine"]["keeps_freed_memory"] for run in runs] == [keep == "true"]
        assert all(len(r["ratios"]) == 2 for r in runs[0]["rows"])
    assert all(r["kept_over_default"] > 0 for r in payload["rows"])
    assert "kept / default" in (results / "a.md").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["a.json", "a.md"]  # the processes' files stay out


def test_footprint_samples_memory_over_a_run_both_ways(tmp_path):
    """perf.py footprint: a fresh process each way per model and variant, the order alternating,
    memory sampled every --every steps and at the end."""
    from ftprop import allocator

    if not allocator.can_keep_freed_memory():
        pytest.skip("the setting is glibc's malloc's")
    results = tmp_path / "results"
    out = _run("perf.py", "footprint", "--models", "mlp", "--variants", "relu,sign soft_hinge", "--batch", "8",
               "--steps", "5", "--every", "2", "--eval-every", "3", "--name", "fp", results=results)
    assert out.returncode == 0, out.stderr
    payload = json.loads((results / "fp.json").read_text())
    assert [(r["variant"], r["kept"]) for r in payload["rows"]] == [
        ("relu", False), ("relu", True), ("sign soft_hinge", True), ("sign soft_hinge", False)]
    for run in payload["processes"]:
        assert [s["step"] for s in run["samples"]] == [0, 2, 4, 5]
        assert [s["evaluations"] for s in run["samples"]] == [0, 0, 1, 1]  # one at step 3
        assert all(s["rss_mib"] > 0 for s in run["samples"]) and run["peak_rss_mib"] > 0
    assert all(r["half_step"] == 2 and r["end_step"] == 5 and r["evaluations"] == 1 and r["ms_per_step"] > 0
               for r in payload["rows"])
    assert "growth, second half" in (results / "fp.md").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["fp.json", "fp.md"]  # the processes' files stay out


def test_a_failed_child_process_stops_a_comparison_with_what_it_said(tmp_path):
    import perf

    with pytest.raises(SystemExit, match=r"(?s)a child process failed \(exit 2\).*--batch must be >= 1"):
        perf.child(str(tmp_path), "c", False, ["step-time", "--models", "mlp", "--batch", "0"])


def test_unit_time_counts_page_faults(tmp_path):
    import json

    results = tmp_path / "results"
    out = _run("perf.py", "unit-time", "--shape", "64x1024", "--rounds", "2", "--variants", "quick", "--name", "u",
               results=results)
    assert out.returncode == 0, out.stderr
    rows = json.loads((results / "u.json").read_text())["rows"]
    assert all(r["forward_faults"] >= 0 and r["backward_faults"] >= 0 for r in rows)
    assert "page faults forward / backward" in (results / "u.md").read_text()


def test_tanh_chunks_ab_times_three_variants_in_the_same_rounds(tmp_path):
    import json

    results = tmp_path / "results"
    out = _run("ab_tanh_chunks.py", "--model", "mlp", "--unit", "unweighted", "--batch", "8", "--rounds", "2",
               "--steps", "1", "--name", "ab", results=results)
    assert out.returncode == 0, out.stderr
    rows = json.loads((results / "ab.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["relu", "unweighted in chunks", "unweighted term by term"]
    assert all(len(r["times_s"]) == 2 for r in rows) and rows[0]["ratio_to_relu"] == 1.0


def test_data_pipeline_does_not_prepare_data_where_it_was_not_asked(tmp_path):
    out = _run("data_pipeline.py", "--data-root", str(tmp_path / "typo"), "--out", str(tmp_path / "o"),
               results=tmp_path / "results")
    assert out.returncode != 0 and "pass --prepare" in out.stderr and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("sam, cost", [(False, None), (True, "SAM: two forward/backward passes per step, so 2 "
                                                             "epochs cost as much as 4 plain ones")])
def test_time_to_accuracy_reports_a_run_and_what_its_epochs_cost(tmp_path, sam, cost):
    import json

    from test_data import write_cifar

    write_cifar(tmp_path / "data")
    results = tmp_path / "results"
    recipe = str(BENCH.parent / "configs" / "recipes" / "cifar10_convnet4_sign_fast.toml")
    extra = ["--set", "optim.sam_rho=0.05"] if sam else []
    out = _run("time_to_accuracy.py", "--config", recipe, "--data-root", str(tmp_path / "data"), "--name", "t",
               "--epochs", "2", "--set", "schedule.warmup_epochs=0.5", "--device", "cpu", "--set",
               "train.tensorboard=false",
               *extra, results=results)
    assert out.returncode == 0, out.stderr
    payload = json.loads((results / "t.json").read_text())
    assert payload["epochs"] == 2 and payload["passes_per_step"] == (2 if sam else 1)
    assert payload["reached_epoch"] is None  # random images never reach 78.8%
    table = (results / "t.md").read_text()
    assert "reached: no" in table and "(the paper: 300 epochs)" in table
    assert (cost in table) if cost else ("SAM" not in table)


def test_sweep_runs_share_the_cores_and_a_lone_run_gets_them_all(monkeypatch):
    import os

    from sweep import threads_per_run

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [threads_per_run(n) for n in (1, 2, 3, 8, 20, 0)] == [8, 4, 2, 1, 1, 8]


def test_a_sweep_table_gives_the_live_weights_the_twins_and_runs_stopped_by_hand(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = {"a": [{"epoch": 1, "test_acc": 0.5, "train_acc": 0.4, "epoch_time_s": 2.0}],
            "b": [{"epoch": e, "test_acc": t, "live_test_acc": t - 0.01, "twin_test_acc": w, "train_acc": 0.6,
                   "epoch_time_s": 3.0} for e, t, w in [(1, 0.6, 0.7), (2, 0.65, 0.8), (3, 0.64, 0.75)]]}
    for name, hist in rows.items():
        run = tmp_path / "runs" / "s" / name
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
        started = {"a": "2026-12-06T10:00:05+00:00", "b": "2026-12-06T10:00:01+00:00"}[name]
        (run / "environment.json").write_text(json.dumps({"torch_threads": 2, "started": started}))
    (tmp_path / "runs" / "s" / "a" / "summary.json").write_text('{"status": "stopped"}')
    (tmp_path / "runs" / "s" / "b" / "summary.json").write_text('{"status": "completed"}')
    out = _run("sweep.py", "--data-root", str(tmp_path), "--name", "s", "--variant", "a: optim.lr=1e-3",
               "--variant", "b: train.twin=relu", "--tabulate", results=results)
    assert out.returncode == 0, out.stderr
    table = (results / "s.md").read_text()
    assert "| a (stopped by a signal) | optim.lr=1e-3 | 1 | 50.00 (1) | 50.00 | 40.00 | - | 2.0 |" in table
    assert "| b | train.twin=relu | 3 | 65.00 (2) | 64.00 | 60.00 | 64.00 / 63.00 | 3.0 |" in table
    assert "The twins trained alongside (train.twin), best / final test %: b 80.00 / 75.00." in table
    # no record of the sweep itself (its process was stopped): the runs' threads and first start
    assert "each in its own process with 2 CPU thread(s)" in table
    assert "- date: 2026-12-06T10:00:01+00:00;" in table and "- command: `not recorded" in table
    b = json.loads((results / "s.json").read_text())["rows"][1]
    assert b["twin_test_acc_by_epoch"] == [0.7, 0.8, 0.75] and b["best_live_test_acc"] == 0.64


def _sweep_run(root: Path, sweep: str, variant: str, accs: list, status: str | None = "completed",
               started: str = "2026-12-10T10:00:00+00:00", **env) -> None:
    """A run of a sweep's variant as the engine leaves it: metrics, summary and environment."""
    run = root / "runs" / sweep / variant
    run.mkdir(parents=True)
    (run / "config.toml").write_text("name = 'x'\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i, "test_acc": a, "train_acc": 0.5,
                                                           "epoch_time_s": 1.0}) + "\n"
                                               for i, a in enumerate(accs, 1)))
    if status is not None:
        (run / "summary.json").write_text(json.dumps({"status": status}))
    (run / "environment.json").write_text(json.dumps({
        "device": "cpu", "torch": "2.x", "cpu_count": 2, "python": "3.12", "git_commit": "abc", "torch_threads": 2,
        "started": started, "argv": ["benchmarks/time_to_accuracy.py", "--config", "tiny.toml"], **env}))


def _sweep(root: Path, monkeypatch, *args: str) -> tuple[str, dict]:
    """sweep.py ARGS in this process, in ``root`` (runs/ there, results in root/results): its table and JSON."""
    import sweep

    monkeypatch.chdir(root)
    monkeypatch.setattr(sweep, "RESULTS", root / "results")
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--data-root", str(root), *args])
    sweep.main()
    return (root / "results" / "s.md").read_text(), json.loads((root / "results" / "s.json").read_text())


def test_a_sweep_table_flags_every_run_that_did_not_complete(tmp_path, monkeypatch):
    """The engine writes summary.json status 'running' after each epoch and 'failed: X' on an error:
    a killed, still-running or failed run must not read as a complete one."""
    for name, status in [("a", "running"), ("b", "failed: NonFiniteLossError"), ("c", "stopped"), ("d", "completed"),
                         ("e", None)]:
        _sweep_run(tmp_path, "s", name, [0.5, 0.6], status=status)
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate",
                            *[a for v in "abcde" for a in ("--variant", v)])
    assert "| a (status 'running': killed, or still training) | (recipe) | 2 | 60.00 (2) |" in table
    assert "| b (failed: NonFiniteLossError) | (recipe) | 2 |" in table
    assert "| c (stopped by a signal) | (recipe) | 2 |" in table
    assert "| d | (recipe) | 2 |" in table
    assert "| e (no summary.json: its state is unknown) | (recipe) | 2 |" in table
    assert [r["status"] for r in payload["rows"]] == ["running", "failed: NonFiniteLossError", "stopped", "completed",
                                                      None]


def _sweep_record(root: Path, date: str) -> None:
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / "s.json").write_text(json.dumps({
        "date": date, "command": "python benchmarks/sweep.py --config special.toml --name s", "config": "special.toml",
        "jobs_at_once": 2, "threads_per_run": 1, "rows": [
            {"variant": "a", "returncode": 0, "wall_s": 5.0}, {"variant": "b", "returncode": 1, "wall_s": 2.0}]}))


def test_a_sweep_table_ignores_a_record_older_than_its_runs(tmp_path, monkeypatch):
    """A --force sweep stopped before it wrote its record leaves the previous sweep's: its command,
    date, return codes, threads and jobs describe other runs, so --tabulate must not show them."""
    _sweep_record(tmp_path, "2026-11-01T00:00:00+00:00")
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6])
    _sweep_run(tmp_path, "s", "b", [0.4], started="2026-12-10T10:00:03+00:00")
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a", "--variant", "b")
    assert "- command: `not recorded (the record in" in table and "is older than these runs" in table
    assert "- recipe: `tiny.toml`; runs at once: not recorded, each in its own process with 2 CPU thread(s)" in table
    assert "- date: 2026-12-10T10:00:00+00:00;" in table
    assert "| a | (recipe) | 2 |" in table and "| b | (recipe) | 1 |" in table  # no return code of the old runs
    assert [(r["returncode"], r["wall_s"]) for r in payload["rows"]] == [("not recorded", "not recorded")] * 2
    assert payload["jobs_at_once"] == "not recorded" and payload["config"] == "tiny.toml"


def test_a_sweep_table_keeps_its_own_record_and_shows_a_failed_variant_like_the_others(tmp_path, monkeypatch):
    _sweep_record(tmp_path, "2026-12-10T11:00:00+00:00")  # written when the sweep ended, after its runs started
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6])
    (tmp_path / "runs" / "s" / "b").mkdir()  # b failed before its first epoch
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a",
                            "--variant", "b: optim.lr=2e-3")
    assert "- command: `python benchmarks/sweep.py --config special.toml --name s`" in table
    assert "- recipe: `special.toml`; 2 run(s) at once, each in its own process with 1 CPU thread(s)" in table
    assert "| a | (recipe) | 2 | 60.00 (2) |" in table
    assert "| b (exit 1) | optim.lr=2e-3 | 0 | - | - | - | - | - |" in table  # the s/epoch column holds no code
    assert payload["rows"][1]["returncode"] == 1 and payload["rows"][0]["wall_s"] == 5.0


def test_a_sweep_table_says_what_its_runs_were_trained_with(tmp_path, monkeypatch, capsys):
    """--tabulate takes each row's overrides from its run's recorded argv, not from its own command line;
    names a variant with neither run nor record (a typo) an error; and the table says who tabulated it."""
    argv = ["time_to_accuracy.py", "--config", "tiny.toml", "--set", "train.tensorboard=false", "--set",
            "train.checkpoint_every=10", "--set", "optim.lr=3e-3"]
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6], argv=argv)
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a: optim.lr=9")
    assert "| a | optim.lr=3e-3 | 2 |" in table and payload["rows"][0]["overrides"] == ["optim.lr=3e-3"]
    assert "its run was made with ['optim.lr=3e-3'], not ['optim.lr=9'] as given" in capsys.readouterr().err
    assert "- tabulated by `python sweep.py --data-root" in table
    before = (tmp_path / "results" / "s.json").read_text()
    with pytest.raises(SystemExit, match="holds no run of typo, nor does the sweep's record name it"):
        _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a", "--variant", "typo")
    assert (tmp_path / "results" / "s.json").read_text() == before


def test_a_sweep_reads_a_runs_options_in_either_spelling():
    from sweep import CHILD_SETTINGS, option_values, recipe_of, run_overrides

    argv = ["t.py", "--config=r.toml", "--set", CHILD_SETTINGS[0], f"--set={CHILD_SETTINGS[1]}", "--set",
            CHILD_SETTINGS[1], "--set=optim.lr=2e-3", "--set"]  # (a variant's own override may equal the sweep's)
    assert option_values({"argv": argv}, "--config") == ["r.toml"] and recipe_of([{"argv": argv}]) == "r.toml"
    assert run_overrides({"argv": argv}) == [CHILD_SETTINGS[1], "optim.lr=2e-3"]
    assert run_overrides({}) is None and run_overrides({"argv": ["t.py"]}) == []


def test_a_sweep_record_older_than_a_resume_of_its_runs_is_not_used(tmp_path, monkeypatch):
    _sweep_record(tmp_path, "2026-12-10T11:00:00+00:00")  # after the runs started, before one was resumed
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6], resumed=[{"started": "2026-12-10T12:00:00+00:00", "changed": {}}])
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a")
    assert payload["rows"][0]["returncode"] == "not recorded" and "- command: `not recorded" in table


def test_a_sweep_table_keeps_a_run_whose_metrics_are_damaged(tmp_path, monkeypatch):
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6])
    _sweep_run(tmp_path, "s", "b", [0.5])
    (tmp_path / "runs" / "s" / "b" / "metrics.jsonl").write_text('{"epoch": 1, "test_acc"\n{"epoch": 2}\n')
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a", "--variant", "b")
    assert "| a | (recipe) | 2 |" in table and "| b (metrics.jsonl unreadable: " in table


def test_a_sweep_checks_every_variant_and_its_name_before_it_runs_anything(tmp_path, monkeypatch):
    import sweep

    from ftprop.runs import lock_run_dir

    monkeypatch.setattr(sweep.subprocess, "Popen", lambda *a, **k: pytest.fail("a process was started"))
    (tmp_path / "tiny.toml").write_text(TINY)
    with pytest.raises(SystemExit, match=r"error: b: .*optim\.lrr.*; c: unknown activation 'nonsense'.*Nothing"):
        _sweep(tmp_path, monkeypatch, "--name", "s", "--config", "tiny.toml", "--variant", "a",
               "--variant", "b: optim.lrr=1", "--variant", "c: model.activation='nonsense'")
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--data-root", str(tmp_path / "nowhere"), "--name", "s",
                                      "--config", "tiny.toml", "--variant", "a", "--variant", "b: data.name='cifar10'"])
    with pytest.raises(SystemExit, match=r"the data root .*nowhere does not exist \(variant\(s\) b:"):
        sweep.main()  # (the tiny recipe's digits need no root: cifar10 does)
    (tmp_path / "runs" / "s").mkdir(parents=True)
    held = lock_run_dir(tmp_path / "runs" / "s")  # another sweep of this name, still running
    try:
        with pytest.raises(SystemExit, match="another sweep named 's' is running"):
            _sweep(tmp_path, monkeypatch, "--name", "s", "--config", "tiny.toml", "--variant", "a")
    finally:
        os.close(held)
    assert not (tmp_path / "results").exists()


def test_a_sweep_stops_every_run_at_its_deadline_before_it_waits_for_any(tmp_path, monkeypatch):
    import sweep

    events = []

    class Trains:  # runs until told to stop
        returncode = None

        def __init__(self, cmd, **kwargs):
            self.name = cmd[cmd.index("--name") + 1].split("/")[1]

        def poll(self):
            return self.returncode

        def terminate(self):
            events.append(("terminate", self.name))

        def wait(self, timeout=None):
            events.append(("wait", self.name))
            self.returncode = 0

    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(sweep.subprocess, "Popen", Trains)
    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    monkeypatch.setattr(sweep.time, "time", lambda: next(clock))
    (tmp_path / "tiny.toml").write_text(TINY)
    with pytest.raises(SystemExit, match="no variant finished an epoch"):
        _sweep(tmp_path, monkeypatch, "--name", "s", "--config", "tiny.toml", "--deadline", "25",
               "--variant", "a", "--variant", "b")
    assert [e for e, _ in events] == ["terminate", "terminate", "wait", "wait"]


def test_a_sweep_table_describes_the_machine_of_its_own_runs_only(tmp_path, monkeypatch):
    """A leftover run of a variant not in this sweep (e.g. an older GPU run) is not this sweep's machine."""
    _sweep_run(tmp_path, "s", "Aold", [0.3], device="cuda", torch_threads=1, started="2026-10-01T10:00:00+00:00")
    _sweep_run(tmp_path, "s", "a", [0.5, 0.6])
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "a")
    assert "- date: 2026-12-10T10:00:00+00:00; device: cpu" in table and "with 2 CPU thread(s)" in table
    assert payload["environment"]["device"] == "cpu" and payload["threads_per_run"] == 2


def test_a_forced_sweep_removes_its_variants_old_result_files(tmp_path, monkeypatch):
    """The runs write runs/NAME/results/NAME/VARIANT.{json,md}: --force must not leave the old ones."""
    import sweep

    class Failed:  # each run's process fails at once; nothing is trained
        returncode = 1

        def __init__(self, *args, **kwargs):
            pass

        def poll(self):
            return 1

    monkeypatch.setattr(sweep.subprocess, "Popen", Failed)
    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    old = tmp_path / "runs" / "s" / "results" / "s"
    old.mkdir(parents=True)
    for f in ("a.json", "a.md", "other.json"):
        (old / f).write_text("an old run's result")
    (tmp_path / "tiny.toml").write_text(TINY)
    with pytest.raises(SystemExit, match="no variant finished an epoch"):
        _sweep(tmp_path, monkeypatch, "--name", "s", "--force", "--config", "tiny.toml", "--variant", "a")
    assert sorted(p.name for p in old.iterdir()) == ["other.json"]  # another variant's are left alone


def test_a_sweep_record_is_the_one_a_later_tabulate_keeps(tmp_path, monkeypatch):
    """The record is dated when the sweep ends, after its runs started: --tabulate keeps its command."""
    from datetime import datetime, timezone

    import sweep

    class Trains:  # each process leaves a finished run, started after the sweep itself
        returncode = 0

        def __init__(self, cmd, **kwargs):
            name = cmd[cmd.index("--name") + 1].split("/")[1]
            time.sleep(1.1)  # (dates are to the second)
            _sweep_run(tmp_path, "s", name, [0.5, 0.6], started=datetime.now(timezone.utc).isoformat())

        def poll(self):
            return 0

    monkeypatch.setattr(sweep.subprocess, "Popen", Trains)
    (tmp_path / "tiny.toml").write_text(TINY)
    _, first = _sweep(tmp_path, monkeypatch, "--name", "s", "--config", "tiny.toml", "--variant", "a: optim.lr=1e-3")
    table, again = _sweep(tmp_path, monkeypatch, "--name", "s", "--variant", "a: optim.lr=1e-3", "--tabulate")
    assert again["command"] == first["command"] and again["date"] == first["date"]
    assert again["rows"][0]["returncode"] == 0 and again["jobs_at_once"] == 1


def test_the_variant_name_results_is_reserved_for_the_runs_result_files():
    from sweep import parse_variant

    with pytest.raises(SystemExit, match="'results' is reserved.*another name"):
        parse_variant("results: optim.lr=1e-3")
    assert parse_variant("results2")[0] == "results2"


TINY = """name = "tiny-digits"
[model]
name = "mlp"
activation = "sign"
options = { hidden = [16] }
[data]
name = "digits"
[optim]
name = "adam"
lr = 1e-3
[train]
epochs = 1
batch_size = 256
device = "cpu"
tensorboard = false
"""


def _time_to_accuracy(root: Path, monkeypatch, *args: str) -> None:
    """time_to_accuracy.py on the tiny digits recipe, in this process, in ``root`` (results in root/results)."""
    import time_to_accuracy

    (root / "tiny.toml").write_text(TINY)
    monkeypatch.chdir(root)
    monkeypatch.setattr(time_to_accuracy, "RESULTS", root / "results")
    monkeypatch.setattr(sys, "argv", ["time_to_accuracy.py", "--config", "tiny.toml", "--data-root", str(root),
                                      "--name", "t", *args])
    time_to_accuracy.main()


def test_time_to_accuracy_refuses_an_unknown_model_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FTPROP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _time_to_accuracy(tmp_path, monkeypatch, "--set", "model.name='bogus'")
    assert exit_.value.code == 2  # a bad setting, as the ftprop CLI answers it
    assert "error: unknown model 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_time_to_accuracy_lists_each_session_of_a_resumed_run(tmp_path, monkeypatch):
    """After --resume the table gives every session's device and commit, and flags them when they
    differ (here the first session is made to look like another machine's)."""
    _time_to_accuracy(tmp_path, monkeypatch)
    env_file = tmp_path / "runs" / "t" / "environment.json"
    env = json.loads(env_file.read_text())
    env_file.write_text(json.dumps({**env, "device": "cuda", "gpu": "NVIDIA H100", "git_commit": "0ld"}))
    _time_to_accuracy(tmp_path, monkeypatch, "--resume", "--epochs", "2")
    table = (tmp_path / "results" / "t.md").read_text()
    assert "- sessions (2; the run was resumed 1 time(s)):" in table
    assert "  1. started: device: cuda NVIDIA H100; torch" in table and "git 0ld" in table
    assert "  2. resumed after epoch 1: device: cpu; torch" in table and f"git {env['git_commit']}" in table
    assert "**mixed sessions**" in table
    payload = json.loads((tmp_path / "results" / "t.json").read_text())
    assert payload["sessions"] == 2 and payload["mixed_sessions"] is True and payload["epochs"] == 2


def test_time_to_accuracy_shows_what_a_resume_changed(tmp_path, monkeypatch):
    _time_to_accuracy(tmp_path, monkeypatch, "--set", "optim.lr=0.003")
    _time_to_accuracy(tmp_path, monkeypatch, "--resume", "--epochs", "2")  # without the override: lr 1e-3
    table = (tmp_path / "results" / "t.md").read_text()
    assert "  2. resumed after epoch 1: device: cpu" in table and "**changed**: optim.lr 0.003 -> 0.001" in table
    assert "**mixed sessions**" in table and "torch threads" in table


def test_time_to_accuracy_lists_a_moved_data_folder_without_calling_sessions_mixed():
    from time_to_accuracy import session_lines

    machine = {"device": "cpu", "torch": "2.x", "python": "3.11", "cpu_count": 2, "torch_threads": 2, "git_commit": "a"}
    moved = {**machine, "after_epoch": 1, "changed": {"data.root": ["/data/a", "./a"]}}
    lines, mixed = session_lines({**machine, "resumed": [moved]})
    assert not mixed and 'resumed after epoch 1' in lines[2] and '**changed**: data.root "/data/a" -> "./a"' in lines[2]
    lr = {**moved, "changed": {"optim.lr": [0.003, 0.001]}}
    assert session_lines({**machine, "resumed": [lr]})[1]  # a setting of the training itself: mixed


def test_time_to_accuracy_resumes_a_run_with_its_own_settings(tmp_path, monkeypatch, capsys):
    import time_to_accuracy

    _time_to_accuracy(tmp_path, monkeypatch)  # the tiny recipe, not the default one
    common = ["time_to_accuracy.py", "--data-root", str(tmp_path), "--name", "t", "--resume"]
    monkeypatch.setattr(sys, "argv", [*common, "--force"])
    with pytest.raises(SystemExit):
        time_to_accuracy.main()
    assert "--resume continues runs/<name> and --force replaces it: give one" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", [*common, "--epochs", "2"])  # no --config: the run's config.toml
    time_to_accuracy.main()
    payload = json.loads((tmp_path / "results" / "t.json").read_text())
    assert payload["config"] == str(Path("runs") / "t" / "config.toml") and payload["epochs"] == 2
    assert payload["environment"]["resumed"][0]["changed"] == {"train.epochs": [1, 2]}


def test_time_to_accuracy_counts_an_exact_hit_and_refuses_a_fraction(tmp_path, monkeypatch, capsys):
    from time_to_accuracy import first_reaching

    hist = [{"epoch": 1, "test_acc": 0.7703}, {"epoch": 2, "test_acc": 0.7704}, {"epoch": 3, "test_acc": 0.79}]
    assert 100 * 0.7704 < 77.04  # (why the accuracy is rounded first)
    assert first_reaching(hist, 77.04)["epoch"] == 2 and first_reaching(hist, 79.01) is None
    for bad in ("0.788", "0", "101"):  # a fraction would be "reached" at the first epoch
        with pytest.raises(SystemExit):
            _time_to_accuracy(tmp_path, monkeypatch, "--target", bad)
        assert "--target is a test accuracy in percent (e.g. 78.8, not 0.788)" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_tta_marks_a_checkpoint_saved_inside_an_epoch(tmp_path, monkeypatch):
    """A run stopped mid-epoch keeps a checkpoint with 'step' > 0: it is not the last completed epoch."""
    import tta

    from ftprop.runs import load_checkpoint, save_checkpoint

    _time_to_accuracy(tmp_path, monkeypatch)
    run = tmp_path / "runs" / "t"
    (tmp_path / "whole").mkdir()
    save_checkpoint(tmp_path / "whole", {k: v for k, v in load_checkpoint(run).items() if k != "format"})
    state = load_checkpoint(run)
    save_checkpoint(run, {**{k: v for k, v in state.items() if k != "format"}, "step": 3})  # 3 steps into epoch 2
    monkeypatch.setattr(tta, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(sys, "argv", ["tta.py", "runs/t", "whole/checkpoint.pt", "--name", "tta", "--data-root",
                                      str(tmp_path), "--device", "cpu"])
    tta.main()
    table = (tmp_path / "results" / "tta.md").read_text()
    assert "| runs/t | 1 + 3 steps of epoch 2 (**partial**) |" in table and "| whole/checkpoint.pt | 1 |" in table
    assert "A **partial** checkpoint was saved inside an epoch" in table
    rows = json.loads((tmp_path / "results" / "tta.json").read_text())["rows"]
    assert [(r["epoch"], r["step"], r["partial"]) for r in rows] == [(1, 3, True), (1, 0, False)]


def _data_pipeline(tmp_path, monkeypatch, timed: list, *args: str) -> None:
    """data_pipeline.py on a tiny fake CIFAR-10, in this process; ``timed`` gets the pipelines it timed."""
    import data_pipeline
    from test_data import write_cifar

    write_cifar(tmp_path / "cifar")
    real_array, real_loader = data_pipeline.time_array, data_pipeline.time_loader
    monkeypatch.setattr(data_pipeline, "time_array", lambda *a: timed.append("array") or real_array(*a))
    monkeypatch.setattr(data_pipeline, "time_loader", lambda *a: timed.append("loader") or real_loader(*a))
    data_pipeline.main(["--data-root", str(tmp_path / "cifar"), "--epochs", "1", "--device", "cpu", *args])


def test_data_pipeline_refuses_a_bad_fashion_root_before_timing_anything(tmp_path, monkeypatch):
    from ftprop.data import idx as idx_mod

    monkeypatch.setitem(idx_mod.SOURCES["fashion-mnist"], "fallbacks", ())  # no system copy found instead
    timed = []
    with pytest.raises(SystemExit, match=r"error: --fashion-root .*typo: fashion-mnist train files .* not found"):
        _data_pipeline(tmp_path, monkeypatch, timed, "--fashion-root", str(tmp_path / "typo"),
                       "--out", str(tmp_path / "o"))
    assert timed == [] and not list((tmp_path / "o").glob("data_pipeline.*"))


def test_data_pipeline_table_names_its_workers_and_quotes_its_command(tmp_path, monkeypatch):
    from test_data import write_mnist

    write_mnist(tmp_path / "fm" / "fashion-mnist")
    out = tmp_path / "out dir"
    timed = []
    _data_pipeline(tmp_path, monkeypatch, timed, "--fashion-root", str(tmp_path / "fm"), "--workers", "0",
                   "--out", str(out))
    assert timed == ["array", "array", "loader"] or timed == ["array", "loader"]  # 1 thread, all threads; loader
    table = (out / "data_pipeline.md").read_text()
    assert "over the DataLoader in the main process (num_workers=0): " in table and "two worker" not in table
    assert f"--out '{out}'" in json.loads((out / "data_pipeline.json").read_text())["command"]


def test_a_sweep_table_takes_nothing_from_an_earlier_tabulation_without_a_record(tmp_path, monkeypatch):
    """Such a tabulation holds only what it read from the runs (and older ones invented 'jobs_at_once'
    from the variants and wrote a stopped run's state as its return code): it is read from the runs again."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s.json").write_text(json.dumps({
        "date": "2026-12-10T10:00:00+00:00", "tabulated_at": "2026-12-11T00:00:00+00:00", "jobs_at_once": 3,
        "command": "not recorded (the sweep's own process was stopped before it wrote one)", "threads_per_run": 2,
        "rows": [{"variant": "c", "returncode": "stopped by a signal", "wall_s": "not recorded"}]}))
    _sweep_run(tmp_path, "s", "c", [0.5], status="stopped")
    table, payload = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "c")
    assert "runs at once: not recorded" in table and payload["jobs_at_once"] == "not recorded"
    assert "| c (stopped by a signal) | (recipe) | 1 |" in table
    again, _ = _sweep(tmp_path, monkeypatch, "--name", "s", "--tabulate", "--variant", "c")
    assert again == table  # tabulating again changes nothing

"""ftprop report (tables and curves of run folders) and ftprop demo."""

import json

import pytest
import torch
from test_engine import small_config
from test_reproduce import _fake_run  # a Table 1 cell's run folder, as train leaves it

from ftprop.config import apply_overrides
from ftprop.engine import train
from ftprop.runs import RunDirError, read_metrics


def test_report_table_and_plot_hold_the_numbers(tmp_path):
    from ftprop.report import write_report

    dirs = []
    for act in ("sign", "relu"):
        for seed in (0, 1):
            d = tmp_path / f"{act}{seed}"
            train(small_config(f"model.activation={act}", f"train.seed={seed}", epochs=2), d, log=None)
            dirs.append(d)
    md, png = write_report(dirs, tmp_path / "rep")
    assert png.is_file() and png.stat().st_size > 1000
    text = md.read_text()
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["runs"] for r in rows] == [2, 2]
    best = [max(m["test_acc"] for m in read_metrics(d / "metrics.jsonl")) for d in dirs[:2]]
    mean = sum(best) / 2 * 100
    assert rows[0]["best_mean"] == pytest.approx(mean / 100)
    assert f"{mean:.2f} ± " in text
    assert "mlp sign soft_hinge" in text and "mlp relu" in text
    # the software and machine of every number: one environment for all four runs, each run's file whole
    envs = json.loads((tmp_path / "rep" / "environments.json").read_text())
    assert list(envs) == [str(d) for d in dirs]
    assert all(e == json.loads((d / "environment.json").read_text()) for d, e in zip(dirs, envs.values()))
    line = next(x for x in text.splitlines() if x.startswith("- commit "))
    assert f"torch {torch.__version__}" in line and "device `cpu`" in line and all(str(d) in line for d in dirs)
    (dirs[0] / "environment.json").write_text("{cut short")
    env = json.loads((dirs[1] / "environment.json").read_text())
    (dirs[1] / "environment.json").write_text(json.dumps({**env, "git_commit": "0123456789abcdef-dirty"}))
    write_report(dirs, tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert f"- no readable environment.json: {dirs[0]}\n" in text
    assert "- commit 0123456789ab-dirty, ftprop " in text and text.count("- commit ") == 2  # two environments
    assert json.loads((tmp_path / "rep" / "environments.json").read_text())[str(dirs[0])] is None


def test_report_groups_seeds_across_devices_and_labels_groups_that_differ_in_the_recipe(tmp_path):
    from ftprop.report import runs_table
    from ftprop.runs import Run

    def run(i, *overrides):
        cfg = apply_overrides(small_config(), [f"train.seed={i}", *overrides])
        return Run(tmp_path / str(i), cfg, [{"epoch": 1, "test_acc": 0.5 + i / 100, "train_acc": 0.9}], {})

    _, rows = runs_table([run(0), run(1, "train.device=cuda", "data.root='/elsewhere'", "train.checkpoint_every=5"),
                          run(2, "train.compile=true", "data.options.workers=4", "train.tensorboard=true",
                              "train.keep_freed_memory=false"),
                          run(3, "optim.lr=0.01"), run(4, "optim.lr=0.01", "train.eval_batch_size=7",
                                                       "model.options.batch_norm=true",  # mlp's defaults,
                                                       "model.options.dropout=0")])  # an int for a float
    assert [r["runs"] for r in rows] == [3, 2]  # where and how fast a run went is not its recipe
    assert [r["seeds"] for r in rows] == [[0, 1, 2], [3, 4]]
    method = "mlp sign soft_hinge"
    assert [r["method"] for r in rows] == [f"{method} (optim.lr=0.001)", f"{method} (optim.lr=0.01)"]
    with pytest.raises(RunDirError, match="is given twice"):
        runs_table([run(0), run(0)])
    twin = Run(tmp_path / "twin", run(1).config, run(1).metrics, {})
    with pytest.raises(RunDirError, match=r"runs of one recipe with the same seed \(1\)"):
        runs_table([run(1), twin])
    _, rows = runs_table([run(0), run(1, "train.bf16=true")])
    assert [r["method"] for r in rows] == [f"{method} (train.bf16=False)", f"{method} (train.bf16=True)"]
    # one loss spelled two ways is one recipe; another planned length (which sets the schedule) is not
    _, rows = runs_table([run(0, "model.loss=sste"), run(1, "model.loss=saturated_hinge")])
    assert [(r["method"], r["runs"]) for r in rows] == [("mlp sign saturated_hinge", 2)]
    _, rows = runs_table([run(0), run(1, "train.epochs=6")])
    assert [r["method"] for r in rows] == [f"{method} (train.epochs=3)", f"{method} (train.epochs=6)"]


def test_report_refuses_runs_without_a_finished_epoch(tmp_path):
    from ftprop.report import write_report
    from ftprop.runs import config_to_toml

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.toml").write_text(config_to_toml(small_config()))
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirError, match="no finished epoch to report"):
        write_report([tmp_path / "r"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_plot_cut_short_leaves_the_old_picture(tmp_path, monkeypatch):
    import matplotlib.figure

    from ftprop.report import plot_runs

    history = [{"epoch": 1, "test_acc": 0.5, "train_acc": 0.6}, {"epoch": 2, "test_acc": 0.6, "train_acc": 0.7}]
    png = plot_runs([("a", history)], tmp_path / "curves.png")
    before = png.read_bytes()
    assert before.startswith(b"\x89PNG")

    def killed(self, f, **kw):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        plot_runs([("b", history)], png)
    assert png.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_plot_of_a_run_resumed_with_eval_train_switched_on(tmp_path):
    # a resume may switch train.eval_train on: the epochs before it have no train_eval_acc
    from ftprop.report import plot_runs

    history = [{"epoch": 1, "train_acc": 0.5, "test_acc": 0.4},
               {"epoch": 2, "train_acc": 0.6, "test_acc": 0.5, "train_eval_acc": 0.62}]
    png = plot_runs([("resumed", history)], tmp_path / "curves.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_plot_draws_run_names_and_titles_with_dollar_signs_literally(tmp_path):
    # a valid run name such as lr$_$sweep is the curve's label: as mathtext it failed the plot (and so
    # a finished run at its end-of-run plot) with a parse error
    from ftprop.report import plot_runs

    history = [{"epoch": 1, "train_acc": 0.5, "test_acc": 0.4}]
    png = plot_runs([("lr$_$sweep", history)], tmp_path / "curves.png", title="cost $x^$")
    assert png.read_bytes().startswith(b"\x89PNG")


# ---- the demo ------------------------------------------------------------------------------------

def test_report_and_demo_never_write_into_a_run_directory(tmp_path):
    from ftprop.demo import run_demo
    from ftprop.report import write_report

    train(small_config(epochs=1), tmp_path / "r", log=None)
    curves = (tmp_path / "r" / "curves.png").read_bytes()
    with pytest.raises(RunDirError, match="is a run directory: the report would overwrite"):
        write_report([tmp_path / "r"], tmp_path / "r")
    with pytest.raises(RunDirError, match="is a run directory: the demo would overwrite"):
        run_demo(tmp_path / "r", epochs=1, quiet=True)
    assert (tmp_path / "r" / "curves.png").read_bytes() == curves
    # nor over someone's own report.md, nor into a file; an earlier report is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("keep")
    with pytest.raises(RunDirError, match=r"mine holds report.md, not an earlier report's .* another --out"):
        write_report([tmp_path / "r"], tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["report.md"]
    assert (tmp_path / "mine" / "report.md").read_text() == "keep"
    (tmp_path / "afile").write_text("")
    with pytest.raises(RunDirError, match="afile is a file: --out names a folder"):
        write_report([tmp_path / "r"], tmp_path / "afile")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    write_report([tmp_path / "r"], tmp_path / "notes")  # beside files of other names
    first = (tmp_path / "notes" / "report.md").read_text()
    write_report([tmp_path / "r"], tmp_path / "notes", title="again")  # over its own earlier report
    assert (tmp_path / "notes" / "report.md").read_text() != first
    (tmp_path / "old").mkdir()  # an older report (no environments.json), or one cut short after report.json
    for name in ("report.json", "curves.png"):
        (tmp_path / "old" / name).write_text("")
    write_report([tmp_path / "r"], tmp_path / "old")
    assert json.loads((tmp_path / "old" / "report.json").read_text())
    assert (tmp_path / "notes" / "notes.txt").read_text() == "mine"


def test_demo_runs_end_to_end(tmp_path, capsys):
    from ftprop.demo import run_demo

    rows = run_demo(tmp_path, epochs=1)
    out = capsys.readouterr().out
    assert [r["method"] for r in rows] == ["sign FTP-SH", "sign SSTE", "ReLU (full precision)"]
    assert "| method | train acc (%) | test acc (%)" in out
    assert (tmp_path / "curves.png").is_file()
    assert all(r["test_acc"] > 0.5 for r in rows)  # one epoch already learns the digits


def test_demo_refuses_to_replace_a_run_that_is_not_its_own(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import ftprop.demo as demo
    from ftprop.runs import RunDirError, config_to_toml, read_run

    _fake_run(tmp_path / "relu", "convnet4", "relu", 1, acc=0.86)  # a user's run where the demo's ReLU would go
    with pytest.raises(RunDirError, match="relu holds a run that is not the demo's \\(convnet4-relu\\)"):
        demo.run_demo(tmp_path, epochs=1, quiet=True)
    assert read_run(tmp_path / "relu").metrics[-1]["test_acc"] == 0.86
    assert not (tmp_path / "sign_sste").exists()  # refused before anything trained
    # its own runs of an earlier call it replaces (train is stubbed: this checks the refusal only)
    (tmp_path / "relu" / "config.toml").write_text(config_to_toml(demo.demo_config({"activation": "relu"}, 1, 0)))
    trained = []
    row = {"epoch": 1, "train_acc": 0.9, "train_eval_acc": 0.9, "test_acc": 0.9}
    monkeypatch.setattr(demo, "train", lambda cfg, out, **kw: trained.append(out) or SimpleNamespace(
        history=[row], best_test_acc=0.9))
    demo.run_demo(tmp_path, epochs=1, quiet=True)
    assert [p.name for p in trained] == ["sign_ftp-sh", "sign_sste", "relu"]

import copy
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ftprop.config import Config, ConfigError, apply_overrides, config_from_dict, load_config
from ftprop.data import ArrayDataset
from ftprop.engine import NonFiniteLossError, evaluate, lr_at, train
from ftprop.runs import RunDirError, load_checkpoint, read_metrics, read_run

SMALL = ["model.options.hidden=[32]", "train.batch_size=128", "train.tensorboard=false", "train.device=cpu"]


def small_config(*extra: str, epochs: int = 3) -> Config:
    return apply_overrides(Config(name="t"), SMALL + [f"train.epochs={epochs}", *extra])


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("epoch_time_s", "train_images_per_s")} for r in rows]


def test_resume_continues_bit_for_bit(tmp_path):
    cfg = small_config("model.options.dropout=0.2")  # dropout: the global RNG must be reproduced too
    straight = train(cfg, tmp_path / "a", log=None)
    two = apply_overrides(cfg, ["train.epochs=2"])
    train(two, tmp_path / "b", log=None)
    resumed = train(cfg, tmp_path / "b", resume=True, log=None)
    assert states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert strip_times(straight.history) == strip_times(resumed.history)
    assert strip_times(read_metrics(tmp_path / "b" / "metrics.jsonl")) == strip_times(straight.history)
    ck = load_checkpoint(tmp_path / "b")
    assert ck["epoch"] == 3 and ck["step"] == 0
    env = json.loads((tmp_path / "b" / "environment.json").read_text())
    assert [r["after_epoch"] for r in env["resumed"]] == [2]  # where the run started, and each resume
    assert env["resumed"][0]["changed"] == {"train.epochs": [2, 3]}  # config.toml now says only 3
    assert env["cpu_model"] and env["cpu_count"] >= 1  # machines of one core count differ in speed


def test_same_seed_same_numbers_other_seed_differs():
    a = train(small_config(epochs=1), save=False, log=None)
    b = train(small_config(epochs=1), save=False, log=None)
    c = train(small_config("train.seed=1", epochs=1), save=False, log=None)
    assert strip_times(a.history) == strip_times(b.history)
    assert not states_equal(a.model.state_dict(), c.model.state_dict())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ftprop", *args]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train_args(out: Path, epochs: int) -> list[str]:
    return ["train", "--out", str(out), "--epochs", str(epochs), "--batch-size", "4", "--device", "cpu",
            "--set", "model.options.hidden=[256,256]", "--set", "train.tensorboard=false", "--seed", "3"]


@pytest.fixture(scope="module")
def straight_cli_run(tmp_path_factory):
    """The uninterrupted run that both killed runs below must reproduce: trained once for both, beside
    the first of them (one thread each); calling the fixture's value waits for it and gives its folder."""
    folder = tmp_path_factory.mktemp("straight")
    with open(folder / "output.txt", "wb") as output:
        proc = subprocess.Popen(_cli(*_train_args(folder / "run", 3)), env=_env(), stdout=output,
                                stderr=subprocess.STDOUT)

    def finished() -> Path:
        assert proc.wait(timeout=300) == 0, (folder / "output.txt").read_text()
        return folder / "run"

    yield finished
    if proc.poll() is None:  # a test failed before waiting for it
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_the_same_result(tmp_path, sig, straight_cli_run):
    """SIGKILL at an arbitrary moment, or SIGINT mid-epoch, then --resume: same weights as a straight run."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli(*_train_args(run, 3)), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)  # somewhere inside the second epoch (an epoch is 360 steps)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0].decode()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, output
        assert "resume with" in output
    else:  # killed mid-run, not after it had finished (which would leave nothing to resume)
        assert proc.returncode == -signal.SIGKILL, output
    assert load_checkpoint(run)["epoch"] >= 1  # never a corrupt file
    resumed = subprocess.run(_cli("train", "--resume", str(run)), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    straight = straight_cli_run()
    a, b = load_checkpoint(run), load_checkpoint(straight)
    assert states_equal(a["model"], b["model"])
    assert all(states_equal(a["optimizer"]["state"][k], b["optimizer"]["state"][k]) for k in b["optimizer"]["state"])
    assert strip_times(read_metrics(run / "metrics.jsonl")) == strip_times(read_metrics(straight / "metrics.jsonl"))


class EventAtBatch(ArrayDataset):
    """Passes one training batch's input through ``event``: batch ``batch`` of the ``epoch``-th call
    to ``batches`` (each subclass counts its calls; a test sets ``calls = 0`` first)."""

    calls, epoch, batch = 0, 2, 3

    def event(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def batches(self, batch_size, **kw):
        type(self).calls += 1
        for i, (x, y) in enumerate(super().batches(batch_size, **kw)):
            yield (self.event(x) if type(self).calls == self.epoch and i == self.batch else x), y


class PoisonedData(EventAtBatch):
    """Yields a NaN input at (epoch 2, batch 3), as bad data or a blow-up would."""

    calls = 0

    def event(self, x):
        x = x.clone()
        x[0, 0] = float("nan")
        return x


def _tiny_data(cls=ArrayDataset):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 1, 4, 4), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (256,), generator=gen)
    make = lambda c: c("tiny", "train", images, labels, ["a", "b", "c"], [0.5], [0.25])
    return {"train": make(cls), "test": make(ArrayDataset)}


@pytest.mark.parametrize("activation, where", [("relu", "epoch 2, step 3"), ("sign", "after epoch 2")])
def test_non_finite_training_stops_naming_where_and_keeps_checkpoint(tmp_path, activation, where):
    """ReLU nets show NaN in the loss at once; sign units swallow it (sign(NaN) = -1), so NaN
    weights are caught by the end-of-epoch parameter check."""
    PoisonedData.calls = 0
    cfg = small_config("train.batch_size=16", f"model.activation={activation}", epochs=3)
    with pytest.raises(NonFiniteLossError, match=where) as err:
        train(cfg, tmp_path / "r", data=_tiny_data(PoisonedData), log=None)
    assert "checkpoint (after epoch 1)" in str(err.value)
    assert load_checkpoint(tmp_path / "r")["epoch"] == 1
    assert len(read_metrics(tmp_path / "r" / "metrics.jsonl")) == 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())  # agrees with the metrics, says it failed
    assert summary["status"] == "failed: NonFiniteLossError" and summary["epochs"] == 1


def test_an_optimiser_step_past_float_range_is_a_clear_error_and_leaves_no_run(tmp_path):
    """Adam's first step size is lr / (1 - beta1) = 10 lr: lr 1e38 overflows float32 inside torch."""
    cfg = small_config("optim.name=adam", "optim.lr=1e38", epochs=1)
    with pytest.raises(NonFiniteLossError, match=r"optimiser step overflowed at epoch 1, step 0.*Lower optim.lr"):
        train(cfg, tmp_path / "r", data=_tiny_data(), log=None)
    assert not (tmp_path / "r").exists()
    with pytest.raises(NonFiniteLossError, match="overflowed"):  # the same error without a run directory
        train(cfg, save=False, data=_tiny_data(), log=None)


def test_multistep_schedule_follows_the_paper():
    cfg = config_from_dict({"optim": {"lr": 1.0}, "schedule": {"name": "multistep", "milestones": [200, 250]},
                            "train": {"epochs": 300}})
    lrs = {e: lr_at(cfg, e, 0, 10) for e in (1, 199, 200, 249, 250, 300)}
    assert lrs == pytest.approx({1: 1.0, 199: 1.0, 200: 0.1, 249: 0.1, 250: 0.01, 300: 0.01})


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_smooth_schedules_peak_and_decay(name):
    cfg = config_from_dict({"optim": {"lr": 1.0}, "schedule": {"name": name, "warmup_epochs": 2.0},
                            "train": {"epochs": 10}})
    lrs = [lr_at(cfg, e, s, 4) for e in range(1, 11) for s in range(4)]
    assert max(lrs) == pytest.approx(1.0, abs=0.02)
    assert lrs[-1] < 0.1 and lrs[0] < 0.1
    peak = lrs.index(max(lrs))
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b - 1e-12 for a, b in zip(lrs[peak:], lrs[peak + 1:]))


def test_config_errors_name_the_closest_key():
    with pytest.raises(ConfigError, match="Did you mean 'lr'"):
        apply_overrides(Config(), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="Did you mean 'optim'"):
        config_from_dict({"optimizer": {"lr": 1}})
    with pytest.raises(ConfigError, match="Choices: sgd, adam, adamw"):
        apply_overrides(Config(), ["optim.name=adma"])
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        apply_overrides(Config(), ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        apply_overrides(Config(), ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="needs a section"):
        apply_overrides(Config(), ["lr=1"])
    with pytest.raises(ConfigError, match="milestones"):
        apply_overrides(Config(), ["schedule.name=multistep"])
    with pytest.raises(ConfigError, match="Did you mean 'reduce-overhead'"):
        apply_overrides(Config(), ["train.compile=true", "train.compile_mode=reduce_overhead"])
    with pytest.raises(ConfigError, match="needs train.compile = true"):
        apply_overrides(Config(), ["train.compile_mode=max-autotune"])
    with pytest.raises(ConfigError, match="Did you mean 'layer_rms'"):
        apply_overrides(Config(), ["optim.lr_scaling=layer-rms"])
    with pytest.raises(ConfigError, match=re.escape("data.plain_last_epochs must be in [0, train.epochs = 3]")):
        apply_overrides(Config(), ["train.epochs=3", "data.plain_last_epochs=4"])
    for sets, what in [(["name=x", "name.y=1"], "name"), (["model.options=[1]", "model.options.a=1"], "model.options"),
                       (["model.options.hidden=5", "model.options.hidden.x=1"], "model.options.hidden")]:
        with pytest.raises(ConfigError, match=f"{re.escape(what)} is a value, not a table of keys"):
            apply_overrides(Config(), sets)
    for text, shown in [("2024", "2024"), ("true", "true"), ("2024-01-01", "2024-01-01")]:
        with pytest.raises(ConfigError, match=f"quote text that reads as another type: data.root='{shown}'"):
            apply_overrides(Config(), [f"data.root={text}"])
    assert apply_overrides(Config(), ["data.root='2024'"]).data.root == "2024"
    with pytest.raises(ConfigError, match="data.val_seed draws the validation split: it needs data.val_fraction > 0"):
        apply_overrides(Config(), ["data.val_seed=5"])  # else accepted and ignored


def test_config_text_round_trips_through_toml_or_is_refused():
    import tomllib

    from ftprop.runs import config_to_toml

    cfg = apply_overrides(Config(), ["name=a\x7fb é ✓", "data.root=/data/x\x7f"])  # TOML escapes DEL
    assert cfg.name == "a\x7fb é ✓" and cfg.data.root == "/data/x\x7f"
    assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg
    with pytest.raises(ConfigError, match="data.root = .* is not UTF-8 text .*rename it"):
        apply_overrides(Config(), ["data.root=/data/\udcff"])  # bytes of another encoding, as Python reads them
    with pytest.raises(ConfigError, match="other than UTF-8 text"):
        apply_overrides(Config(), ["name=run\udcff"])


def test_an_empty_set_value_unsets_an_optional_key_and_flags_turn_a_config_s_switches_off(tmp_path):
    from ftprop.cli import build_parser, resolve_train_config

    cfg = apply_overrides(Config(), ["train.teacher='runs/t'", "model.loss=sste"])
    unset = apply_overrides(cfg, ["train.teacher=", "model.loss= "])
    assert (unset.train.teacher, unset.model.loss) == (None, None)
    assert apply_overrides(cfg, ["train.teacher=", "train.twin=relu"]).train.twin == "relu"  # no longer both
    with pytest.raises(ConfigError, match="optim.lr must be float, got nothing .* unsets only the keys that may"):
        apply_overrides(cfg, ["optim.lr="])
    (tmp_path / "on.toml").write_text("[train]\nbf16 = true\neval_train = true\n[data]\ndownload = true\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "on.toml"), "--no-bf16", "--no-download"])
    resolved = resolve_train_config(args)
    assert (resolved.train.bf16, resolved.data.download, resolved.train.eval_train) == (False, False, True)


def test_every_config_file_in_the_repository_loads():
    paths = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.toml"))
    assert len(paths) > 10
    for path in paths:
        load_config(path)


def test_set_can_replace_an_options_table_and_ignores_spaces():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "recipes" / "fashion_mnist_mlp.toml")
    assert cfg.model.options == {"hidden": [1024, 1024], "batch_norm": True}
    assert apply_overrides(cfg, ["model.name=convnet4", "model.options={}"]).model.options == {}  # switch model
    assert apply_overrides(cfg, ["model.options={}", "model.options.hidden=[32]"]).model.options == {"hidden": [32]}
    assert apply_overrides(cfg, ["model.options.hidden=[32]"]).model.options == {"hidden": [32], "batch_norm": True}
    assert apply_overrides(cfg, ["train.device = cpu"]).train.device == "cpu"


@pytest.mark.parametrize("setting, message", [
    ("name=/tmp/x", "a run name names a folder under runs/"), ("name=../x", "must not be empty, start with '.'"),
    ("name=", "a run name"), ("data.val_seed=18446744073709551617", "data.val_seed must be in"),
])
def test_run_names_and_seeds_that_would_misplace_or_crash_a_run_are_refused(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(Config(), [setting])


def test_names_and_options_are_checked_before_the_data_loads(tmp_path):
    """An image folder takes minutes to index: a typo must not wait for it."""
    nowhere = ["data.name=imagefolder", f"data.root='{tmp_path / 'no-images'}'"]
    for setting, message in [("model.options.hiden=[512]", "takes no option 'hiden'"),
                             ("model.loss=softhinge", "Did you mean 'soft_hinge'"),
                             ("data.options.crop_pad=2", r"dataset 'imagefolder' takes no option 'crop_pad'.*"
                                                         r"switching datasets\? .*--set data.options=\{\}")]:
        with pytest.raises(ValueError, match=message):
            train(apply_overrides(Config(), [*nowhere, setting]), save=False, log=None)
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        train(apply_overrides(Config(), ["data.name=cifar11"]), save=False, log=None)


def test_impossible_combinations_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="full precision"):
        train(small_config("model.activation=relu", "model.steps=3"), tmp_path / "x", log=None)
    with pytest.raises(ValueError, match="takes no option"):
        train(small_config("model.options.widths=[3]"), tmp_path / "y", log=None)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("settings, message", [
    (["schedule.name=multistep", "schedule.milestones=[2]", "schedule.warmup_epochs=1"],
     "schedule.warmup_epochs applies to the cosine and onecycle schedules only, not 'multistep'"),
    (["schedule.final_lr_fraction=0.1"], "schedule.final_lr_fraction applies to the cosine and onecycle"),
    (["schedule.name=cosine", "schedule.gamma=0.5"], "schedule.gamma applies to the multistep schedule only"),
    (["optim.name=sgd", "optim.betas=[0.8,0.99]"], "optim.betas apply to adam and adamw only"),
    (["data.augment=false", "data.plain_last_epochs=1"], "data.augment = false already trains without it"),
])
def test_settings_the_schedule_or_optimiser_would_ignore_are_refused(settings, message):
    from ftprop.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(small_config(*settings))
    validate(small_config("schedule.name=onecycle", "schedule.warmup_epochs=1", "schedule.final_lr_fraction=0.1"))
    validate(small_config("schedule.name=multistep", "schedule.milestones=[2]", "schedule.gamma=0.5"))


def test_resume_with_different_model_refused_and_no_silent_overwrite(tmp_path):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    with pytest.raises(RunDirError, match="model.activation: 'sign' != 'relu'"):
        train(apply_overrides(cfg, ["model.activation=relu"]), tmp_path / "r", resume=True, log=None)
    with pytest.raises(RunDirError, match="--force"):
        train(cfg, tmp_path / "r", log=None)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunDirError):
        train(apply_overrides(cfg, ["model.activation=relu"]), tmp_path / "r", log=None)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before
    train(apply_overrides(cfg, ["model.activation=relu"]), tmp_path / "r", force=True, log=None)
    assert read_run(tmp_path / "r").config.model.activation == "relu"


def test_a_resume_with_another_dataset_is_refused_before_the_data_is_looked_for(tmp_path):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    with pytest.raises(RunDirError, match="data.name: 'digits' != 'cifar10'"):  # not "needs a data root"
        train(apply_overrides(cfg, ["data.name=cifar10", "train.epochs=2"]), tmp_path / "r", resume=True, log=None)


def test_resume_takes_new_optimiser_settings_and_data_location_but_not_another_optimiser(tmp_path):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    config_before = (tmp_path / "r" / "config.toml").read_text()
    with pytest.raises(RunDirError, match="optim.name: 'adam' != 'sgd'"):
        train(apply_overrides(cfg, ["optim.name=sgd", "train.epochs=2"]), tmp_path / "r", resume=True, log=None)
    assert (tmp_path / "r" / "config.toml").read_text() == config_before  # the run still resumes as it was
    more = apply_overrides(cfg, ["optim.weight_decay=0.01", "optim.betas=[0.8,0.99]", "data.root='/elsewhere'",
                                 "train.epochs=2"])
    train(more, tmp_path / "r", resume=True, log=None)
    group = load_checkpoint(tmp_path / "r")["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 0.01 and list(group["betas"]) == [0.8, 0.99]
    assert read_run(tmp_path / "r").config.optim.weight_decay == 0.01


def test_a_resume_that_fails_leaves_the_run_as_its_checkpoint_describes(tmp_path):
    """config.toml is rewritten with the resume's first checkpoint, not before: a plain --resume
    (which reads it) must not take up the settings of an attempt that failed."""
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    config_before = (tmp_path / "r" / "config.toml").read_text()
    with pytest.raises(NonFiniteLossError):
        train(apply_overrides(cfg, ["optim.lr=1e38", "train.epochs=2"]), tmp_path / "r", resume=True, log=None)
    assert (tmp_path / "r" / "config.toml").read_text() == config_before
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed: NonFiniteLossError" and summary["epochs"] == 1
    assert len(read_metrics(tmp_path / "r" / "metrics.jsonl")) == load_checkpoint(tmp_path / "r")["epoch"] == 1
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert "resumed" not in env  # the failed attempt trained nothing
    again = train(apply_overrides(read_run(tmp_path / "r").config, ["train.epochs=2"]), tmp_path / "r", resume=True,
                  log=None)
    assert again.summary["status"] == "completed" and again.summary["epochs"] == 2
    assert read_run(tmp_path / "r").config.train.epochs == 2


def test_resume_cannot_switch_the_weight_average_on_or_off(tmp_path):
    """With an average, test_acc measures it; switching it mid-run would mix two measures in one curve."""
    plain, averaged = small_config(epochs=1), small_config("train.ema_decay=0.99", epochs=1)
    train(plain, tmp_path / "plain", log=None)
    train(averaged, tmp_path / "avg", log=None)
    with pytest.raises(RunDirError, match=r"weight average on/off.*train.ema_decay: 0.0 != 0.99"):
        train(apply_overrides(averaged, ["train.epochs=2"]), tmp_path / "plain", resume=True, log=None)
    with pytest.raises(RunDirError, match=r"train.ema_decay: 0.99 != 0.0"):
        train(apply_overrides(plain, ["train.epochs=2"]), tmp_path / "avg", resume=True, log=None)
    slower = train(apply_overrides(averaged, ["train.ema_decay=0.995", "train.epochs=2"]), tmp_path / "avg",
                   resume=True, log=None)  # another decay is fine
    assert [("live_test_acc" in r) for r in slower.history] == [True, True]


def test_a_resume_without_a_checkpoint_does_not_train_the_recorded_epochs_over(tmp_path):
    cfg = small_config("train.checkpoint_every=5", epochs=2)
    train(cfg, tmp_path / "r", log=None)
    (tmp_path / "r" / "checkpoint.pt").unlink()  # as a kill before the first checkpoint leaves it
    metrics = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match=r"no checkpoint.pt, though metrics.jsonl records 2 epoch\(s\).*--force"):
        train(apply_overrides(cfg, ["train.epochs=3"]), tmp_path / "r", resume=True, log=None)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == metrics


def test_a_relative_data_root_is_recorded_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(small_config("data.root='data'", epochs=1), tmp_path / "r", log=None)
    assert read_run(tmp_path / "r").config.data.root == str(tmp_path / "data")


def test_mid_epoch_resume_refuses_another_batch_size(tmp_path):
    from ftprop.runs import save_checkpoint

    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    save_checkpoint(tmp_path / "r", {**state, "epoch": 0, "step": 3})  # as a stop inside epoch 1 leaves it
    with pytest.raises(RunDirError, match="train.batch_size: 128 != 64"):
        train(apply_overrides(cfg, ["train.batch_size=64"]), tmp_path / "r", resume=True, log=None)


def test_a_resumed_run_counts_the_epochs_and_the_time_before_its_checkpoint(tmp_path):
    """best_test_acc is the best of the whole run, and the summary's train_time_s adds the training time
    of the sessions before the resume: both made here larger than the resumed session could give."""
    from ftprop.runs import save_checkpoint

    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", data=_tiny_data(), log=None)
    state = load_checkpoint(tmp_path / "r")
    history = [{**state["history"][0], "test_acc": 2.0, "best_test_acc": 2.0}]  # no accuracy reaches it
    save_checkpoint(tmp_path / "r", {**state, "history": history, "elapsed": 1000.0})
    resumed = train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    assert resumed.history[-1]["best_test_acc"] == 2.0 and resumed.history[-1]["test_acc"] < 1
    assert (resumed.summary["best_test_acc"], resumed.summary["best_epoch"]) == (2.0, 1)
    assert 1000.0 <= resumed.summary["train_time_s"] < 1100.0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["train_time_s"] == resumed.summary["train_time_s"]


def test_resume_with_fewer_epochs_than_trained_is_refused(tmp_path):
    from ftprop.runs import save_checkpoint

    cfg = small_config(epochs=2)
    train(cfg, tmp_path / "r", log=None)
    config_before = (tmp_path / "r" / "config.toml").read_text()
    with pytest.raises(RunDirError, match="already trained 2 epochs; pass --epochs 2 or more"):
        train(apply_overrides(cfg, ["train.epochs=1"]), tmp_path / "r", resume=True, log=None)
    assert (tmp_path / "r" / "config.toml").read_text() == config_before  # still describes the run
    state = load_checkpoint(tmp_path / "r")
    save_checkpoint(tmp_path / "r", {**state, "epoch": 1, "step": 3})  # as a stop inside epoch 2 leaves it
    with pytest.raises(RunDirError, match="1 epochs and part of the next; pass --epochs 2"):
        train(apply_overrides(cfg, ["train.epochs=1"]), tmp_path / "r", resume=True, log=None)


class FailingData(ArrayDataset):
    """Fails on the first batch, as bad input that only training reveals would."""

    def batches(self, batch_size, **kw):
        raise RuntimeError("a corrupt example")
        yield


def test_a_new_run_that_fails_before_its_first_epoch_leaves_nothing_behind(tmp_path):
    cfg = small_config(epochs=1)
    with pytest.raises(RuntimeError, match="corrupt"):
        train(cfg, tmp_path / "new", data=_tiny_data(FailingData), log=None)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(RuntimeError, match="corrupt"):
        train(cfg, tmp_path / "mine", data=_tiny_data(FailingData), force=True, log=None)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]  # the user's file stays
    train(cfg, tmp_path / "new", data=_tiny_data(), log=None)  # the same command runs once the data is fixed
    # A resumed run keeps its files whatever happens.
    with pytest.raises(RuntimeError, match="corrupt"):
        train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "new", resume=True,
              data=_tiny_data(FailingData), log=None)
    assert len(read_metrics(tmp_path / "new" / "metrics.jsonl")) == 1


def test_force_replaces_a_run_only_once_the_new_one_has_trained_an_epoch(tmp_path):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    (tmp_path / "r" / "notes.txt").write_text("kept")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(NonFiniteLossError):  # the new run diverges in its first epoch: the old one comes back
        train(apply_overrides(cfg, ["optim.lr=1e38"]), tmp_path / "r", force=True, log=None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    train(apply_overrides(cfg, ["optim.lr=0.01"]), tmp_path / "r", force=True, log=None)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(before)  # nothing set aside is left
    assert read_run(tmp_path / "r").config.optim.lr == 0.01


def test_a_run_folder_in_use_by_another_process_is_refused_untouched(tmp_path, monkeypatch):
    """Two processes training into one folder would overwrite each other's checkpoints and log
    epochs twice: while one holds the folder, a resume, a --force and a plain run are refused."""
    fcntl = pytest.importorskip("fcntl")  # (where the system has no flock, nothing is held)
    from ftprop.runs import lock_run_dir

    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    held = os.open(tmp_path / "r", os.O_RDONLY)  # as the other process holds it
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        for kw in ({"resume": True}, {"force": True}, {}):
            with pytest.raises(RunDirError, match=r"is in use: another ftprop process is training in it"):
                train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", log=None, **kw)
        assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    finally:
        os.close(held)
    train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, log=None)  # given up: free
    os.close(lock_run_dir(tmp_path / "r"))  # and the run that ended gave the folder up
    with pytest.raises(NonFiniteLossError):  # so does one that failed
        train(apply_overrides(cfg, ["train.epochs=3", "optim.lr=1e38"]), tmp_path / "r", resume=True, log=None)
    os.close(lock_run_dir(tmp_path / "r"))

    def cannot_lock(fd, how):  # as NFS answers for a directory
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", cannot_lock)
    assert lock_run_dir(tmp_path / "r") is None  # nothing held, and training goes on
    train(apply_overrides(cfg, ["train.epochs=3"]), tmp_path / "r", resume=True, log=None)


def test_evaluate_notes_a_run_still_training_and_a_closed_pipe_stops_training_with_status_1(tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    from ftprop.cli import main

    train(small_config(epochs=1), tmp_path / "r", log=None)
    held = os.open(tmp_path / "r", os.O_RDONLY)  # as a run training in it holds it
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert main(["evaluate", str(tmp_path / "r")]) == 0
    finally:
        os.close(held)
    assert "is still training; this is its last checkpoint (epoch 1)" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    assert "still training" not in capsys.readouterr().err
    # `ftprop train ... | head -1`: the closed pipe stops the run, which says so and exits 1, not 0
    cmd = [sys.executable, "-m", "ftprop", "train", "--epochs", "500", "--set", "model.options.hidden=[16]",
           "--set", "train.tensorboard=false", "--out", str(tmp_path / "piped")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()  # as head does once it has its line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, err
    assert "a closed pipe" in err and "--resume" in err


def test_a_run_refused_a_folder_another_process_took_first_leaves_it_alone(tmp_path, monkeypatch):
    """Another process makes and takes the new folder between this run's making it and holding it:
    this run is refused, and its clean-up does not delete the other's files."""
    fcntl = pytest.importorskip("fcntl")
    import ftprop.engine as engine

    made = engine.prepare_run_dir
    held = []

    def the_other_takes_it(cfg, out, resume, force):
        run_dir, state = made(cfg, out, resume, force)
        held.append(os.open(run_dir, os.O_RDONLY))
        fcntl.flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        (run_dir / "config.toml").write_text("the other run's")
        return run_dir, state

    monkeypatch.setattr(engine, "prepare_run_dir", the_other_takes_it)
    try:
        with pytest.raises(RunDirError, match="is in use"):
            train(small_config(epochs=1), tmp_path / "r", log=None)
        assert (tmp_path / "r" / "config.toml").read_text() == "the other run's"
    finally:
        os.close(held[0])


def test_a_force_after_a_killed_force_still_gives_the_first_run_back(tmp_path):
    from ftprop.runs import config_to_toml, set_aside

    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    set_aside(tmp_path / "r")  # a --force run killed in its first epoch: the first run aside, its own files
    (tmp_path / "r" / "config.toml").write_text(config_to_toml(apply_overrides(cfg, ["optim.lr=0.5"])))
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    half = {p.name for p in (tmp_path / "r").iterdir()}
    # a resume would train the killed run from scratch and drop the one set aside at its first checkpoint
    with pytest.raises(RunDirError, match=r"cannot resume .*stopped before its first checkpoint.*\.replaced-run"):
        train(apply_overrides(cfg, ["optim.lr=0.5"]), tmp_path / "r", resume=True, log=None)
    with pytest.raises(RunDirError, match=r"r: a --force run replacing the run there stopped before its first"):
        train(cfg, tmp_path / "r", log=None)  # not "use --resume"
    with pytest.raises(RunDirError, match=r"no checkpoint at .*: a --force run replacing .* waits in .*delete what "
                                          r"the stopped run left in .* \(metrics.jsonl, config.toml\) and move"):
        load_checkpoint(tmp_path / "r")
    assert {p.name for p in (tmp_path / "r").iterdir()} == half
    with pytest.raises(NonFiniteLossError):  # a second --force that fails before its first checkpoint
        train(apply_overrides(cfg, ["optim.lr=1e38"]), tmp_path / "r", force=True, log=None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_a_failed_resume_of_a_run_without_a_checkpoint_leaves_its_description(tmp_path):
    cfg = small_config(epochs=2)
    with pytest.raises(RuntimeError, match="corrupt"):  # as a run killed in its first epoch leaves it
        train(cfg, tmp_path / "r", data=_tiny_data(FailingData), log=None)
    train(cfg, tmp_path / "r", data=_tiny_data(), log=None)
    (tmp_path / "r" / "checkpoint.pt").unlink()
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    files = {n: (tmp_path / "r" / n).read_text() for n in ("config.toml", "environment.json")}
    with pytest.raises(RuntimeError, match="corrupt"):
        train(apply_overrides(cfg, ["optim.lr=0.5"]), tmp_path / "r", resume=True,
              data=_tiny_data(FailingData), log=None)
    assert {n: (tmp_path / "r" / n).read_text() for n in files} == files  # not the failed attempt's lr
    done = train(apply_overrides(cfg, ["optim.lr=0.01"]), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    assert done.status == "completed" and read_run(tmp_path / "r").config.optim.lr == 0.01
    assert json.loads((tmp_path / "r" / "environment.json").read_text())["resumed"][-1]["changed"]


def test_a_stop_at_an_epochs_end_saves_the_epoch_it_says_it_saved(tmp_path):
    from ftprop.engine import TrainingStopped

    def stop_once_epoch_1_is_logged(line):  # after the checkpoint's turn (none is due at epoch 1)
        if line.startswith("epoch   1"):
            os.kill(os.getpid(), signal.SIGINT)

    cfg = small_config("train.checkpoint_every=2", epochs=3)
    with pytest.raises(TrainingStopped, match="state saved in"):
        train(cfg, tmp_path / "r", data=_tiny_data(), log=stop_once_epoch_1_is_logged)
    assert load_checkpoint(tmp_path / "r")["epoch"] == 1
    resumed = train(cfg, tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    straight = train(cfg, tmp_path / "s", data=_tiny_data(), log=None)
    assert strip_times(resumed.history) == strip_times(straight.history)


def test_runs_started_within_a_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dirs = [train(small_config(f"train.seed={i}", epochs=1), data=_tiny_data(), log=None).run_dir for i in range(3)]
    assert len(set(dirs)) == 3 and all((d / "checkpoint.pt").is_file() for d in dirs)
    assert [read_run(d).config.train.seed for d in dirs] == [0, 1, 2]


class FailsInEpoch2(ArrayDataset):
    """Trains one epoch, then fails, as a run killed by bad input past its first epoch would."""

    calls = 0

    def batches(self, batch_size, **kw):
        FailsInEpoch2.calls += 1
        if FailsInEpoch2.calls > 1:
            raise RuntimeError("a corrupt example")
        yield from super().batches(batch_size, **kw)


def test_force_gives_the_old_run_back_when_the_new_one_fails_before_its_first_checkpoint(tmp_path):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    FailsInEpoch2.calls = 0
    with pytest.raises(RuntimeError, match="corrupt"):  # one epoch logged, none checkpointed
        train(small_config("train.checkpoint_every=5", epochs=3), tmp_path / "r", force=True,
              data=_tiny_data(FailsInEpoch2), log=None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


def test_a_failed_resume_keeps_the_epochs_logged_past_its_checkpoint(tmp_path):
    from ftprop.runs import save_checkpoint

    cfg = small_config("train.checkpoint_every=5", epochs=3)
    train(cfg, tmp_path / "r", data=_tiny_data(), log=None)
    state = load_checkpoint(tmp_path / "r")  # as a kill after epoch 3 of a run saved at epoch 2 leaves it
    save_checkpoint(tmp_path / "r", {**state, "epoch": 2, "history": state["history"][:2]})
    metrics = (tmp_path / "r" / "metrics.jsonl").read_text()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    with pytest.raises(RuntimeError, match="corrupt"):
        train(apply_overrides(cfg, ["train.epochs=4"]), tmp_path / "r", resume=True,
              data=_tiny_data(FailingData), log=None)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == metrics
    # the summary still agrees with metrics.jsonl (3 epochs, not the checkpoint's 2), and says it failed
    assert json.loads((tmp_path / "r" / "summary.json").read_text()) == {**summary, "status": "failed: RuntimeError"}
    done = train(apply_overrides(cfg, ["train.epochs=4"]), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    assert [r["epoch"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2, 3, 4]
    assert [r["epoch"] for r in done.history] == [1, 2, 3, 4]


class InterruptedFirstEpoch(EventAtBatch):
    """Sends this process SIGINT at batch 2 of the first epoch it trains."""

    calls, epoch, batch = 0, 1, 2

    def event(self, x):
        os.kill(os.getpid(), signal.SIGINT)
        return x


def test_a_resume_stopped_in_its_first_epoch_leaves_metrics_and_summary_agreeing_with_its_checkpoint(tmp_path):
    """Stopped inside its first epoch, a resume saves a checkpoint of the epochs before: the epochs
    logged past the old checkpoint can no longer be resumed, so metrics.jsonl and summary.json both
    say what the new checkpoint holds."""
    from ftprop.engine import TrainingStopped
    from ftprop.runs import save_checkpoint

    cfg = small_config("train.checkpoint_every=5", "train.batch_size=16", epochs=3)
    train(cfg, tmp_path / "r", data=_tiny_data(), log=None)
    state = load_checkpoint(tmp_path / "r")  # as a kill after epoch 3 of a run saved at epoch 2 leaves it
    save_checkpoint(tmp_path / "r", {**state, "epoch": 2, "history": state["history"][:2]})
    InterruptedFirstEpoch.calls = 0
    with pytest.raises(TrainingStopped):
        train(apply_overrides(cfg, ["train.epochs=4"]), tmp_path / "r", resume=True,
              data=_tiny_data(InterruptedFirstEpoch), log=None)
    ck = load_checkpoint(tmp_path / "r")
    assert (ck["epoch"], ck["step"]) == (2, 3)
    assert [r["epoch"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["epochs"], summary["status"]) == (2, "stopped")
    train(apply_overrides(cfg, ["train.epochs=4"]), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    assert [r["epoch"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2, 3, 4]


@pytest.mark.parametrize("text", ['{"torch": "2', "[]", '{"resumed": 3}'])
def test_a_resume_refuses_an_unreadable_environment_file_before_training(tmp_path, text):
    cfg = small_config(epochs=1)
    train(cfg, tmp_path / "r", log=None)
    (tmp_path / "r" / "environment.json").write_text(text)
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(RunDirError, match=r"environment.json is unreadable .*move it away and resume again"):
        train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, log=None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == files
    (tmp_path / "r" / "environment.json").unlink()
    train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, log=None)
    assert "torch" in json.loads((tmp_path / "r" / "environment.json").read_text())


def test_cli_errors_say_what_is_wrong(tmp_path, capsys):
    from ftprop.cli import main

    (tmp_path / "afile").write_text("")
    (tmp_path / "latin1.toml").write_bytes(b"name = '\xff'\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    train(small_config(epochs=1), tmp_path / "run", log=None)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.toml").write_text((tmp_path / "run" / "config.toml").read_text())
    (tmp_path / "broken" / "summary.json").write_text("{")
    cases = [(["train", "--config", str(tmp_path)], "is a directory, not a TOML file"),
             (["train", "--config", str(tmp_path / "latin1.toml")], "latin1.toml is not UTF-8 text"),
             (["evaluate", str(tmp_path / "nowhere")], "no such directory"),
             (["evaluate", str(tmp_path / "notes")], "is not an ftprop run directory"),
             (["evaluate", str(tmp_path / "run" / "chekpoint.pt")], "no checkpoint file"),
             (["evaluate", str(tmp_path / "run"), "--split", "val"], "trained without a validation split"),
             (["train", "--out", str(tmp_path / "notes"), "--epochs", "1"], "other files (not a run)"),
             (["report", str(tmp_path / "broken"), "--out", str(tmp_path / "rep")], "summary.json is not valid JSON"),
             (["train", "--set", "train.seed=18446744073709551616"], "train.seed must be in [0, 2^63)"),
             (["train", "--teacher", str(tmp_path / "notes"), "--out", str(tmp_path / "s")],
              "notes is not an ftprop run directory"),
             (["train", "--out", str(tmp_path / "afile"), "--epochs", "1"], "afile is a file: --out names"),
             (["train", "--resume", str(tmp_path / "run"), "--force"], "--force would replace it: give one of them"),
             (["evaluate", str(tmp_path / "broken")], "the run has not saved one yet")]
    if not torch.cuda.is_available():
        cases.append((["evaluate", str(tmp_path / "run"), "--device", "cuda"], "--device = 'cuda' but no CUDA"))
    for argv, message in cases:
        assert main(argv) != 0, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        main(["train", "--schedule", "multistep", "--milestones", "a,b"])
    assert "'a,b': a comma-separated list of epoch numbers, e.g. 200,250" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "run"), "--batch-size", "0"])
    assert "argument --batch-size: '0': a whole number, at least 1" in capsys.readouterr().err
    # an unknown option is said by the command's own parser, with the option meant
    for argv, said in [(["train", "--modle", "mlp"],
                        "ftprop train: error: unrecognized arguments: --modle mlp (--modle: did you mean --model?)"),
                       (["evaluate", str(tmp_path / "run"), "--lvie"],
                        "ftprop evaluate: error: unrecognized arguments: --lvie (--lvie: did you mean --live?)")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err
    for argv, said in [(["train", "--distill-weight", "0.9"],
                        "(--distill-weight: a config key, not an option: --set train.distill_weight=VALUE)"),
                       (["train", "--no-force"], "(--no-force: no such option; --force is off unless given)"),
                       (["--verison"], "required: COMMAND (--verison: did you mean --version?)"),
                       (["solve", "--dta", "parity:3"], "required: --data/-d (--dta: did you mean --data?)"),
                       # before the command, an option train takes is not blamed on train
                       (["--force", "train"], "--force: a command's options go after its name: ftprop train --force"),
                       (["--epochs", "3", "train"], "--epochs 3: a command's options go after its name")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err
    assert main(["train", "--set", "model.name=convnet4", "--set", "model.options.hidden=[8]"]) != 0
    assert "switching models? drop the other model's options" in capsys.readouterr().err
    assert main(["train", "--set", "model.options.hiden=[8]"]) != 0  # a typo: the option meant, not a switch
    err = capsys.readouterr().err
    assert "'hiden': did you mean 'hidden'?" in err and "switching models" not in err
    assert main(["evaluate", str(tmp_path / "run"), "--download"]) == 0  # evaluate fetches what it lacks, as train


def test_evaluate_prints_only_json_on_stdout(tmp_path, capsys):
    from ftprop.cli import main
    from ftprop.runs import save_checkpoint

    train(small_config(epochs=1), tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    save_checkpoint(tmp_path / "r", {**state, "epoch": 0, "step": 3})  # as a stop inside epoch 1 leaves it
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["epoch"] == 0 and "saved mid-epoch" in captured.err
    bf16_run = {**state["config"], "train": {**state["config"]["train"], "bf16": True}}
    save_checkpoint(tmp_path / "r", {**state, "config": bf16_run})  # as a GPU run under autocast leaves it
    assert main(["evaluate", str(tmp_path / "r"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["bf16"] is True  # evaluated under autocast, as the run evaluated itself


def test_a_closed_pipe_ends_the_cli_quietly():
    cmd = [sys.executable, "-c", "import sys; from ftprop.cli import main; sys.exit(main(['losses']))"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before the first line, as `| head -0` would
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err


def test_run_names_outside_ascii_read_back(tmp_path):
    cfg = small_config("name='run😀 ü'", "data.root='/tmp/dätä'", epochs=1)
    train(cfg, tmp_path / "r", log=None)
    back = read_run(tmp_path / "r").config
    assert back.name == "run😀 ü" and back.data.root == "/tmp/dätä"
    train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, log=None)


def test_non_finite_settings_and_unknown_devices_are_refused():
    from ftprop.engine import resolve_device

    for value in ("inf", "nan"):  # NaN fails every range check: it is named as what it is
        with pytest.raises(ConfigError, match=f"optim.lr = {value}: give a finite number"):
            train(small_config(f"optim.lr={value}"), save=False, log=None)
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_resume_compares_models_not_spellings():
    from ftprop.runs import resume_differences

    cfg = small_config()  # sign units, loss and weighting left to their defaults
    same = ["model.loss='soft_hinge'", "model.loss='ftp_sh'", "model.weighted=true", "data.name='DIGITS'",
            "model.options.dropout=0", "model.name='MLP'"]  # an int for the float default; the model in capitals
    for change in same:
        assert resume_differences(cfg, apply_overrides(cfg, [change]), mid_epoch=True) == [], change
    assert resume_differences(cfg, apply_overrides(cfg, ["model.loss='sste'"]), mid_epoch=False) == [
        "model.loss: 'soft_hinge' != 'saturated_hinge'"]
    assert resume_differences(cfg, apply_overrides(cfg, ["model.weighted=false"]), mid_epoch=False) == [
        "model.weighted: True != False"]
    # another activation: that one difference, not the unit settings only a threshold unit resolves
    sste = apply_overrides(cfg, ["model.loss='sste'"])
    assert resume_differences(sste, apply_overrides(cfg, ["model.activation='relu'"]), mid_epoch=False) == [
        "model.activation: 'sign' != 'relu'"]
    # activation aliases, and the steps the reference's 'staircase3' fixes
    assert resume_differences(cfg, apply_overrides(cfg, ["model.activation='step11'"]), mid_epoch=True) == []
    stair3 = apply_overrides(cfg, ["model.activation='staircase3'"])
    for change in (["model.activation='staircase'"], ["model.activation='qrelu'", "model.steps=3"],
                   ["model.steps=3", "model.loss='soft_hinge'"]):
        assert resume_differences(stair3, apply_overrides(stair3, change), mid_epoch=True) == [], change
    assert resume_differences(stair3, apply_overrides(cfg, ["model.activation='staircase'", "model.steps=5"]),
                              mid_epoch=False) == ["model.steps: 3 != 5"]
    # options at their defaults, written out or not, and a tuple for the list a TOML file gives
    for change in (["model.options.batch_norm=true", "model.options.dropout=0"], ["model.options.hidden=[32]"]):
        assert resume_differences(cfg, apply_overrides(cfg, change), mid_epoch=True) == [], change
    tupled = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options={"hidden": (32,)}))
    assert resume_differences(cfg, tupled, mid_epoch=True) == []
    assert resume_differences(cfg, apply_overrides(cfg, ["model.options.dropout=0.1"]), mid_epoch=False) == [
        "model.options.dropout: 0.0 != 0.1"]
    fashion = apply_overrides(cfg, ["data.name='fashion_mnist'"])
    assert resume_differences(fashion, apply_overrides(cfg, ["data.name='fashion-mnist'"]), mid_epoch=True) == []
    cifar = apply_overrides(cfg, ["data.name='cifar10'", "model.name='convnet4'", "model.options={}"])
    assert resume_differences(cifar, apply_overrides(cifar, ["data.options.crop_pad=4",
                                                             "model.options.batch_norm=false"]), mid_epoch=True) == []
    assert resume_differences(cifar, apply_overrides(cifar, ["data.options.crop_pad=2"]), mid_epoch=False) == [
        "data.options.crop_pad: 4 != 2"]
    twin = apply_overrides(cfg, ["train.twin='relu'"])
    assert resume_differences(twin, apply_overrides(cfg, ["train.twin=' ReLU'"]), mid_epoch=True) == []
    assert resume_differences(twin, apply_overrides(cfg, ["train.twin='saturated_relu'"]), mid_epoch=False) == [
        "train.twin: 'relu' != 'saturated_relu'"]


def test_run_labels_name_the_model_not_its_spelling():
    from ftprop.runs import Run

    def label(*changes):
        return Run(Path("r"), apply_overrides(small_config(), list(changes)), [], {}).label

    assert label() == "mlp sign soft_hinge"
    assert label("model.activation='staircase3'") == label("model.activation='qrelu'") == "mlp staircase soft_hinge"
    assert label("model.loss='sste'", "model.weighted=false").endswith("sign saturated_hinge unweighted")
    assert label("model.activation='satrelu'").endswith(" saturated_relu")


def test_mid_epoch_resume_refuses_another_seed(tmp_path):
    from ftprop.runs import resume_differences

    cfg = small_config()
    other = apply_overrides(cfg, ["train.seed=5"])
    assert resume_differences(cfg, other, mid_epoch=True) == ["train.seed: 0 != 5"]
    assert resume_differences(cfg, other, mid_epoch=False) == []  # a new epoch draws its own order


def test_config_changes_lists_every_changed_setting():
    from ftprop.runs import config_changes

    cfg = small_config()
    other = apply_overrides(cfg, ["train.epochs=9", "optim.lr=0.5", "data.options.crop_pad=2"])
    assert config_changes(cfg, cfg) == {}
    assert config_changes(cfg, apply_overrides(cfg, ["model.options.batch_norm=true"])) == {}  # mlp's default
    assert config_changes(cfg, other) == {"data.options.crop_pad": [None, 2], "optim.lr": [cfg.optim.lr, 0.5],
                                          "train.epochs": [3, 9]}


def test_adam_step_counts_go_where_this_runs_capturable_wants_them():
    """load_state_dict places each step count by the groups' capturable: this run's, not the
    checkpoint's (an eager run's checkpoint resumed with CUDA graphs needs them on the device)."""
    from ftprop.engine import _load_optimizer_state

    w = torch.nn.Parameter(torch.zeros(3))
    eager = torch.optim.Adam([w], lr=1e-3)
    w.grad = torch.ones(3)
    eager.step()
    on_meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    graphs = torch.optim.Adam([on_meta], lr=1e-3, capturable=True)
    _load_optimizer_state(graphs, eager.state_dict())
    assert graphs.state[on_meta]["step"].device.type == "meta" and graphs.param_groups[0]["capturable"]


def test_batch_norm_check_refuses_only_one_value_per_channel():
    from ftprop.engine import _check_batches

    cpu = torch.device("cpu")
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2))
    _check_batches(conv, (1, 4, 4), 9, 4, cpu)  # a last batch of one 4x4 map: 16 values per channel
    _check_batches(conv, (1, 4, 4), 9, 1, cpu)
    dense = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2), torch.nn.BatchNorm1d(2))
    _check_batches(dense, (1, 4, 4), 10, 4, cpu)  # 10 = 2 x 4 + 2
    with pytest.raises(ConfigError, match=r"e\.g\. 5\)"):  # 9 = 2 x 4 + 1; 9 % 5 = 4
        _check_batches(dense, (1, 4, 4), 9, 4, cpu)
    with pytest.raises(ConfigError, match=r"e\.g\. 2\)"):
        _check_batches(dense, (1, 4, 4), 10, 1, cpu)
    assert dense.training  # the probe leaves the mode as it found it
    with pytest.raises(ConfigError, match="the training set holds one example"):  # no batch size can help
        _check_batches(dense, (1, 4, 4), 1, 4, cpu)


def test_bad_input_found_before_the_run_directory_is_made(tmp_path):
    with pytest.raises(ConfigError, match="one example, and batch norm"):  # 1438 = 3 x 479 + 1
        train(small_config("train.batch_size=479"), tmp_path / "a", log=None)
    with pytest.raises(ValueError, match="option 'hidden' must be a list"):
        train(small_config("model.options.hidden=512"), tmp_path / "b", log=None)
    with pytest.raises(ValueError, match="holds out all 1438"):
        train(small_config("data.val_fraction=0.9999"), tmp_path / "c", log=None)
    with pytest.raises(ConfigError, match="leaves no decay"):
        apply_overrides(Config(), ["schedule.name=onecycle", "schedule.warmup_epochs=10", "train.epochs=10"])
    assert not any((tmp_path / d).exists() for d in "abc")


def test_force_clears_the_old_runs_tensorboard_logs(tmp_path):
    train(small_config(epochs=1), tmp_path / "r", log=None)
    (tmp_path / "r" / "tensorboard").mkdir()
    (tmp_path / "r" / "tensorboard" / "events.old").write_text("x")
    train(small_config(epochs=1), tmp_path / "r", force=True, log=None)
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_load_model_gives_the_trained_network_for_inference(tmp_path):
    from ftprop import load_model
    from ftprop.data import load_dataset
    from ftprop.runs import save_checkpoint

    result = train(small_config("train.ema_decay=0.9", epochs=1), tmp_path / "r", log=None)
    test = load_dataset("digits", split="test")
    model = load_model(tmp_path / "r")
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert states_equal(model.state_dict(), result.ema_model.state_dict())  # the weight average, by default
    assert evaluate(model, test)["acc"] == result.history[-1]["test_acc"]
    live = load_model(tmp_path / "r" / "checkpoint.pt", live=True)
    assert states_equal(live.state_dict(), result.model.state_dict())
    assert evaluate(live, test)["acc"] == result.history[-1]["live_test_acc"]
    state = load_checkpoint(tmp_path / "r")
    del state["data"], state["format"]  # as an older ftprop wrote it
    save_checkpoint(tmp_path / "r", state)
    with pytest.raises(RunDirError, match="does not record its dataset's classes.*ftprop evaluate"):
        load_model(tmp_path / "r")
    with pytest.raises(RunDirError, match="no run at"):
        load_model(tmp_path / "nothing")


def test_a_dataset_whose_sizes_are_numpy_ints_still_gives_a_loadable_checkpoint(tmp_path):
    import numpy as np

    from ftprop import load_model

    class NumpySizes(ArrayDataset):
        @property
        def input_shape(self):
            return tuple(np.int64(v) for v in super().input_shape)

    train(small_config(epochs=1), tmp_path / "r", data=_tiny_data(NumpySizes), log=None)
    record = load_checkpoint(tmp_path / "r")["data"]
    assert (record["num_classes"], record["input_shape"], record["classes"]) == (3, [1, 4, 4], ["a", "b", "c"])
    assert load_model(tmp_path / "r")(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_a_figure_that_cannot_be_drawn_does_not_fail_a_finished_run(tmp_path, monkeypatch):
    from ftprop import report

    def broken(*args, **kwargs):
        raise ValueError("mathtext parse error\nUnknown symbol: \\_")

    monkeypatch.setattr(report, "plot_runs", broken)
    said = []
    result = train(small_config(epochs=1), tmp_path / "r", data=_tiny_data(), log=said.append)
    assert result.status == "completed" and not (tmp_path / "r" / "curves.png").exists()
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "completed"
    assert any("curves could not be drawn (ValueError: Unknown symbol" in m and "ftprop report" in m for m in said)


def test_run_directory_contents_and_evaluate(tmp_path, capsys):
    from ftprop.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--out", str(out), "--epochs", "2", "--activation", "staircase", "--loss", "sste",
               "--set", "model.options.hidden=[32]", "--set", "train.tensorboard=false", "--device", "cpu",
               "--eval-train"])
    assert rc == 0
    for name in ("config.toml", "environment.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "curves.png"):
        assert (out / name).is_file(), name
    cfg = load_config(out / "config.toml")
    assert cfg.model.activation == "staircase" and cfg.model.loss == "sste"
    env = json.loads((out / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and "git_commit" in env
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_acc", "train_loss", "test_acc", "test_loss", "train_eval_acc", "best_test_acc"} <= set(rows[0])
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc"] == pytest.approx(rows[-1]["test_acc"]) and result["tta"] is None
    assert main(["evaluate", str(out), "--tta", "flip"]) == 0
    captured = capsys.readouterr()
    mirrored = json.loads(captured.out)
    assert mirrored["tta"] == "flip" and mirrored["loss"] != pytest.approx(result["loss"])
    assert "not mirror-symmetric" in captured.err  # digits: said, not refused
    assert main(["train", "--out", str(out), "--epochs", "1"]) == 1  # a clear error, not a traceback
    assert "--force" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x"), "--compile-mode", "reduce-overhead"]) == 2  # usage
    assert "needs train.compile = true" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # on a CPU the latter has no CUDA graphs
def test_compiled_training_step_matches_eager(tmp_path, cpu_inductor, mode):
    """train.compile compiles the model and the optimiser update; same learning as eager, also resumed."""
    train(small_config(epochs=2), tmp_path / "e", log=None)
    eager = train(small_config(epochs=3), tmp_path / "e", resume=True, log=None)
    opts = ["train.compile=true", f"train.compile_mode={mode}"]
    train(small_config(*opts, epochs=2), tmp_path / "c", log=None)
    # the tensor learning rate survives the checkpoint, and the resumed compiled run goes on as eager's does
    compiled = train(small_config(*opts, epochs=3), tmp_path / "c", resume=True, log=None)
    assert len(compiled.history) == len(eager.history) == 3
    for a, b in zip(eager.history, compiled.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.02)


@pytest.mark.slow
def test_a_compiled_step_trains_a_twin_as_eager_does(cpu_inductor):
    twin = ["train.twin=relu", "train.distill_weight=1", "train.distill_temperature=1"]
    eager = train(small_config(*twin, epochs=1), save=False, log=None)
    compiled = train(small_config(*twin, "train.compile=true", epochs=1), save=False, log=None)
    for key in ("train_loss", "twin_test_loss"):
        assert eager.history[0][key] == pytest.approx(compiled.history[0][key], rel=1e-3)
    assert eager.history[0]["twin_test_acc"] == pytest.approx(compiled.history[0]["twin_test_acc"], abs=0.02)


def test_tensorboard_scalars_are_written(tmp_path):
    # tensorboard is a dev dependency (pyproject.toml) so that this runs: missing, it is an error, not a skip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(small_config("train.tensorboard=true", epochs=2), tmp_path / "r", data=_tiny_data(), log=None)
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    history = read_metrics(tmp_path / "r" / "metrics.jsonl")
    test_acc = [e.value for e in acc.Scalars("test_acc")]
    assert [e.step for e in acc.Scalars("test_acc")] == [1, 2]
    assert test_acc == pytest.approx([h["test_acc"] for h in history], abs=1e-6)
    # a resume from an older checkpoint (as a kill between checkpoints leaves it) trains epoch 3 again:
    # its curve must not hold epoch 3 twice
    older = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    train(small_config("train.tensorboard=true", epochs=3), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    (tmp_path / "r" / "checkpoint.pt").write_bytes(older)
    train(small_config("train.tensorboard=true", epochs=3), tmp_path / "r", resume=True, data=_tiny_data(), log=None)
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("test_acc")] == [1, 2, 3]


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_buffers_made_before_the_first_step_change_nothing(nesterov):
    """CUDA-graph training makes SGD's momentum buffers up front (zeros); the steps are identical."""
    from ftprop.engine import _make_momentum_buffers

    torch.manual_seed(0)
    base = torch.nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    params = []
    for early in (False, True):
        m = torch.nn.Linear(5, 3)
        m.load_state_dict(base.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
        if early:
            _make_momentum_buffers(opt)
        for _ in range(3):
            opt.zero_grad()
            ((m(x) - y) ** 2).sum().backward()
            opt.step()
        params.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))


def test_optimizer_state_of_a_compiled_gpu_run_loads_for_eager_training():
    """A compiled run saves a tensor learning rate, and on a GPU capturable=True; resuming it
    without compilation (or on a CPU) gets this run's float rate and capturable=False, and steps;
    the other settings are this run's too, the moments the checkpoint's."""
    from ftprop.engine import _load_optimizer_state

    m = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(3, 4)).sum().backward()
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0].update(lr=torch.tensor(0.5), capturable=True)
    fresh = torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=0.25, betas=(0.8, 0.99))
    _load_optimizer_state(fresh, saved)
    group = fresh.param_groups[0]
    assert group["lr"] == 1e-3 and isinstance(group["lr"], float) and group["capturable"] is False
    assert group["weight_decay"] == 0.25 and group["betas"] == (0.8, 0.99)
    assert torch.equal(fresh.state[m.weight]["exp_avg"], opt.state[m.weight]["exp_avg"])
    fresh.step()  # a capturable=True group would refuse to step on the CPU
    assert fresh.state[m.weight]["step"].item() == 2


def test_weight_average_is_the_running_average():
    from ftprop.engine import WeightAverage

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    avg = WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(8, 3))  # BN: running statistics and the integer batch count move
        avg.update()
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    got = avg.model.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, msg=k)
    assert got["1.num_batches_tracked"].item() == 29
    assert not any(p.requires_grad for p in avg.model.parameters())
    restored = WeightAverage(model, decay=0.9)
    restored.load_state_dict(avg.state_dict())
    assert restored.updates == 29 and states_equal(restored.model.state_dict(), got)


def test_weight_average_is_evaluated_checkpointed_and_resumed(tmp_path, capsys):
    from ftprop.cli import main
    from ftprop.data import load_dataset

    cfg = small_config("train.ema_decay=0.99", epochs=2)
    plain = train(small_config(epochs=2), save=False, log=None)
    straight = train(cfg, tmp_path / "a", log=None)
    # Averaging only reads the weights: the optimiser's trajectory is unchanged.
    assert states_equal(plain.model.state_dict(), straight.model.state_dict())
    assert [r["test_acc"] for r in plain.history] == [r["live_test_acc"] for r in straight.history]
    assert [r["test_acc"] for r in straight.history] != [r["live_test_acc"] for r in straight.history]
    test = load_dataset("digits", split="test")  # evaluate() gives what training logged, for either weights
    assert evaluate(straight.ema_model, test)["acc"] == pytest.approx(straight.history[-1]["test_acc"])
    assert evaluate(straight.model, test)["acc"] == pytest.approx(straight.history[-1]["live_test_acc"])
    assert straight.summary["final_live_test_acc"] == straight.history[-1]["live_test_acc"]
    last = straight.history[-1]  # the gap compares the weights that trained with themselves
    assert straight.summary["final_gap"] == last["train_acc"] - last["live_test_acc"]
    assert straight.summary["gap_from"] == "running train_acc - live_test_acc"
    assert plain.summary["final_gap"] == plain.history[-1]["train_acc"] - plain.history[-1]["test_acc"]

    train(apply_overrides(cfg, ["train.epochs=1"]), tmp_path / "b", log=None)
    resumed = train(cfg, tmp_path / "b", resume=True, log=None)
    assert states_equal(straight.ema_model.state_dict(), resumed.ema_model.state_dict())
    assert strip_times(straight.history) == strip_times(resumed.history)

    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a")]) == 0
    averaged = json.loads(capsys.readouterr().out)
    assert averaged["weights"] == "average" and averaged["acc"] == pytest.approx(straight.history[-1]["test_acc"])
    assert main(["evaluate", str(tmp_path / "a"), "--live"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert live["weights"] == "live" and live["acc"] == pytest.approx(straight.history[-1]["live_test_acc"])


def test_label_smoothing_changes_the_training_loss_only():
    from ftprop.data import load_dataset

    # One batch of the whole training set, lr 1e-12: the logged training loss is the initial
    # model's loss in train mode (BN with batch statistics) over that batch.
    cfg = small_config("train.label_smoothing=0.3", "optim.lr=1e-12", "data.augment=false", "train.batch_size=4096",
                       epochs=1)
    result = train(cfg, save=False, log=None)
    # The evaluation loss is the plain cross-entropy.
    test = evaluate(result.model, load_dataset("digits", split="test"))
    assert result.history[0]["test_loss"] == pytest.approx(test["loss"])
    (x, y), = load_dataset("digits", split="train").batches(4096)
    with torch.no_grad():
        out = result.model.train()(x)
    smoothed = torch.nn.functional.cross_entropy(out, y, label_smoothing=0.3).item()
    plain = torch.nn.functional.cross_entropy(out, y).item()
    assert abs(smoothed - plain) > 0.01
    assert result.history[0]["train_loss"] == pytest.approx(smoothed, rel=1e-4)
    for bad in ("train.label_smoothing=1.0", "train.ema_decay=1.0", "train.ema_decay=-0.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            train(small_config(bad, epochs=1), save=False, log=None)


def test_flip_tta_averages_the_logits_of_both_views():
    data = _tiny_data()["test"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))  # not mirror-symmetric
    x, y = next(iter(data.batches(len(data))))
    logits = (model(x) + model(x.flip(3))) / 2
    expected_acc = (logits.argmax(1) == y).double().mean().item()
    expected_loss = torch.nn.functional.cross_entropy(logits.double(), y).item()
    one_view = evaluate(model, data, batch_size=100)
    both = evaluate(model, data, batch_size=100, tta="flip")
    assert both["acc"] == pytest.approx(expected_acc) and both["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert both["loss"] != pytest.approx(one_view["loss"])  # the mirror view was used
    # a mirror-symmetric model gives the same result both ways
    sym = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 3))
    assert evaluate(sym, data, tta="flip") == pytest.approx(evaluate(sym, data))
    with pytest.raises(ValueError, match="tta must be one of"):
        evaluate(model, data, tta="crops")
    flat = ArrayDataset("flat", "test", data.images.flatten(1), data.labels, ["a", "b", "c"], [0.5], [0.25])
    with pytest.raises(ValueError, match="needs \\(C, H, W\\) inputs"):
        evaluate(model, flat, tta="flip")


def test_atomic_writes_get_the_mode_a_plain_write_would(tmp_path):
    from ftprop.runs import atomic_write_text

    (tmp_path / "plain").write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert [p.name for p in tmp_path.iterdir()].count("atomic") == 1 and len(list(tmp_path.iterdir())) == 2


def test_evaluate_on_a_folder_of_other_classes_says_what_does_not_fit(tmp_path, capsys):
    """An image-folder run evaluated with --data-root on a folder of 2 classes, not its 3: a message
    naming the run and both sizes, not load_state_dict's traceback."""
    from test_data import make_folder

    from ftprop.cli import main

    make_folder(tmp_path / "three", n_train=2, n_val=1)
    make_folder(tmp_path / "two", n_train=2, n_val=1, classes=["cat", "dog"])
    cfg = small_config("data.name=imagefolder", f"data.root='{tmp_path / 'three'}'", "data.options.resize=10",
                       "data.options.crop=8", "data.options.workers=0", epochs=1)
    train(cfg, tmp_path / "r", log=None)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r"), "--data-root", str(tmp_path / "two")]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "the network its config builds (mlp, trained on imagefolder) for the data (2 classes, input (3, 8, 8)): " \
           "size mismatch for" in err
    assert str(tmp_path / "r") in err and ".." not in err and "a --data-root with the same classes" in err
    assert "Traceback" not in err and "--data-root" in err


def test_evaluate_refuses_an_empty_dataset_and_a_model_for_other_classes():
    data = _tiny_data()["test"]  # 3 classes, 16 inputs
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    model.train()
    with pytest.raises(ValueError, match=r"outputs of shape \(256, 10\) .* the dataset has 3 classes"):
        evaluate(model, data)
    assert model.training  # left as it was
    calls = []

    def fails_on_the_second_batch(module, inputs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    model.register_forward_pre_hook(fails_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, data, batch_size=4)
    assert model.training  # left as it was, though the evaluation stopped part way
    empty = ArrayDataset("tiny", "test", data.images[:0], data.labels[:0], ["a", "b", "c"], [0.5], [0.25])
    with pytest.raises(ValueError, match="holds no examples"):
        evaluate(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)), empty)


def test_a_short_run_of_a_multistep_schedule_says_which_decays_it_never_reaches():
    lines = []
    train(small_config("schedule.name=multistep", "schedule.milestones=[1,200]", epochs=1), save=False,
          log=lines.append)
    assert any("schedule.milestones [200] lie beyond train.epochs = 1" in line for line in lines)


def test_sam_takes_the_gradient_at_the_ascent_point_and_puts_back_the_weights():
    from ftprop import Sign
    from ftprop.sam import SharpnessAware

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), Sign(), torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def grads_at(state):
        twin = copy.deepcopy(model)
        twin.load_state_dict(state)
        torch.nn.functional.cross_entropy(twin(x), y).backward()
        return [p.grad for p in twin.parameters()], twin.state_dict()

    g, after_one_pass = grads_at(before)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    moved = dict(before)
    for (name, _), gi in zip(model.named_parameters(), g):
        moved[name] = before[name] + 0.1 * gi / norm
    expected, _ = grads_at(moved)

    sam = SharpnessAware(model, rho=0.1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    sam.ascend()
    for p in model.parameters():
        p.grad = None
    torch.nn.functional.cross_entropy(model(x), y).backward()
    sam.restore()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e)
    assert any(not torch.allclose(e, gi) for e, gi in zip(expected, g))  # the second gradient is another one
    # the weights come back exactly; BN's running statistics and count move once, as after one plain pass
    assert states_equal(model.state_dict(), after_one_pass)
    assert not states_equal(after_one_pass, before)
    with pytest.raises(RuntimeError, match="without ascend"):
        sam.restore()
    with pytest.raises(ValueError, match="rho must be > 0"):
        SharpnessAware(model, rho=0.0)


def test_sam_restores_the_buffers_of_a_model_moved_after_it_was_wrapped():
    from ftprop.sam import SharpnessAware

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    sam = SharpnessAware(net, 0.05)
    net.double()  # as model.to(device) after wrapping: new buffer tensors
    x = torch.randn(8, 5, dtype=torch.float64)
    net(x).sum().backward()
    mean = net[1].running_mean.clone()
    sam.ascend()
    net.zero_grad()
    net(x).pow(2).sum().backward()
    sam.restore()
    assert torch.equal(net[1].running_mean, mean)


def test_sam_training_changes_the_weights_learns_and_is_refused_with_a_negative_radius():
    """(SAM's training resumed bit for bit, and so deterministic: the [sam-cosine] case of
    test_a_run_with_dropout_resumes_from_inside_an_epoch_bit_for_bit; SAM keeps no state between steps.)"""
    cfg = small_config("optim.sam_rho=0.05", "model.options.dropout=0.2", "model.options.batch_norm=true")
    plain = train(small_config("model.options.dropout=0.2", "model.options.batch_norm=true"), save=False, log=None)
    straight = train(cfg, save=False, log=None)
    assert not states_equal(plain.model.state_dict(), straight.model.state_dict())
    # it learns as plain training does (3 epochs of a 32-unit sign net: about 74% on the test digits)
    assert straight.history[-1]["test_acc"] > 0.6 and straight.history[-1]["test_acc"] > straight.history[0]["test_acc"]
    with pytest.raises(ConfigError, match="optim.sam_rho must be >= 0"):
        train(small_config("optim.sam_rho=-0.1", epochs=1), save=False, log=None)


def test_a_sam_step_through_the_engine_is_the_hand_computed_one():
    """One full-batch SGD step (momentum 0, coupled decay) with SAM and a weight average: the
    weights move by the gradient taken at the ascent point, from the weights themselves; the
    logged loss is the one at the weights; BN counts the batch once; the average sees the step."""
    from ftprop.data import load_dataset
    from ftprop.engine import build_from_config

    lr, wd, rho = 0.5, 1e-2, 0.2
    cfg = small_config("optim.name=sgd", "optim.momentum=0", f"optim.lr={lr}", f"optim.weight_decay={wd}",
                       f"optim.sam_rho={rho}", "train.batch_size=4096", "data.augment=false",
                       "model.options.batch_norm=true", "train.ema_decay=0.9", epochs=1)
    result = train(cfg, save=False, log=None)

    data = load_dataset("digits", split="train")
    (x, y), = data.batches(4096)
    torch.manual_seed(cfg.train.seed)
    model = build_from_config(cfg, data.num_classes, data.input_shape).train()
    w0 = {k: v.clone() for k, v in model.named_parameters()}
    loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.0)
    g = torch.autograd.grad(loss, list(model.parameters()))
    after_one_pass = {k: v.clone() for k, v in model.named_buffers()}
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(model.parameters(), g):
            p.add_(rho * gi / norm)
    g_ascent = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    w1 = {k: w0[k] - lr * (ga + wd * w0[k]) for k, ga in zip(w0, g_ascent)}

    got = dict(result.model.named_parameters())
    for k in w0:
        torch.testing.assert_close(got[k], w1[k], rtol=1e-4, atol=1e-6, msg=k)
    plain_step = {k: w0[k] - lr * (gi + wd * w0[k]) for k, gi in zip(w0, g)}
    assert any(not torch.allclose(got[k], plain_step[k], atol=1e-5) for k in w0)  # not the plain step
    assert result.history[0]["train_loss"] == pytest.approx(loss.item(), rel=1e-5)
    buffers = dict(result.model.named_buffers())
    for k, v in after_one_pass.items():
        torch.testing.assert_close(buffers[k], v, rtol=1e-4, atol=1e-6, msg=k)
    d = min(0.9, 2 / 11)  # the average's decay after one update
    averaged = dict(result.ema_model.named_parameters())
    for k in w0:
        torch.testing.assert_close(averaged[k], d * w0[k] + (1 - d) * w1[k], rtol=1e-4, atol=1e-6, msg=k)


class InterruptedData(EventAtBatch):
    """Sends this process SIGINT at (epoch 2, batch 5), as Ctrl-C inside an epoch would."""

    calls, batch = 0, 5

    def event(self, x):
        os.kill(os.getpid(), signal.SIGINT)
        return x


@pytest.mark.parametrize("extra", [
    ("optim.sam_rho=0.05", "schedule.name=cosine"),  # a rate that changes at every step: the step count resumes
    # a twin beside every other per-step state: its weights, its optimiser, SAM, the average
    ("train.twin=relu", "optim.sam_rho=0.05", "train.ema_decay=0.9", "optim.lr_scaling=layer_rms",
     "train.label_smoothing=0.1"),
    ("train.ema_decay=0.9", "train.average_teaches=true"),  # the average, resumed, teaches as it would have
], ids=["sam-cosine", "twin-sam-average-layer_rms", "average-teaches"])
def test_a_run_with_dropout_resumes_from_inside_an_epoch_bit_for_bit(tmp_path, extra):
    from ftprop.engine import TrainingStopped

    cfg = small_config(*extra, "model.options.dropout=0.3", "train.batch_size=16")
    straight = train(cfg, tmp_path / "a", data=_tiny_data(), log=None)
    InterruptedData.calls = 0
    with pytest.raises(TrainingStopped):
        train(cfg, tmp_path / "b", data=_tiny_data(InterruptedData), log=None)
    ck = load_checkpoint(tmp_path / "b")
    assert (ck["epoch"], ck["step"]) == (1, 6)  # stopped after the step it was in
    resumed = train(cfg, tmp_path / "b", resume=True, data=_tiny_data(), log=None)
    assert states_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert strip_times(straight.history) == strip_times(resumed.history)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    with_twin = "train.twin=relu" in extra
    with_average = "train.ema_decay=0.9" in extra
    assert (a.get("twin") is not None) == (b.get("twin") is not None) == with_twin
    assert (a.get("ema") is not None) == (b.get("ema") is not None) == with_average
    if with_twin:
        assert states_equal(a["twin"], b["twin"])
    if with_average:
        assert states_equal(a["ema"]["model"], b["ema"]["model"]) and a["ema"]["updates"] == b["ema"]["updates"]


@pytest.mark.parametrize("damage", ["no twin", "twin of another shape", "no optimiser", "no history"])
def test_a_damaged_checkpoint_is_named_and_left_as_it_was(tmp_path, damage):
    from ftprop.runs import save_checkpoint

    cfg = small_config("train.twin=relu", epochs=1)
    train(cfg, tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    if damage == "no twin":
        del state["twin"]
    elif damage == "twin of another shape":
        name = next(iter(state["twin"]))
        state["twin"][name] = torch.zeros(3, 2)
    elif damage == "no optimiser":
        state["optimizer"] = None
    else:
        del state["history"]
    save_checkpoint(tmp_path / "r", state)
    before = {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir() if f.is_file()}
    with pytest.raises(RunDirError, match=r"checkpoint.pt does not fit the run .* restore the file .* --force"):
        train(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / "r", resume=True, log=None)
    assert {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir() if f.is_file()} == before


def test_a_non_finite_loss_at_the_sam_ascent_point_names_its_step():
    # Finite at the weights, overflowing at w + e: the step that took the bad gradient is named.
    cfg = small_config("optim.sam_rho=1e38", "model.activation=relu", epochs=1)
    with pytest.raises(NonFiniteLossError, match=r"SAM's ascent point\) at epoch 1, step 0;.*optim.sam_rho"):
        train(cfg, save=False, log=None)


def test_layer_rms_groups_scale_each_layer_by_its_initial_weight_rms():
    """One group per conv/linear layer with its bias, at RMS / geometric mean of the RMS; BN apart at 1."""
    from ftprop.engine import param_groups

    torch.manual_seed(0)
    conv, bn, fc = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(16, 5)
    model = torch.nn.Sequential(conv, bn, torch.nn.Flatten(), fc)
    groups = param_groups(model, "layer_rms")
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(conv.weight), id(conv.bias)], [id(fc.weight), id(fc.bias)], [id(bn.weight), id(bn.bias)]]
    rms = [conv.weight.pow(2).mean().sqrt().item(), fc.weight.pow(2).mean().sqrt().item()]
    mean = (rms[0] * rms[1]) ** 0.5
    assert [g["lr_scale"] for g in groups] == pytest.approx([rms[0] / mean, rms[1] / mean, 1.0])
    assert groups[0]["lr_scale"] < 0.95  # fan-in 27 against 16: the scales really differ
    one = param_groups(model, "none")
    assert len(one) == 1 and one[0]["lr_scale"] == 1.0 and len(one[0]["params"]) == 6
    with torch.no_grad():
        fc.weight.zero_()
    with pytest.raises(ConfigError, match="optim.lr_scaling = 'none'"):
        param_groups(model, "layer_rms")


def test_layer_rms_step_moves_each_layer_by_its_scaled_rate_and_survives_a_resume(tmp_path):
    """One full-batch SGD step: each layer moves by lr x its scale x its gradient, BN by lr x
    gradient; a resume keeps the groups, and one with the other scaling is refused."""
    from ftprop.data import load_dataset
    from ftprop.engine import build_from_config, param_groups

    lr = 0.5
    cfg = small_config("optim.name=sgd", "optim.momentum=0", f"optim.lr={lr}", "optim.lr_scaling=layer_rms",
                       "train.batch_size=4096", "data.augment=false", "model.options.batch_norm=true", epochs=1)
    result = train(cfg, tmp_path / "r", log=None)

    data = load_dataset("digits", split="train")
    (x, y), = data.batches(4096)
    torch.manual_seed(cfg.train.seed)
    model = build_from_config(cfg, data.num_classes, data.input_shape).train()
    scale = {id(p): g["lr_scale"] for g in param_groups(model, "layer_rms") for p in g["params"]}
    assert len(set(scale.values())) == 3  # two linear layers and BN
    names = dict(model.named_parameters())
    g = dict(zip(names, torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(names.values()))))
    got = dict(result.model.named_parameters())
    for k, p in names.items():
        torch.testing.assert_close(got[k], p - lr * scale[id(p)] * g[k], rtol=1e-4, atol=1e-6, msg=k)

    saved = load_checkpoint(tmp_path / "r")["optimizer"]["param_groups"]
    assert [grp["lr"] for grp in saved] == pytest.approx([lr * grp["lr_scale"] for grp in saved])
    # At an epoch's end the seed may change; the scales stay the first run's (its initial weights').
    train(apply_overrides(cfg, ["train.epochs=2", "train.seed=1"]), tmp_path / "r", resume=True, log=None)
    resumed = load_checkpoint(tmp_path / "r")["optimizer"]["param_groups"]
    assert [grp["lr_scale"] for grp in resumed] == [grp["lr_scale"] for grp in saved]
    with pytest.raises(RunDirError, match="optim.lr_scaling: 'layer_rms' != 'none'"):
        train(apply_overrides(cfg, ["train.epochs=3", "optim.lr_scaling=none"]), tmp_path / "r", resume=True,
              log=None)


class RecordsAugment(ArrayDataset):
    """Records the ``augment`` flag of each call to ``batches`` (a test sets ``flags = []`` first)."""

    flags: list = []

    def batches(self, batch_size, **kw):
        type(self).flags.append(kw.get("augment"))
        return super().batches(batch_size, **kw)


def test_plain_last_epochs_train_the_last_epochs_without_augmentation_also_after_a_resume(tmp_path):
    RecordsAugment.flags = []
    data = _tiny_data(RecordsAugment)
    cfg = small_config("data.plain_last_epochs=2", epochs=3)
    train(cfg, save=False, data=data, log=None)
    assert RecordsAugment.flags == [True, False, False]
    RecordsAugment.flags = []
    cfg = small_config("data.plain_last_epochs=1", epochs=2)
    train(cfg, tmp_path / "r", data=data, log=None)
    train(apply_overrides(cfg, ["train.epochs=4"]), tmp_path / "r", data=data, resume=True, log=None)
    assert RecordsAugment.flags == [True, False, True, False]  # the last epoch of 2, then of 4


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    """A ReLU mlp trained on digits for 8 epochs (test accuracy 0.96): the distillation tests' teacher."""
    out = tmp_path_factory.mktemp("teacher") / "relu"
    result = train(small_config("model.activation=relu", "train.ema_decay=0.9", "optim.lr=3e-3", epochs=8), out,
                   log=None)
    return out, result


def test_distillation_loss_is_the_hand_computed_mix(digits_teacher):
    from ftprop.data import load_dataset
    from ftprop.engine import load_teacher

    path, _ = digits_teacher
    # One batch of the whole training set at lr 1e-12, as in the label smoothing test above.
    cfg = small_config(f"train.teacher='{path}'", "train.distill_weight=0.7", "train.distill_temperature=3",
                       "train.label_smoothing=0.1", "optim.lr=1e-12", "data.augment=false", "train.batch_size=4096",
                       epochs=1)
    result = train(cfg, save=False, log=None)
    train_set = load_dataset("digits", split="train")
    (x, y), = train_set.batches(4096)
    teacher = load_teacher(str(path), train_set, lambda m: None)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        out, t_out = result.model.train()(x), teacher(x)
    ce = torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1)
    p_t = torch.softmax(t_out / 3, 1)
    kl = (p_t * (torch.log_softmax(t_out / 3, 1) - torch.log_softmax(out / 3, 1))).sum(1).mean()
    expected = (0.3 * ce + 0.7 * 9 * kl).item()
    assert abs(expected - ce.item()) > 0.01
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-4)


def test_with_distill_weight_1_the_student_learns_from_the_teacher_not_the_labels(digits_teacher):
    from ftprop.data import load_dataset

    path, teacher_run = digits_teacher
    train_set, test_set = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    shuffled = copy.copy(train_set)  # labels that carry no information about the images
    shuffled.labels = train_set.labels[torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))]
    data = {"train": shuffled, "test": test_set}
    alone = train(small_config(epochs=5), save=False, data=data, log=None)
    taught = train(small_config(f"train.teacher='{path}'", "train.distill_weight=1", epochs=5), save=False,
                   data=data, log=None)
    assert teacher_run.history[-1]["test_acc"] > 0.9
    assert alone.history[-1]["test_acc"] < 0.3  # chance is 0.1
    assert taught.history[-1]["test_acc"] > 0.7


def test_a_distilled_run_records_its_teacher_and_resumes_bit_for_bit(digits_teacher, tmp_path, monkeypatch):
    path, _ = digits_teacher
    monkeypatch.chdir(path.parent)
    cfg = small_config(f"train.teacher='{path.name}'", epochs=2)  # relative: recorded as absolute
    straight = train(cfg, tmp_path / "a", log=None)
    assert read_run(tmp_path / "a").config.train.teacher == str(path)
    train(apply_overrides(cfg, ["train.epochs=1"]), tmp_path / "b", log=None)
    monkeypatch.chdir(tmp_path)  # the resume finds the teacher where it was recorded
    resumed = train(apply_overrides(read_run(tmp_path / "b").config, ["train.epochs=2"]), tmp_path / "b",
                    resume=True, log=None)
    assert states_equal(straight.model.state_dict(), resumed.model.state_dict())


def test_distillation_settings_and_teachers_that_cannot_work_are_refused(digits_teacher, tmp_path):
    path, _ = digits_teacher
    for bad, message in [("train.distill_weight=0.9", "applies to distillation only"),
                         ("train.distill_temperature=2", "applies to distillation only"),
                         (f"train.teacher='{path}' train.distill_weight=0", "distill_weight must be in"),
                         (f"train.teacher='{path}' train.distill_temperature=0", "distill_temperature must be > 0")]:
        with pytest.raises(ConfigError, match=message):
            small_config(*bad.split(" "))
    with pytest.raises(RunDirError, match="no run at"):
        train(small_config(f"train.teacher='{tmp_path / 'missing'}'", epochs=1), tmp_path / "r", log=None)
    with pytest.raises(ConfigError, match=r"train.teacher = .* do not load .* for the data \(3 classes"):
        train(small_config(f"train.teacher='{path}'", epochs=1), tmp_path / "r", data=_tiny_data(), log=None)
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_a_twin_s_first_outputs_teach_the_first_step_and_leave_the_network_s_first_weights_alone():
    from ftprop.data import load_dataset
    from ftprop.engine import build_from_config, build_twin

    # One batch of the whole training set: the logged loss is the loss at the first weights of both
    # networks, at a rate that moves the twin far enough for its outputs after its update to differ.
    extra = ["data.augment=false", "train.batch_size=4096", "train.label_smoothing=0.1"]
    cfg = small_config("train.twin=relu", "train.distill_weight=0.7", "train.distill_temperature=3",
                       "optim.lr=0.05", *extra, epochs=1)
    result = train(cfg, save=False, log=None)
    # At lr 1e-12 the weights after the step are the first ones: the twin is built after the network.
    still = ["optim.lr=1e-12", *extra]
    twinned = train(small_config("train.twin=relu", *still, epochs=1), save=False, log=None)
    plain = train(small_config(*still, epochs=1), save=False, log=None)
    for a, b in zip(twinned.model.parameters(), plain.model.parameters()):
        assert torch.allclose(a, b, atol=1e-9)
    train_set = load_dataset("digits", split="train")
    (x, y), = train_set.batches(4096)
    torch.manual_seed(cfg.train.seed)
    model = build_from_config(cfg, train_set.num_classes, train_set.input_shape)
    twin = build_twin(cfg, train_set.num_classes, train_set.input_shape)
    assert {type(m).__name__ for m in twin.modules()} >= {"ReLU"}
    with torch.no_grad():
        out, t_out = model.train()(x), twin.train()(x)
    ce = torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1)
    kl = (torch.softmax(t_out / 3, 1) * (torch.log_softmax(t_out / 3, 1) - torch.log_softmax(out / 3, 1))).sum(1)
    expected = (0.3 * ce + 0.7 * 9 * kl.mean()).item()
    assert abs(expected - ce.item()) > 0.01
    assert result.history[0]["train_loss"] == pytest.approx(expected, rel=1e-4)
    # The twin's outputs after its own update would have taught another loss.
    from ftprop.engine import build_optimizer, distillation_loss, param_groups

    optimizer = build_optimizer(param_groups(twin), cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(cfg, 1, 0, 1)
    distillation_loss(twin(x), y, None, cfg.train).backward()
    optimizer.step()
    with torch.no_grad():
        t_after = twin(x)
    kl = (torch.softmax(t_after / 3, 1) * (torch.log_softmax(t_after / 3, 1) - torch.log_softmax(out / 3, 1))).sum(1)
    assert abs((0.3 * ce + 0.7 * 9 * kl.mean()).item() - expected) > 0.01 * expected


def test_a_twin_whose_loss_or_weights_fail_is_named(tmp_path):
    """A NaN input: a ReLU twin's loss turns NaN at that step, and through its outputs the sign
    network's too, though sign(NaN) = -1 would have swallowed it; a sign twin swallows it as well,
    and the end-of-epoch check names its weights beside the network's."""
    PoisonedData.calls = 0
    cfg = small_config("train.batch_size=16", "model.activation=sign", "train.twin=relu", epochs=3)
    named = r"loss of the twin \(train.twin\) \(and so the network's\) at epoch 2, step 3"
    with pytest.raises(NonFiniteLossError, match=named):
        train(cfg, tmp_path / "r", data=_tiny_data(PoisonedData), log=None)
    assert load_checkpoint(tmp_path / "r")["epoch"] == 1
    PoisonedData.calls = 0
    with pytest.raises(NonFiniteLossError, match=r"non-finite parameters \(.*twin\..*\) after epoch 2"):
        train(apply_overrides(cfg, ["train.twin=sign"]), tmp_path / "s", data=_tiny_data(PoisonedData), log=None)


def test_a_twin_learns_from_the_labels_and_teaches_a_network_that_never_sees_them():
    cfg = small_config("train.twin=relu", "train.distill_weight=1", "train.distill_temperature=1", "optim.lr=3e-3",
                       epochs=4)
    taught = train(cfg, save=False, log=None)
    last = taught.history[-1]
    assert last["twin_test_acc"] > 0.9  # the twin trains (on the labels) in the network's steps
    assert last["test_acc"] > 0.8  # the network, whose loss holds no label, learns from the twin's outputs
    assert taught.summary["best_twin_test_acc"] >= last["twin_test_acc"]


def test_a_run_with_a_twin_resumes_bit_for_bit_and_cannot_switch_its_twin(tmp_path):
    cfg = small_config("train.twin=relu", "model.options.dropout=0.2", "train.batch_size=32", epochs=2)
    straight = train(cfg, tmp_path / "a", data=_tiny_data(), log=None)
    train(apply_overrides(cfg, ["train.epochs=1"]), tmp_path / "b", data=_tiny_data(), log=None)
    resumed = train(cfg, tmp_path / "b", resume=True, data=_tiny_data(), log=None)
    assert states_equal(straight.model.state_dict(), resumed.model.state_dict())
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert states_equal(a["twin"], b["twin"])
    assert strip_times(straight.history) == strip_times(resumed.history)
    with pytest.raises(RunDirError, match="train.twin: 'relu' != 'saturated_relu'"):
        train(apply_overrides(cfg, ["train.twin=saturated_relu", "train.epochs=3"]), tmp_path / "b", resume=True,
              log=None)
    train(small_config(epochs=1), tmp_path / "c", data=_tiny_data(), log=None)
    with pytest.raises(RunDirError, match="train.twin: None != 'relu'"):
        train(apply_overrides(cfg, ["train.epochs=3"]), tmp_path / "c", resume=True, log=None)


def test_the_weight_average_teaches_from_the_first_step(monkeypatch):
    import ftprop.engine as engine

    seen = []
    real = engine.distillation_loss

    def recorded(out, y, teacher_out, t):
        seen.append((out.detach().clone(), None if teacher_out is None else teacher_out.clone()))
        return real(out, y, teacher_out, t)

    monkeypatch.setattr(engine, "distillation_loss", recorded)
    cfg = small_config("train.ema_decay=0.9", "train.average_teaches=true", "train.distill_weight=0.7",
                       "train.distill_temperature=2", "model.options.batch_norm=false", epochs=2)  # (BN: eval mode
    # teaches, with the running statistics, so even the first outputs would differ)
    taught = train(cfg, save=False, data=_tiny_data(), log=None)
    assert len(seen) == 2 * math.ceil(256 / cfg.train.batch_size) and all(t is not None for _, t in seen)
    torch.testing.assert_close(seen[0][1], seen[0][0])  # before any update the average is the network itself
    assert not torch.allclose(seen[-1][1], seen[-1][0])  # then it lags behind the weights that take the steps
    plain = train(apply_overrides(cfg, ["train.average_teaches=false", "train.distill_weight=0.5",
                                        "train.distill_temperature=4"]), save=False, data=_tiny_data(), log=None)
    assert taught.history[-1]["train_loss"] != plain.history[-1]["train_loss"]
    for bad, message in [(["train.average_teaches=true"], "needs a weight average to teach: set train.ema_decay"),
                         (["train.ema_decay=0.9", "train.average_teaches=true", "train.twin=relu"],
                          "sources of the same distillation term")]:
        with pytest.raises(ConfigError, match=message):
            small_config(*bad)


def test_twins_that_cannot_work_are_refused(digits_teacher, tmp_path, capsys):
    from ftprop.cli import main

    path, _ = digits_teacher
    with pytest.raises(ConfigError, match="sources of the same distillation term"):
        small_config(f"train.teacher='{path}'", "train.twin=relu")
    with pytest.raises(ConfigError, match="train.twin = 'rleu': unknown activation"):
        train(small_config("train.twin=rleu", epochs=1), tmp_path / "r", log=None)
    assert not (tmp_path / "r").exists()
    small_config("train.twin=relu", "train.distill_weight=0.9", "train.distill_temperature=2")  # accepted
    assert main(["train", "--twin", "relu", "--epochs", "1", "--set", "model.options.hidden=[16]",
                 "--out", str(tmp_path / "cli")]) == 0
    assert read_run(tmp_path / "cli").config.train.twin == "relu"
    captured = capsys.readouterr()
    assert "twin's acc" in captured.err + captured.out


def test_a_truncated_or_foreign_checkpoint_says_what_to_do(tmp_path, capsys):
    from ftprop.cli import main

    train(small_config(epochs=1), tmp_path / "r", log=None)
    ck = tmp_path / "r" / "checkpoint.pt"
    cut = ck.read_bytes()[: ck.stat().st_size // 2]
    ck.write_bytes(cut)  # as a full disk or a copy cut short leaves it
    for args in (["train", "--resume", str(tmp_path / "r"), "--epochs", "2"], ["evaluate", str(tmp_path / "r")]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "is not a readable ftprop checkpoint" in err and "Restore it from a copy" in err, err
    assert ck.read_bytes() == cut
    torch.save({"weights": torch.zeros(2)}, ck)  # some other program's file
    assert main(["evaluate", str(tmp_path / "r")]) == 1
    assert "written by other code" in capsys.readouterr().err
    import pickle
    import warnings

    ck.write_bytes(pickle.dumps({"weights": [0.0]}, protocol=4))  # a plain pickle: not a torch file
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(["evaluate", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "is not a readable ftprop checkpoint (" in err and "Restore it from a copy" in err
    assert "weights_only" not in err  # not torch's advice to load it anyway, which would run a stranger's code
    assert not [w for w in warned if "pickle protocol" in str(w.message)]


def test_metrics_ignore_a_cut_last_line_and_name_damage_before_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    e1, e2 = {"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6}
    path.write_text(f"{json.dumps(e1)}\n{json.dumps(e2)}\n" + '{"epo')  # killed while writing epoch 3
    assert read_metrics(path) == [e1, e2]
    path.write_bytes(f"{json.dumps(e1)}\n{json.dumps(e2)}\n".encode() + b"\xff\xfe")
    assert read_metrics(path) == [e1, e2]
    path.write_text(f"{json.dumps(e1)}\n" + '{"ep\n' + f"{json.dumps(e2)}\n")  # epoch 2 would be lost unsaid
    with pytest.raises(RunDirError, match="line 2, is not a JSON record.*restore it from a copy"):
        read_metrics(path)
    for other in ("[1]", '{"epoch": 3}'):  # JSON, but not an epoch's record: every reader would fail on it
        path.write_text(f"{json.dumps(e1)}\n{other}\n")
        with pytest.raises(RunDirError, match="line 2, is not an epoch's record"):
            read_metrics(path)


class _Runs:  # unpickling it would run code: loading a checkpoint must not
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["FTPROP_TEST_MARK"]),))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path, capsys, monkeypatch):
    from ftprop.cli import main

    train(small_config(epochs=1), tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    mark = tmp_path / "ran"
    monkeypatch.setenv("FTPROP_TEST_MARK", str(mark))
    torch.save({**state, "extra": _Runs()}, tmp_path / "r" / "checkpoint.pt")
    for args in (["evaluate", str(tmp_path / "r")], ["train", "--resume", str(tmp_path / "r"), "--epochs", "2"],
                 ["train", "--teacher", str(tmp_path / "r"), "--out", str(tmp_path / "s"), "--epochs", "1"]):
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert "holds Python objects that are not tensors or plain values" in err and "GLOBAL" in err, err
    assert not mark.exists()


def test_evaluate_downloads_as_the_run_did_unless_told_otherwise(tmp_path, capsys, monkeypatch):
    import ftprop.data.idx
    from ftprop.cli import main
    from ftprop.data import DatasetError
    from ftprop.runs import save_checkpoint

    train(small_config(epochs=1), tmp_path / "r", log=None)
    state = load_checkpoint(tmp_path / "r")
    (tmp_path / "empty").mkdir()
    data = {**state["config"]["data"], "name": "mnist", "root": str(tmp_path / "empty"), "download": True}
    save_checkpoint(tmp_path / "r", {**state, "config": {**state["config"], "data": data}})

    def fetch(url, dest, md5, **kw):
        raise DatasetError(f"fetch called for {url}")

    monkeypatch.setattr(ftprop.data.idx, "fetch", fetch)
    capsys.readouterr()
    for flags, said in [([], "fetch called for"), (["--no-download"], "Pass --download")]:
        assert main(["evaluate", str(tmp_path / "r"), *flags]) == 1
        err = capsys.readouterr().err
        assert said in err, (flags, err)
        assert ("fetch called" in err) == (not flags)


def test_the_first_non_finite_loss_of_an_epoch_is_named_network_or_twin():
    from ftprop.engine import _check_finite

    step = lambda s: torch.tensor(s)  # noqa: E731  (the first bad step of the epoch; -1: none)
    _check_finite(step(-1), 4, None, None, twin_bad_step=step(-1))  # nothing failed
    for network, twin, said in [(2, -1, r"training loss at epoch 4, step 2"),
                                (2, 5, r"training loss at epoch 4, step 2"),  # the network's came first
                                (3, 1, r"loss of the twin \(train.twin\) at epoch 4, step 1"),
                                (-1, 0, r"loss of the twin \(train.twin\) at epoch 4, step 0"),
                                (6, 6, r"loss of the twin \(train.twin\) \(and so the network's\) at epoch 4, step 6")]:
        with pytest.raises(NonFiniteLossError, match=said):
            _check_finite(step(network), 4, None, None, twin_bad_step=step(twin))


def test_check_config_refuses_what_train_would_before_any_data_loads(monkeypatch):
    from ftprop import engine

    monkeypatch.setattr(engine, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    base = {"model": {"name": "mlp", "activation": "sign"}, "data": {"name": "digits"}}
    engine.check_config(config_from_dict(base))
    for change, error, message in [({"model": {"name": "mlp", "activation": "sgn"}}, ValueError, "unknown activation"),
                                   ({"train": {"twin": "nope"}}, ConfigError, "train.twin = 'nope'"),
                                   ({"data": {"name": "cifar11"}}, ValueError, "cifar11"),
                                   ({"optim": {"lr": -1.0}}, ConfigError, "optim.lr")]:
        with pytest.raises(error, match=message):
            engine.check_config(config_from_dict({**base, **change}))

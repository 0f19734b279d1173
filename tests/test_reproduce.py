import json
from dataclasses import replace

import pytest
from test_data import write_cifar  # the tiny official-layout CIFAR-10 generator

from ftprop.cli import main
from ftprop.reproduce import COLS, PAPER_TABLE1, ROWS, cell_config, plan, run_table1

# PAPER.md §9.2: (optimiser, lr, batch, epochs, milestones, weight decay per column kind)
PAPER_92 = {
    "convnet4": ("adam", 2.5e-4, 64, 300, [200, 250], {"sign": 5e-4, "qrelu": 5e-4, "full": 5e-4}),
    "convnet8": ("adam", 1e-3, 64, 300, [200, 250], {"sign": 5e-4, "qrelu": 5e-4, "full": 5e-4}),
    "alexnet": ("adam", 1e-4, 128, 80, [56, 64], {"sign": 5e-6, "qrelu": 5e-5, "full": 5e-4}),
    "resnet18": ("sgd", 0.1, 256, 90, [30, 60], {"sign": 5e-7, "qrelu": 1e-5, "full": 1e-4}),
}


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("col", COLS)
def test_every_cell_has_the_papers_hyper_parameters(row, col):
    cfg = cell_config(row, col)
    opt, lr, batch, epochs, milestones, wd = PAPER_92[row]
    kind = col.split("_")[0] if col.startswith(("sign", "qrelu")) else "full"
    assert (cfg.model.name, cfg.optim.name, cfg.optim.lr, cfg.train.batch_size, cfg.train.epochs) == (
        row, opt, lr, batch, epochs)
    assert cfg.schedule.name == "multistep" and cfg.schedule.milestones == milestones and cfg.schedule.gamma == 0.1
    assert cfg.optim.weight_decay == wd[kind]
    assert cfg.train.seed == 468412397
    act = {"sign": "sign", "qrelu": "staircase", "relu": "relu", "satrelu": "saturated_relu"}[col.split("_")[0]]
    assert cfg.model.activation == act
    if col.endswith("sste"):
        assert cfg.model.loss == "saturated_hinge"
    if col.endswith("ftpsh"):
        assert cfg.model.loss == "soft_hinge" and cfg.model.weighted in (None, True)
    if act == "staircase":  # the README defect: ResNet-18's "3-bit" qReLU ran with steps = 5
        assert cfg.model.steps == (5 if row == "resnet18" else 3)


def test_missing_data_skips_cells_with_a_note(tmp_path):
    runs, notes = plan(data_root=None, imagenet_root=None)
    assert runs == []
    assert any("convnet4" in n and "--data-root" in n for n in notes)
    assert any("alexnet" in n and "--imagenet-root" in n for n in notes)
    runs, notes = plan(rows="convnet4", data_root=str(tmp_path / "nowhere"))
    assert runs == [] and "does not exist" in notes[0]
    runs, notes = plan(rows="convnet4", cols="relu", data_root=str(tmp_path / "nowhere"), download=True)
    assert len(runs) == 1 and runs[0][3].data.download and notes == []  # --download makes the folder, as train
    with pytest.raises(ValueError, match="unknown row"):
        plan(rows="vgg16")
    with pytest.raises(ValueError, match="--download needs --data-root"):  # else every cell is skipped
        plan(rows="convnet4", download=True)
    with pytest.raises(ValueError, match="train.epochs must be >= 1"):  # refused in a --dry-run too
        plan(rows="convnet4", data_root=str(tmp_path), epochs=0)
    with pytest.raises(ValueError, match="train.device"):
        plan(rows="convnet4", data_root=str(tmp_path), device="tpu")
    (tmp_path / "empty").mkdir()  # every cell skipped (no CIFAR-10 there): an empty table, and exit 1
    assert main(["reproduce", "table1", "--rows", "convnet4", "--cols", "relu", "--data-root", str(tmp_path / "empty"),
                 "--epochs", "1", "--out", str(tmp_path / "t1")]) == 1


def test_table1_end_to_end_on_tiny_cifar(tmp_path, capsys):
    write_cifar(tmp_path / "data")
    runs, notes = plan(rows="convnet4", cols="sign_ftpsh,relu", epochs=1, seeds=2, data_root=str(tmp_path / "data"),
                       device="cpu")
    assert [(r, c, k) for r, c, k, _ in runs] == [("convnet4", "sign_ftpsh", 0), ("convnet4", "sign_ftpsh", 1),
                                                  ("convnet4", "relu", 0), ("convnet4", "relu", 1)]
    assert runs[1][3].train.seed == runs[0][3].train.seed + 1
    path = run_table1(tmp_path / "out", runs, notes, log=lambda m: None)
    text = path.read_text()
    assert "recalled, unconfirmed" in text
    cells = json.loads((tmp_path / "out" / "table1.json").read_text())["cells"]
    ftpsh = cells["convnet4-sign_ftpsh"]
    assert len(ftpsh["ours_best"]) == 2 and ftpsh["paper_recalled"] == PAPER_TABLE1["convnet4"][1]
    assert f"/ {PAPER_TABLE1['convnet4'][4]} /" in text  # the ReLU cell beside the paper's number
    # a second call reuses the finished runs instead of training again
    path = run_table1(tmp_path / "out", runs, notes, log=lambda m: None)
    assert path.read_text() == text
    # a call that plans one cell keeps the others in the table
    path = run_table1(tmp_path / "out", runs[:1], notes, log=lambda m: None)
    assert path.read_text() == text
    # a cell that diverges, or one already trained past --epochs, is a note; the others go on
    row, col, _, cfg = runs[0]
    diverging = replace(cfg, optim=replace(cfg.optim, lr=1e38))
    notes = []
    path = run_table1(tmp_path / "out", [(row, col, 7, diverging), *runs[:1]], notes, log=lambda m: None)
    assert not (tmp_path / "out" / f"{row}-{col}" / "seed7").exists()
    assert len(notes) == 1 and "seed7" in notes[0] and "overflowed" in notes[0]
    assert path.read_text().startswith(text) and notes[0] in path.read_text()  # the same table, and the note
    fewer = plan(rows="convnet4", cols="relu", epochs=1, data_root=str(tmp_path / "data"), device="cpu")[0]
    train_more = [(r, c, k, replace(cfg, train=replace(cfg.train, epochs=2))) for r, c, k, cfg in fewer]
    run_table1(tmp_path / "out", train_more, [], log=lambda m: None)
    notes = []
    run_table1(tmp_path / "out", fewer, notes, log=lambda m: None)
    assert len(notes) == 1 and "already trained 2 epochs" in notes[0]
    assert main(["reproduce", "table1", "--rows", "convnet4", "--data-root", str(tmp_path / "data"),
                 "--dry-run"]) == 0
    assert "convnet4-qrelu_ftpsh" in capsys.readouterr().out
    # a dry run plans without the data, and says what a run would need; a run refuses
    assert main(["reproduce", "table1", "--rows", "convnet4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "a run needs --data-root" in out and out.count("300 epochs") == 6
    assert main(["reproduce", "table1", "--rows", "convnet4", "--out", str(tmp_path / "none")]) == 1
    assert "skipped convnet4: no cifar10 data given" in capsys.readouterr().out


# ---- the table from damaged or partial run folders ------------------------------------------------

def _fake_run(run_dir, row, col, epochs, acc=0.5):
    """A run folder as train leaves it after ``epochs`` epochs (0: killed inside its first)."""
    from ftprop.runs import config_to_toml

    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text(config_to_toml(cell_config(row, col)))
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train_acc": acc, "test_acc": acc}) + "\n" for e in range(1, epochs + 1)))


def test_a_damaged_run_folder_is_a_note_not_the_end_of_the_table(tmp_path):
    out = tmp_path / "t1"
    _fake_run(out / "convnet4-relu" / "seed0", "convnet4", "relu", 2, acc=0.75)
    _fake_run(out / "convnet4-sign_sste" / "seed0", "convnet4", "sign_sste", 2)
    (out / "convnet4-sign_sste" / "seed0" / "config.toml").write_text("this is [not toml")
    notes = []
    text = run_table1(out, [], notes, log=lambda m: None).read_text()
    assert "75.00 / 86.5 / -11.5 (2 ep)" in text  # the good cell is in the table
    assert len(notes) == 1 and "convnet4-sign_sste" in notes[0] and "not valid TOML" in notes[0]
    assert notes[0] in text
    assert list(json.loads((out / "table1.json").read_text())["cells"]) == ["convnet4-relu"]


def test_table_cell_lists_the_runs_it_averages_and_epochs_in_order(tmp_path):
    out = tmp_path / "t1"
    for k, epochs in enumerate([9, 10, 0]):  # seed2 killed inside its first epoch: no number yet
        _fake_run(out / "convnet4-relu" / f"seed{k}", "convnet4", "relu", epochs)
    text = run_table1(out, [], [], log=lambda m: None).read_text()
    assert "(9/10 ep)" in text
    cell = json.loads((out / "table1.json").read_text())["cells"]["convnet4-relu"]
    assert cell["epochs"] == "9/10"
    assert cell["runs"] == [str(out / "convnet4-relu" / f"seed{k}") for k in (0, 1)]
    assert len(cell["runs"]) == len(cell["ours_best"])


def test_a_run_trained_with_settings_the_cells_config_no_longer_gives_is_a_note_not_the_cell(tmp_path):
    from ftprop.reproduce import _other_settings

    out = tmp_path / "t1"
    _fake_run(out / "convnet4-relu" / "seed0", "convnet4", "relu", 2, acc=0.75)
    _fake_run(out / "convnet4-sign_sste" / "seed0", "convnet4", "sign_sste", 2)
    cfg = cell_config("convnet4", "relu")
    edited = replace(cfg, optim=replace(cfg.optim, lr=cfg.optim.lr * 2))  # the config file changed since
    notes = []
    text = run_table1(out, [("convnet4", "relu", 0, edited)], notes, log=lambda m: None).read_text()
    assert len(notes) == 1 and "convnet4-relu/seed0" in notes[0] and "trained with other settings" in notes[0]
    assert f"optim.lr: {cfg.optim.lr!r} != {cfg.optim.lr * 2!r}" in notes[0]
    assert list(json.loads((out / "table1.json").read_text())["cells"]) == ["convnet4-sign_sste"]
    assert "86.5" not in text and notes[0] in text
    # where and how fast it ran, how many epochs, and defaults written out are not other settings
    same = replace(cfg, train=replace(cfg.train, epochs=cfg.train.epochs + 1, device="cuda", compile=True),
                   data=replace(cfg.data, root="/elsewhere", options={**cfg.data.options, "crop_pad": 4}))
    assert _other_settings(cfg, same) == []


def test_plan_takes_the_config_folder_as_a_string(tmp_path):
    from ftprop.reproduce import default_config_dir

    runs, _ = plan(rows="convnet4", cols="relu", data_root=str(tmp_path), config_dir=str(default_config_dir()))
    assert [(r, c) for r, c, _, _ in runs] == [("convnet4", "relu")]



"""The README's Python examples run as written, and give the values their comments promise."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# `expression   # 'value' (an explanation)`: the line promises that the expression gives 'value'
PROMISE = re.compile(r"^(?P<expr>\S.*?)\s+# (?P<value>'[^']*').*$", flags=re.M)


def checked(block: str) -> str:
    """The block with each promise turned into an assertion."""
    return PROMISE.sub(lambda m: f"assert ({m['expr']}) == {m['value']}, {m['expr']!r}", block)


def test_readme_has_python_examples_that_promise_values():
    assert len(BLOCKS) >= 3
    assert sum(len(PROMISE.findall(b)) for b in BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(checked(BLOCKS[index]), f"README.md python block {index}", "exec"), {})


def test_a_broken_promise_fails():
    with pytest.raises(AssertionError):
        exec(checked("x = 'feasible'\nx   # 'infeasible' (proved)\n"), {})


# ---------------------------------------------------------------------------------------------
# The rest of the README: commands, paths, names and quoted numbers, checked without training.

ROOT = README.parent
TEXT = README.read_text()
SHELL_LINES = [line for block in re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S) for line in block.splitlines()]
FTPROP_COMMANDS = [line.split("  #")[0].strip() for line in SHELL_LINES if line.startswith("ftprop ")]
CODE_SPANS = re.findall(r"`([^`\n]+)`", TEXT)


def words_of(command: str) -> list[str]:
    """The command's arguments after `ftprop`, without its optional `[...]` parts."""
    import shlex

    return shlex.split(re.sub(r"\s*\[[^\]]*\]", "", command))[1:]


def test_the_readme_shows_ftprop_commands():
    assert len(FTPROP_COMMANDS) >= 8
    assert {words_of(c)[0] for c in FTPROP_COMMANDS} >= {"train", "evaluate", "report", "reproduce", "solve"}


@pytest.mark.parametrize("command", FTPROP_COMMANDS)
def test_each_ftprop_command_shown_parses(command, monkeypatch):
    from ftprop.cli import build_parser, resolve_train_config

    try:
        args, unknown = build_parser().parse_known_args(words_of(command))
    except SystemExit as err:
        pytest.fail(f"{command!r} does not parse (exit {err.code})")
    assert not unknown, (command, unknown)
    if args.command == "train" and args.resume is None and "..." not in command:
        monkeypatch.chdir(ROOT)  # the README's config paths are relative to the repository root
        resolve_train_config(args)  # the config file, the flags and the --set values are valid


def test_reproduce_dry_run_plans_what_the_readme_says(monkeypatch, capsys):
    # "ftprop reproduce table1 --rows convnet4 --dry-run   # ... without --epochs, 6 cells x 300 epochs"
    from ftprop.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["reproduce", "table1", "--rows", "convnet4", "--dry-run"]) == 0
    plan = [line for line in capsys.readouterr().out.splitlines() if "seed" in line]
    assert len(plan) == 6 and all("300 epochs" in line for line in plan), plan


def expand(path: str) -> list[str]:
    """`a{b,c}d` -> [abd, acd] (one brace group at a time)."""
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m[1].split(",") for p in expand(path[: m.start()] + alt + path[m.end():])]


def named_paths() -> list[str]:
    """Repository paths named in code spans (and the Layout block), relative to the root."""
    found = set()
    for span in CODE_SPANS:
        for tok in re.findall(r"(?<![\w./])(?:configs|benchmarks|src|tests|results)/[\w./{},*\-:]*", span):
            if tok.startswith("results/"):
                tok = "benchmarks/" + tok  # "a path written results/... below is in that folder"
            if "..." not in tok:
                found.update(expand(tok.rstrip(".,:")))
    layout = re.search(r"## Layout\n\n```\n(.*?)```", TEXT, flags=re.S)[1]
    for line in layout.splitlines():
        if line.startswith("   ") or not line.strip():
            continue  # a description's second line
        head = re.split(r"\s{2,}", line.strip())[0]
        base = "src/ftprop/" if line.startswith("  ") else ""
        found.update(base + name.strip() for name in head.split(","))
        found.update(re.findall(r"benchmarks/[\w/]+/", line))
    return sorted(found)


def test_every_repository_path_the_readme_names_exists():
    paths = named_paths()
    assert "src/ftprop/engine.py" in paths and "configs/recipes/cifar10_convnet4_sign_fast.toml" in paths
    missing = []
    for path in paths:
        path, _, test_name = path.partition("::")
        hits = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
        if not hits or (test_name and f"def {test_name}(" not in hits[0].read_text()):
            missing.append(path + (f"::{test_name}" if test_name else ""))
    assert not missing, missing


def test_every_ftprop_name_the_readme_uses_resolves():
    import importlib

    names = set(re.findall(r"\bftprop(?:\.\w+)+", TEXT))
    assert "ftprop.engine.param_groups" in names
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), name
            obj = getattr(obj, attr)


def test_every_config_key_the_readme_names_exists():
    import dataclasses

    from ftprop.config import Config

    keys = set(re.findall(r"`((?:model|data|optim|schedule|train)\.\w+)`", TEXT))
    keys |= set(re.findall(r"--set ((?:model|data|optim|schedule|train)\.\w+)=", TEXT))
    assert "train.ema_decay" in keys
    cfg = Config()
    fields = {f"{s.name}.{f.name}" for s in dataclasses.fields(cfg) if s.name != "name"
              for f in dataclasses.fields(getattr(cfg, s.name))}
    assert not keys - fields, sorted(keys - fields)


def test_the_layout_lists_the_registered_models_and_datasets():
    from ftprop.data import _registry
    from ftprop.models import MODELS, check_model

    check_model("mlp")  # registers the models
    layout = re.search(r"## Layout\n\n```\n(.*?)```", TEXT, flags=re.S)[1]
    models = re.search(r"models/\s+(.*?);", layout)[1].split(", ")
    assert sorted(models) == sorted(MODELS)
    datasets = re.search(r"data/\s+(.*?);", layout)[1]
    for name in _registry():
        assert name in datasets, name


def readme_table(header: str) -> list[list[str]]:
    """The cells of the rows of the README table whose header row starts with `header`."""
    start = TEXT.index(header)
    rows = []
    for line in TEXT[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def result_rows(path: str) -> dict[str, list[str]]:
    lines = (ROOT / "benchmarks/results" / path).read_text().splitlines()
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in lines if line.startswith("| "))}


def test_the_demo_table_is_the_one_in_its_result_file():
    result = (ROOT / "benchmarks/results/demo_cpu.md").read_text()
    rows = readme_table("| method | train acc (%) | test acc (%) | best test acc (%) | wall time (s) |")
    assert len(rows) == 3
    for cells in rows:
        assert "| " + " | ".join(cells) + " |" in result, cells


@pytest.mark.parametrize("header, path, methods, columns", [
    ("| method | best test acc (%) | final test acc (%) | final train acc (%) | paper, 300 epochs",
     "cifar10_convnet4/report.md", "convnet4 ", (2, 3, 4)),
    ("| method | best test acc (%) | final test acc (%) | gap (points) |",
     "fashion_mnist_mlp/report.md", "mlp ", (2, 3, 5)),
])
def test_the_accuracy_tables_quote_their_reports(header, path, methods, columns):
    unit = {"sign FTP-SH": "sign soft_hinge", "sign SSTE": "sign saturated_hinge", "ReLU": "relu"}
    report = result_rows(path)
    rows = readme_table(header)
    assert len(rows) == 3
    for cells in rows:
        source = report[methods + unit[cells[0]]]
        assert cells[1:len(columns) + 1] == [source[c] for c in columns], (cells, source)


def test_the_step_time_table_quotes_its_result_files():
    """Each row of the README's CPU step-time table quotes its network's every-variant run: the
    rounds, sign FTP-SH, SSTE, the worst of the hard-threshold variants and the control."""
    rows = readme_table("| network (rounds) | sign FTP-SH | sign SSTE |")
    assert len(rows) == 4
    for cells in rows:
        model, rounds = re.fullmatch(r"(\S+).*\((\d+)\)", cells[0]).groups()
        text = (ROOT / f"benchmarks/results/step_time_cpu_every_variant_{model}.md").read_text()
        assert f"--rounds {rounds} " in text, cells
        measured = {}
        for line in text.splitlines():
            c = [x.strip() for x in line.strip("|").split("|")]
            if len(c) > 3 and c[0] == model and re.fullmatch(r"\d\.\d{3}", c[3]):
                measured[c[1]] = c[3]
        assert len(measured) == 25, model  # ReLU, the control and the 23 hard-threshold variants
        assert measured["sign soft_hinge"] == cells[1], cells
        assert measured["sign saturated_hinge"] == cells[2], cells
        worst = max(v for k, v in measured.items() if k not in ("relu", "saturated_relu"))
        assert re.match(r"\d\.\d{3}", cells[3])[0] == worst, cells
        assert measured["saturated_relu"] == cells[4], cells

"""The ``ftprop`` command line: thin wrappers that parse, build objects and call the library.

Errors a user can cause end in one ``error: ...`` line (set FTPROP_DEBUG=1 for a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__

EXIT_USAGE = 2


def _cmd_losses(args: argparse.Namespace) -> int:
    from .losses import LOSSES

    for name, loss in LOSSES.items():
        alias = f" (alias {', '.join(loss.aliases)})" if loss.aliases else ""
        print(f"{name:16s} {loss.formula}{alias}\n{'':16s} {loss.note}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, seed=args.seed)
    return 0


# ---- train ----------------------------------------------------------------------------

# plain flag -> config key
_FLAGS = {
    "model": "model.name", "activation": "model.activation", "loss": "model.loss", "weighted": "model.weighted",
    "steps": "model.steps", "surrogate": "model.surrogate", "dataset": "data.name", "data_root": "data.root",
    "download": "data.download", "val_fraction": "data.val_fraction", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "optim.lr", "optimizer": "optim.name", "weight_decay": "optim.weight_decay",
    "momentum": "optim.momentum", "schedule": "schedule.name", "milestones": "schedule.milestones",
    "seed": "train.seed", "device": "train.device", "bf16": "train.bf16", "channels_last": "train.channels_last",
    "compile": "train.compile", "compile_mode": "train.compile_mode", "eval_train": "train.eval_train", "name": "name",
    "teacher": "train.teacher",
    "twin": "train.twin",
}


def _epoch_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of epoch numbers, e.g. 200,250") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number, at least 1")
    return value


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (configs/ has the paper's recipes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=1e-3 --set model.options.hidden=[512]")
    g = p.add_argument_group("common settings (override the config file; --set overrides these)")
    g.add_argument("--name")
    g.add_argument("--model", help="mlp, convnet4, convnet8, alexnet, resnet18, resnet18_cifar")
    g.add_argument("--activation", help="sign, step, staircase, relu, saturated_relu")
    g.add_argument("--loss", help="layer loss of hard-threshold units (see `ftprop losses`): soft_hinge (FTP-SH), "
                                  "saturated_hinge (SSTE), linear (STE), ...")
    g.add_argument("--weighted", action=argparse.BooleanOptionalAction, default=None,
                   help="weight each unit's layer loss by |dL_next/dh| (default: on, as the paper)")
    g.add_argument("--steps", type=int, help="staircase steps (3: the paper's 2-bit qReLU)")
    g.add_argument("--surrogate", help="staircase layer loss: single (default) or per_step")
    g.add_argument("--dataset", help="digits, mnist, fashion-mnist, cifar10, imagefolder")
    g.add_argument("--data-root", help="where the dataset lives (or is downloaded to)")
    g.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="download the dataset if missing")
    g.add_argument("--val-fraction", type=float, help="hold this share of the training set out for validation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--optimizer", help="sgd, adam, adamw")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--schedule", help="constant, multistep, cosine, onecycle")
    g.add_argument("--milestones", type=_epoch_list, help="multistep epochs, e.g. 200,250")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (model and optimiser update)")
    g.add_argument("--compile-mode", help="with --compile: default, reduce-overhead (CUDA graphs on a GPU), "
                   "max-autotune, max-autotune-no-cudagraphs")
    g.add_argument("--eval-train", action=argparse.BooleanOptionalAction, default=None,
                   help="also evaluate the training set each epoch (exact generalisation gap)")
    g.add_argument("--teacher", metavar="RUN_DIR",
                   help="distil from this trained run: the loss also matches its softened outputs "
                        "(train.distill_weight, train.distill_temperature)")
    g.add_argument("--twin", metavar="UNITS",
                   help="distil from a twin of the network with these units (e.g. relu), trained alongside "
                        "on the labels in the same steps (train.distill_weight, train.distill_temperature)")


def resolve_train_config(args: argparse.Namespace):
    """Config file (or the resumed run's) < plain flags < --set."""
    from .config import Config, apply_overrides, load_config

    if args.resume is not None:
        run_cfg = Path(args.resume) / "config.toml"
        if args.config is not None:
            raise ValueError("--resume continues a run with its own config; pass changes with flags or --set")
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ValueError("--resume continues the run in its own directory: drop --out")
        if args.force:
            raise ValueError("--resume continues the run in RUN_DIR and --force would replace it: give one of them")
        if not run_cfg.is_file():
            raise ValueError(f"cannot resume {args.resume}: it holds no run (no config.toml)")
        cfg = load_config(run_cfg)
    else:
        cfg = load_config(args.config) if args.config is not None else Config()
    patch: dict = {}
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if key == "name":
            patch["name"] = value
        else:
            section, sub = key.split(".")
            patch.setdefault(section, {})[sub] = value
    return apply_overrides(cfg, args.overrides, patch)


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine import train

    cfg = resolve_train_config(args)
    out = args.resume if args.resume is not None else args.out
    result = train(cfg, out, resume=args.resume is not None, force=args.force)
    s = result.summary
    if s.get("epochs"):
        print(f"done: {s['epochs']} epochs, best test acc {100 * s['best_test_acc']:.2f}% (epoch {s['best_epoch']}), "
              f"final {100 * s['final_test_acc']:.2f}%; run directory: {result.run_dir}")
    return 0


# ---- evaluate -------------------------------------------------------------------------

def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .data import load_dataset
    from .engine import checkpoint_model, evaluate, resolve_device
    from .runs import RunDirError, config_from_checkpoint, load_checkpoint, lock_run_dir

    target = Path(args.run)
    state = load_checkpoint(target)
    cfg = config_from_checkpoint(state)
    if target.is_dir():
        try:
            held = lock_run_dir(target)  # free unless a run is training in it
        except RunDirError:
            print(f"note: {target} is still training; this is its last checkpoint (epoch {state['epoch']})",
                  file=sys.stderr)
        else:
            if held is not None:
                os.close(held)
    if state.get("step"):
        print(f"note: the checkpoint was saved mid-epoch ({state['step']} steps into epoch {state['epoch'] + 1})",
              file=sys.stderr)  # stdout is the JSON result
    device = resolve_device(args.device, key="--device")
    bf16 = cfg.train.bf16  # as the run evaluated itself each epoch (training allows bf16 on a CPU too)
    d = cfg.data
    root = args.data_root if args.data_root is not None else d.root
    if args.split == "val" and d.val_fraction == 0:
        raise ValueError(f"{target} was trained without a validation split (data.val_fraction = 0): "
                         f"evaluate --split test or train")
    split_opts = {"val_fraction": d.val_fraction, "val_seed": d.val_seed} if args.split != "test" else {}
    download = d.download if args.download is None else args.download
    dataset = load_dataset(d.name, root=root, split=args.split, download=download, **split_opts, **d.options)
    dataset = dataset.to(device)
    if args.tta == "flip" and d.name.lower() in ("digits", "mnist"):
        print(f"note: {d.name} images are not mirror-symmetric, so the mirrored view is not an example of the "
              f"data; --tta flip is meant for natural images (CIFAR-10, image folders)", file=sys.stderr)
    try:
        model, weights = checkpoint_model(state, cfg, dataset, live=args.live)
    except ConfigError as err:
        advice = ("Evaluate it on data like its training data (a --data-root with the same classes)"
                  if args.data_root is not None else "Was it saved by another version of ftprop? Train the run "
                  "again with this one")
        raise ConfigError(f"{target}: {err}. {advice}") from None
    result = evaluate(model, dataset, args.batch_size, bf16=bf16, channels_last=cfg.train.channels_last,
                      tta=args.tta)
    result = {"run": str(target), "epoch": state["epoch"], "split": args.split, "n": len(dataset),
              "weights": weights, "tta": args.tta, "bf16": bf16, **result}
    print(json.dumps(result, indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .engine import load_model
    from .predict import predict, read_inputs

    model = load_model(args.run, live=args.live, device=args.device, preprocess=True)
    batches, names = zip(*(read_inputs(path, model) for path in args.inputs))  # every file read before any output
    images = torch.cat([b.to(torch.float32) for b in batches]) if len({b.dtype for b in batches}) > 1 \
        else torch.cat(batches)
    names = [n for group in names for n in group]
    results = predict(model, images, top=args.top)
    if args.json:
        print(json.dumps([{"input": n, "top": [{"class": c, "p": p} for c, p in r]} for n, r in zip(names, results)],
                         indent=2))
    else:
        for n, r in zip(names, results):
            print(f"{n}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in r))
    return 0


# ---- reproduce / report ---------------------------------------------------------------

def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import plan, run_table1

    if args.what != "table1":
        raise ValueError(f"unknown target {args.what!r}: only table1")
    runs, notes = plan(args.rows, args.cols, args.epochs, args.seeds, args.data_root, args.imagenet_root,
                       args.download, args.configs, args.device, need_data=not args.dry_run)
    if args.dry_run or not runs:
        for note in notes:
            print(note)
        for row, col, _, cfg in runs:
            print(f"{row}-{col} seed {cfg.train.seed}: {cfg.model.name} {cfg.model.activation} "
                  f"{cfg.model.loss or ''} {cfg.optim.name} lr {cfg.optim.lr} wd {cfg.optim.weight_decay} "
                  f"{cfg.train.epochs} epochs batch {cfg.train.batch_size}")
        if not runs:
            print("nothing to run: give the data (--data-root for CIFAR-10, --imagenet-root for ImageNet)")
            return 1
        return 0
    path = run_table1(args.out, runs, notes)
    print(path.read_text())
    if not json.loads(path.with_suffix(".json").read_text())["cells"]:
        print("no cell in the table (none has a finished epoch, or each was left out): see the notes above",
              file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    md, png = write_report(args.runs, args.out, title=args.title)
    print(md.read_text())
    print(f"written: {md}, {png}, {md.with_suffix('.json')}, {md.parent / 'environments.json'}")
    return 0


# ---- parser ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftprop", description="Train deep networks of hard-threshold units by "
                                     "feasible target propagation (Friesen & Domingos, ICLR 2018).")
    parser.add_argument("--version", action="version", version=f"ftprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("demo", help="FTP-SH vs SSTE vs ReLU on the digits shipped with scikit-learn (no download)")
    p.add_argument("--out", default="demo_runs", help="where the runs and curves.png go (default: demo_runs)")
    p.add_argument("--epochs", type=_positive, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train one model (TOML config, flags, --set overrides)")
    _add_train_flags(p)
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run (kept aside until the new one has written a checkpoint)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's checkpoint on a dataset split")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--data-root", help="override the run's data root")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="download the dataset if missing (default: as the run was trained)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--live", action="store_true",
                   help="evaluate the optimiser's weights, not the run's weight average (train.ema_decay > 0)")
    p.add_argument("--tta", choices=["flip"], default=None,
                   help="test-time augmentation: average the logits of each image and its mirror image "
                        "(a two-view ensemble, not the paper's single-view accuracy)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (or .npy arrays of pixels) with a trained run")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("inputs", nargs="+", metavar="FILE",
                   help="an image file (PNG, JPEG, ...: resized to the network's input as its dataset's test "
                        "images are) or a .npy array of stored pixel values, one input or a batch")
    p.add_argument("--top", type=_positive, default=3, help="how many classes to list per input (default: 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--live", action="store_true",
                   help="use the optimiser's weights, not the run's weight average (train.ema_decay > 0)")
    p.add_argument("--json", action="store_true", help="print JSON: each input's classes and probabilities")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("reproduce", help="run the cells of the paper's Table 1 from configs/table1")
    p.add_argument("what", choices=["table1"])
    p.add_argument("--rows", help="comma list of convnet4, convnet8, alexnet, resnet18 (default: all)")
    p.add_argument("--cols", help="comma list of sign_sste, sign_ftpsh, qrelu_sste, qrelu_ftpsh, relu, satrelu")
    p.add_argument("--epochs", type=_positive, help="override the paper's epochs (e.g. for a quick look)")
    p.add_argument("--seeds", type=_positive, default=1, help="seeds per cell (seed, seed+1, ...)")
    p.add_argument("--data-root", help="CIFAR-10 root (holding cifar-10-batches-py/)")
    p.add_argument("--imagenet-root", help="ImageNet root (train/<class>/..., val/<class>/...)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    p.add_argument("--device", help="auto, cpu, cuda (default: the configs')")
    p.add_argument("--configs", type=Path, help="folder of the cell configs (default: configs/table1)")
    p.add_argument("--out", default="runs/table1")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("report", help="markdown table + PNG curves from run directories")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="report",
                   help="folder for report.md, report.json, environments.json and curves.png (default: report; "
                        "an earlier report there is replaced)")
    p.add_argument("--title", default="ftprop runs")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("losses", help="list the layer losses")
    p.set_defaults(func=_cmd_losses)

    from .exact.cli import add_solve_parser

    add_solve_parser(sub)
    return parser


def _config_keys(name: str) -> list[str]:
    """The config keys ``section.name`` (a setting of that name in any section)."""
    import dataclasses

    from .config import _SECTION_TYPES

    return [f"{section}.{name}" for section, cls in _SECTION_TYPES.items()
            if name in {f.name for f in dataclasses.fields(cls)}]


def _option_hints(parser: argparse.ArgumentParser, unknown: list[str]) -> list[str]:
    """For each option-like word of ``unknown`` that ``parser`` does not take: the option meant."""
    import difflib

    options = [o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")]
    takes_set = any(a.dest == "overrides" for a in parser._actions)
    hints = []
    for word in (u.split("=", 1)[0] for u in unknown if u.startswith("-") and u.strip("-")):
        if word in parser._option_string_actions:
            continue
        name = word.lstrip("-")
        keys = _config_keys(name.replace("-", "_")) if takes_set else []
        close = difflib.get_close_matches(name, options, n=1)  # the names, not their dashes
        if keys:  # a setting with no flag of its own
            hints.append(f"{word}: a config key, not an option: --set {keys[0]}=VALUE")
        elif name.startswith("no-") and name[3:] in options:
            hints.append(f"{word}: no such option; --{name[3:]} is off unless given")
        else:
            hints.append(f"{word}: did you mean --{close[0]}?" if close else f"{word}: no such option")
    return hints


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors for missing arguments also name the options it did not
    take (``ftprop solve --dta x``: the --data meant), as unknown options are named after parsing."""

    def parse_known_args(self, args=None, namespace=None):
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        hints = _option_hints(self, getattr(self, "_words", [])) if "required" in message else []
        super().error(message + (f" ({'; '.join(hints)})" if hints else ""))


def _unknown_options(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> None:
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    own = next((p for p in sub.choices.values() if p.get_default("func") is args.func), parser) if sub else parser
    hints = _option_hints(own, unknown)
    own.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _options_before_command(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """Refuse ``ftprop --force train``: the command's options go after its name, where its own
    parser reads them (left as they are, argparse blames the command for an option it takes)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    at = next((i for i, w in enumerate(words) if w in sub.choices), None)
    leading = words[:at] if at is not None else []
    if any(w.startswith("-") for w in leading) and not {"-h", "--help", "--version"} & set(leading):
        parser.error(f"{' '.join(leading)}: a command's options go after its name: "
                     f"ftprop {words[at]} {' '.join(leading)} ...")


def main(argv: list[str] | None = None) -> int:
    from .data import DatasetError
    from .engine import NonFiniteLossError, TrainingStopped
    from .runs import RunDirError

    parser = build_parser()
    _options_before_command(parser, list(sys.argv[1:] if argv is None else argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's own parser, with its usage and the option meant
        _unknown_options(parser, args, unknown)
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe is met here, not at exit
        return rc
    except TrainingStopped as err:
        print(str(err), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing left to say to it
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        if args.command in ("train", "reproduce", "demo"):  # the closed output stopped the work itself
            print(f"error: the output's reader went away (a closed pipe), which stopped {args.command} part way; "
                  f"a run keeps its last checkpoint (ftprop train --resume RUN_DIR continues it)", file=sys.stderr)
            return 1
        return 0
    except (ValueError, DatasetError, RunDirError, NonFiniteLossError, OSError) as err:
        if os.environ.get("FTPROP_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``tangentlens run | analyze | index | report | sweep | ntk | findings |
quickstart``.

Heavy packages (torch, transformer_lens, umap) are imported inside the subcommands, so
``tangentlens --help`` answers fast. Errors a user can cause print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_run(args: argparse.Namespace) -> None:
    from .config import load_config

    cfg = load_config(args.config, args.overrides)  # config errors come before importing torch
    from .train import run

    result = run(cfg, out_dir=args.out, resume=args.resume, overwrite=args.overwrite)
    for regime, rows in result.metrics.items():
        last = rows[-1]
        print(f"{regime:>10}: step {last['step']:>6}  train_loss {last['train_loss']:.4g}  "
              f"test_loss {last['test_loss']:.4g}  test_acc {last['test_acc']:.4g}")
    if result.path is not None:
        print(f"wrote {result.path}")
    if result.diverged:
        raise Diverged("; ".join(
            f"regime {r!r} diverged at step {s} (train.lr={cfg.train.lr}); the other regimes "
            "finished and were written; lower train.lr" for r, s in result.diverged.items()))


class Diverged(ValueError):
    """A regime diverged (the run still finished and wrote the others)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_index(args: argparse.Namespace) -> None:
    from .store import write_index

    print(f"wrote {write_index(args.directory)}")


def _cmd_analyze(args: argparse.Namespace) -> None:
    from .lenses.registry import analyze

    print(f"wrote {analyze(args.runs, args.out, only=args.only)}")


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import write_report

    print(f"wrote {write_report(args.runs, args.out, analysis_dir=args.analysis_dir, only=args.only)}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import run_sweep

    index = run_sweep(args.config, args.overrides, args.out, jobs=args.jobs,
                      executor=args.executor, address=args.address)
    print(f"wrote {index}")


def _cmd_findings(args: argparse.Namespace) -> None:
    from .findings.build import findings

    print(f"wrote {findings(args.scale, args.out, data=args.data, reuse=args.reuse)}")


def _cmd_ntk(args: argparse.Namespace) -> None:
    import torch

    from .config import load_config
    from .executors import make_executor
    from .ntk.tiled import tiled_ntk
    from .train import prepare

    cfg = load_config(args.config, args.overrides)
    ds, model = prepare(cfg)
    if not 1 <= args.n <= len(ds.x_train):
        raise ValueError(f"--n {args.n} is not valid; the training set has "
                         f"{len(ds.x_train)} points (data.n_train)")
    x = ds.x_train[:args.n].to(getattr(torch, cfg.train.dtype))
    executor = make_executor(args.executor, args.jobs, args.address)
    res = tiled_ntk(model, x, args.out, tile=args.tile, mode=args.mode,
                    implementation=args.implementation, executor=executor, progress=True)
    print(f"wrote {res.path} ({res.computed} of {res.total} tiles computed now)")


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from .quickstart import quickstart

    print(quickstart(args.out))


def _executor_options(p: argparse.ArgumentParser) -> None:
    from .executors import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where tasks run: local processes (default), Ray, or Slurm via submitit")
    p.add_argument("--address", default=None,
                   help="Ray cluster address ('auto': the running cluster; default: start one)")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    p = Parser(prog="tangentlens", description=(
        "Train a network and its linearization as a matched pair, cache activations, "
        "and analyze which representations change."))
    p.add_argument("--version", action="version", version=f"tangentlens {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train every regime of a config and cache activations")
    r.add_argument("config", help="YAML config (see analyses/configs/)")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.width=512")
    r.add_argument("--out", required=True, help="run directory (run.h5, metrics.json)")
    r.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    r.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --out (after every input check passed) and start again")
    r.set_defaults(func=_cmd_run)

    a = sub.add_parser("analyze", help="run the analyses on cached runs")
    a.add_argument("runs", nargs="+", help="run files (run.h5) or run directories")
    a.add_argument("--out", required=True, help="output directory for CSV, PNG and summary.json")
    a.add_argument("--only", nargs="*", default=None, help="names of analyses to run")
    a.set_defaults(func=_cmd_analyze)

    i = sub.add_parser("index", help="write an index.h5 of external links to every run in DIR")
    i.add_argument("directory")
    i.set_defaults(func=_cmd_index)

    rep = sub.add_parser("report", help="write a self-contained HTML report for runs or a sweep index")
    rep.add_argument("runs", nargs="+", help="run files, run directories, a sweep directory or index.h5")
    rep.add_argument("--out", required=True, help="HTML file to write")
    rep.add_argument("--analysis-dir", default=None,
                     help="reuse analyses already written there (default: OUT's folder/analysis)")
    rep.add_argument("--only", nargs="*", default=None, help="names of analyses to run")
    rep.set_defaults(func=_cmd_report)

    sw = sub.add_parser("sweep", help="expand a grid (key=v1,v2,...) into runs and execute them")
    sw.add_argument("config", help="base YAML config")
    sw.add_argument("overrides", nargs="*", help="key=value or key=v1,v2,... (a grid axis)")
    sw.add_argument("--out", required=True, help="sweep directory (one run directory per grid point)")
    sw.add_argument("--jobs", type=int, default=1, help="local worker processes")
    _executor_options(sw)
    sw.set_defaults(func=_cmd_sweep)

    f = sub.add_parser("findings", help="run or reuse the experiments and write the findings "
                       "document (findings.md, .html, .json)")
    f.add_argument("--scale", default="default", choices=["tiny", "quick", "default", "full"],
                   help="experiment sizes (default: %(default)s; quick: a shared 2-core CPU; "
                        "full: a GPU)")
    f.add_argument("--out", default=None, help="document folder (default: docs/ at the default "
                   "scale, DATA/findings-<scale>/ otherwise)")
    f.add_argument("--data", default="data", help="root of the experiments' output folders "
                   "(default: %(default)s)")
    f.add_argument("--reuse", action="store_true",
                   help="reuse experiments that already finished at this scale")
    f.set_defaults(func=_cmd_findings)

    k = sub.add_parser("ntk", help="tiled, resumable empirical NTK of a config's θ0 on its "
                       "first N training points, into an HDF5 file")
    k.add_argument("config", help="YAML config (data and model)")
    k.add_argument("overrides", nargs="*", help="key=value overrides")
    k.add_argument("--n", type=int, required=True, help="number of training points")
    k.add_argument("--tile", type=int, default=1024, help="samples per tile side")
    k.add_argument("--out", required=True, help="HDF5 file (rerun the command to resume)")
    k.add_argument("--mode", choices=("trace", "full"), default="trace")
    k.add_argument("--implementation", default="auto",
                   choices=("auto", "structured", "jacobian", "ntk_vp"))
    k.add_argument("--jobs", type=int, default=1, help="local worker processes")
    _executor_options(k)
    k.set_defaults(func=_cmd_ntk)

    q = sub.add_parser("quickstart", help="the demo: digits MLP in sgd/linearized/kernel + analyses")
    q.add_argument("--out", default="data/quickstart")
    q.set_defaults(func=_cmd_quickstart)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (e.g. `run CFG --out DIR model.width=8`)
    bad = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from .executors import TasksFailed

    try:
        args.func(args)
    except TasksFailed as e:
        print(f"tangentlens {args.command}: {e}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        msg = " ".join(str(msg).split())  # one line, whatever the exception held
        print(f"tangentlens {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``medkt bench``: run a paper table as an experiment, shard it, merge the parts.

Forms::

    medkt bench CONFIG -o OUT [--data-root DIR] [--limit N] [--set key=value ...]
                       [--num-parts N --part-id I] [--resume | --overwrite] [--executor ray]
    medkt bench merge DIR... [-o OUT]
    medkt bench list                 shipped experiment configs
    medkt bench datasets [NAME]      dataset adapters and the folder layout each expects
"""
from __future__ import annotations

NAME = "bench"
HELP = "run a paper-table experiment (baseline + KT sweep), or merge the parts of a sharded run"
ORDER = 60
DESCRIPTION = ("Run an experiment config: 'medkt bench CONFIG -o OUT' (the baseline, then Knowledge Transfer "
               "over the config's learning-rate sweep; --num-parts/--part-id for one part of a sharded run); "
               "'medkt bench merge DIR...' gathers the parts; 'medkt bench list' shows the shipped configs; "
               "'medkt bench datasets [NAME]' the dataset adapters and the folder layout each expects. "
               "See docs/bench.md and docs/datasets.md.")


def add_arguments(p):
    p.add_argument("target", nargs="+", metavar="ARG",
                   help="CONFIG (an experiment YAML or shipped name) | merge DIR... | list | datasets [NAME]")
    p.add_argument("-o", "--out", help="output folder (required to run; merge: default the first DIR)")
    p.add_argument("--data-root", help="folder the config's dataset roots are relative to (default $MEDKT_DATA, "
                                       "else the current folder)")
    p.add_argument("--limit", type=int, help="evaluate at most N cases per dataset (quick runs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model=tiny-clip --set sweep.lrs=[1e-5]")
    p.add_argument("--model", help="shortcut for --set model=NAME")
    p.add_argument("--groups", nargs="+", help="run only these groups")
    p.add_argument("--runs", nargs="+", help="run only these runs (baseline, lr_1e-05, ...)")
    p.add_argument("--num-parts", type=int, default=1, help="split the work into N parts (default 1)")
    p.add_argument("--part-id", type=int, default=0, help="which part to run, 0-based (default 0)")
    p.add_argument("--resume", action="store_true", help="skip finished blocks of an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace this part's earlier results")
    p.add_argument("--kt-dir", help="where KT inversions and fine-tuned weights are cached (default OUT)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default) or ray: Ray tasks for inversions, an actor pool for evaluation")
    p.add_argument("--ray-address", help="Ray cluster address ('auto' joins a running cluster; "
                                         "default: start a local instance)")
    p.add_argument("--num-actors", type=int, help="Ray: evaluation actors (each loads the model once)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="Ray: GPUs per actor and per inversion job")
    p.add_argument("--no-plots", action="store_true", help="merge: skip the figures")


def _datasets(names) -> int:
    from medkt.bench.datasets import get_adapter, list_datasets
    adapters = [get_adapter(n) for n in names] if names else list_datasets()
    for a in adapters:
        print(f"{a.name:20s} {a.task:15s} {a.title}")
        if names:
            print(a.layout.rstrip("\n"))
            if a.default_options:
                print(f"options: {a.default_options}")
    return 0


def run(args) -> int:
    from medkt.errors import ConfigError
    head, rest = args.target[0], args.target[1:]
    if head == "list":
        from medkt.bench.experiment import list_experiments
        print("\n".join(list_experiments()))
        return 0
    if head == "datasets":
        return _datasets(rest)
    if head == "merge":
        if not rest:
            raise ConfigError("merge needs at least one run folder: medkt bench merge DIR... [-o OUT]")
        from medkt.bench.merge import merge_runs
        summary = merge_runs(rest, out=args.out, plots=not args.no_plots)
        out = args.out or rest[0]
        print(f"merged {summary['num_parts']} part(s) into {out}: per_case.csv, summary.json, report.md")
        return 0
    if rest:
        raise ConfigError(f"unexpected arguments after the config: {' '.join(rest)}")
    if not args.out:
        raise ConfigError("an output folder is needed: -o OUT")
    from medkt.bench.executors import make_executor
    from medkt.bench.experiment import load_experiment
    from medkt.bench.runner import run_benchmark
    overrides = list(args.set)
    if args.model:
        overrides.append(f"model={args.model}")
    cfg = load_experiment(head, overrides)
    if args.limit:
        for spec in cfg.data.values():
            spec.limit = args.limit
    options = {}
    if args.executor == "ray":
        options = {"address": args.ray_address, "num_actors": args.num_actors, "num_gpus": args.gpus_per_actor}
    executor = make_executor(args.executor, **options)
    try:
        res = run_benchmark(cfg, args.out, data_root=args.data_root, num_parts=args.num_parts,
                            part_id=args.part_id, resume=args.resume, overwrite=args.overwrite,
                            executor=executor, groups=args.groups, runs=args.runs, kt_dir=args.kt_dir,
                            progress=args.verbose > 0)
    finally:
        executor.close()
    if res.summary is not None:
        print(f"wrote {res.out_dir}/per_case.csv, summary.json, report.md")
    else:
        print(f"part {args.part_id} of {args.num_parts} done in {res.part_dir}; when all parts are done: "
              f"medkt bench merge {res.out_dir}")
    return 0

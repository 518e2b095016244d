"""``medkt demo``: Knowledge Transfer + zero-shot segmentation on the shipped synthetic worlds."""
from __future__ import annotations

NAME = "demo"
HELP = "offline demo: teach world-clip a novel concept and segment phantoms (report, plots, run.json)"
ORDER = 2


def add_arguments(p):
    p.add_argument("-o", "--output", default="medkt-demo", help="output folder (default: ./medkt-demo)")
    p.add_argument("--full", action="store_true",
                   help="whole sweep: every novel concept, every variant "
                        "(paper caption, name only, no name, text, both, noise, LoRA)")
    p.add_argument("--concept", default=None, help="novel concept of the quick demo (default: gyroscope)")
    p.add_argument("--lrs", default=None, help="comma-separated learning rates (default: 3e-5,1e-4,3e-4,1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def run(args) -> int:
    from medkt.errors import ConfigError
    from medkt.worlds.demo import DemoConfig, run_demo
    cfg = DemoConfig(full=args.full, seed=args.seed, threads=args.threads)
    if args.concept:
        from medkt.worlds.concepts import build_world
        names = [c.name for c in build_world().novel]
        if args.concept not in names:
            from medkt.errors import UnknownNameError
            raise UnknownNameError("novel concept", args.concept, names)
        cfg.concept = args.concept
    if args.lrs:
        try:
            cfg.lrs = tuple(float(x) for x in args.lrs.split(",") if x.strip())
            cfg.extra_lrs_given = True
        except ValueError:
            raise ConfigError(f"--lrs must be comma-separated numbers, got '{args.lrs}'.") from None
    run_demo(args.output, cfg, overwrite=args.overwrite)
    return 0

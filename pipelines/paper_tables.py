"""Reproduce the paper's tables: `medkt bench` on every experiment config in configs/experiments/.

    python pipelines/paper_tables.py --data-root /data --out runs/paper [--tables table1_rare_concepts ...]
    python pipelines/paper_tables.py --smoke --out /tmp/smoke     # fake data + tiny models, seconds per table

Each table gets OUT/<name>/ with per_case.csv, summary.json, report.md (paper vs measured) and figures/.
Extra arguments after `--` go to every `medkt bench` call (e.g. -- --executor ray --resume).
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data-root")
    p.add_argument("--tables", nargs="*", help="experiment names (default: all)")
    p.add_argument("--smoke", action="store_true", help="build fake datasets and run with tiny models")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    from pathlib import Path

    from medkt.bench.experiment import list_experiments, load_experiment
    from medkt.cli.main import main as medkt
    names = args.tables or list_experiments()
    extra = [a for a in args.rest if a != "--"]
    status = 0
    for name in names:
        sets, data_root = [], args.data_root
        if args.smoke:
            from medkt.bench.fakes import make_fakes_for, quick_overrides
            sets = quick_overrides(load_experiment(name))
            data_root = str(make_fakes_for(load_experiment(name, sets), Path(args.out) / "fake-data", n=2))
        argv_ = ["bench", name, "-o", str(Path(args.out) / name)] + (["--data-root", data_root] if data_root else [])
        argv_ += [x for s in sets for x in ("--set", s)] + extra
        print(f"== {name}", flush=True)
        status = medkt(argv_) or status
    return status


if __name__ == "__main__":
    sys.exit(main())

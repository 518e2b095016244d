"""Shared command-line options of the runnable pipelines (no logic beyond argument plumbing)."""
from __future__ import annotations

import argparse
import json


def parser(doc: str, task: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset adapter name (medkt bench datasets)")
    p.add_argument("--root", required=True, help="the dataset folder, in the adapter's documented layout")
    p.add_argument("--model", required=True, help="registered model name (medkt models)")
    p.add_argument("--weights", help="local weights for --model")
    p.add_argument("--limit", type=int, help="at most N cases")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--concepts", help="KT first: concept set (rare, jsrt, chexpert, segmentation, mscoco, or a YAML)")
    p.add_argument("--learn", nargs="*", default=[], help="KT: names in the concept set (default all)")
    p.add_argument("--lr", type=float, help="KT: fine-tuning learning rate")
    p.add_argument("--preset", default="paper", help="KT: transfer preset (configs/transfer)")
    p.add_argument("--set", action="append", default=[], help="KT: transfer overrides, e.g. inversion.steps=200")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    return p


def model_and_data(args):
    from medkt.bench.datasets import load_dataset
    from medkt.bench import learn_concepts
    from medkt.models import create_model
    model = create_model(args.model, weights=args.weights)
    if args.concepts:
        model = learn_concepts(model, args.concepts, args.learn, lr=args.lr, preset=args.preset,
                               overrides=args.set)
    return model.eval(), load_dataset(args.dataset, args.root, limit=args.limit)


def report(result, path: str | None) -> int:
    text = json.dumps({k: v for k, v in result.metrics.items()}, indent=2, default=str)
    print(text)
    if path:
        with open(path, "w") as fh:
            fh.write(text + "\n")
    return 0

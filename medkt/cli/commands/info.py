"""``medkt info``: versions, device, cache locations, offline state and which weights are present."""
from __future__ import annotations

import json

NAME = "info"
HELP = "show versions, device, cache folders and which model weights are present"
ORDER = 1


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="machine-readable output")


def info() -> dict:
    """The data behind ``medkt info`` (Python API)."""
    from medkt import paths
    from medkt.models.registry import list_models
    from medkt.models.weights import weights_status
    from medkt.runs import environment_info
    env = environment_info()
    return {**env,
            "offline": paths.is_offline(),
            "medkt_home": str(paths.medkt_home()),
            "hf_cache": str(paths.hf_cache_dir()),
            "torch_cache": str(paths.torch_cache_dir()),
            "weights": {s.name: weights_status(s) for s in list_models()}}


def run(args) -> int:
    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"medkt {data['packages'].get('medkt')}  python {data['python']}  ({data['platform']})")
    for k, v in data["packages"].items():
        print(f"  {k:18s} {v or '-'}")
    dev = data.get("gpu") or ("cuda" if data.get("cuda_available") else "cpu")
    print(f"device: {dev}, torch threads: {data.get('torch_threads')}")
    print(f"offline: {data['offline']} (set MEDKT_OFFLINE=0 to allow downloads)")
    print(f"MEDKT_HOME: {data['medkt_home']}\nHF cache:   {data['hf_cache']}\ntorch cache: {data['torch_cache']}")
    print("weights:")
    for name, st in data["weights"].items():
        print(f"  {name:22s} {st}")
    return 0

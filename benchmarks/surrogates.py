"""Write full-size surrogates (real architecture, random weights, real on-disk layout) of medkt's
real models, so `create_model(NAME)` loads them offline exactly as it would load a download.

    python benchmarks/surrogates.py biomedclip sam-vit-b            # into MEDKT_HOME / the HF cache
    python benchmarks/surrogates.py --all --home /tmp/mh --hf-cache /tmp/hf --check

Then run medkt with ``MEDKT_HOME=/tmp/mh HF_HUB_CACHE=/tmp/hf``.  ``--check`` loads each one in
a fresh interpreter with those variables set (``huggingface_hub`` reads them at import) and
compares the loaded weights' fingerprint with the one written.  See medkt/models/surrogates.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHECK = ("import json,sys; from medkt.models.surrogates import check_load; "
         "print(json.dumps(check_load(sys.argv[1])))")


def check_in_subprocess(spec: str, home: str, hf_cache: str) -> dict:
    env = {**os.environ, "MEDKT_HOME": home, "HF_HUB_CACHE": hf_cache, "MEDKT_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", CHECK, spec], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"loading {spec} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    from medkt.models.surrogates import SURROGATES, build_surrogate
    from medkt.paths import hf_cache_dir, medkt_home
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"models: {', '.join(SURROGATES)}")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--home", default=str(medkt_home()), help="MEDKT_HOME to write into")
    ap.add_argument("--hf-cache", default=str(hf_cache_dir()), help="Hugging Face hub cache to write into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="load each one back in a fresh process")
    args = ap.parse_args(argv)
    names = list(SURROGATES) if args.all else args.names
    if not names:
        ap.error("name at least one model, or --all")
    failed = 0
    for name in names:
        t = time.perf_counter()
        s = build_surrogate(name, medkt_home=args.home, hf_cache=args.hf_cache, seed=args.seed)
        print(f"{name}: wrote {s.nbytes / 1e6:.1f} MB in {time.perf_counter() - t:.1f}s "
              f"(fingerprint {s.fingerprint[:16]}); files: {', '.join(map(str, s.files))}")
        if args.check:
            r = check_in_subprocess(name, args.home, args.hf_cache)
            ok = r["fingerprint"] == s.fingerprint
            failed += not ok
            print(f"  load check: {'OK' if ok else 'FINGERPRINT MISMATCH'}; {r['parameters']:,} parameters, "
                  f"weights {r['weights']}, forward {r['forward']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

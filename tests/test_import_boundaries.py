"""Layers (issue 13 item 5): the model, I/O and metrics layers load nothing above them.

One fresh interpreter imports medkt.models, medkt.io and medkt.metrics in turn and calls
``list_models()`` after each import, recording which upper-layer modules appeared at which step.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

UPPER = ("medkt.transfer", "medkt.segmentation", "medkt.bench", "medkt.worlds")

CODE = """
import importlib, json, sys
upper = %r
out = {}
for mod in ("medkt.models", "medkt.io", "medkt.metrics"):
    importlib.import_module(mod)
    from medkt.models import list_models
    names = [s.name for s in list_models()]
    out[mod] = sorted(k for k in sys.modules if k.startswith(upper))
out["n_models"] = len(names)
out["world_models"] = [n for n in ("world-clip", "phantom-clip", "phantom-sam") if n in names]
print(json.dumps(out))
""" % (UPPER,)


def test_lower_layers_import_no_upper_layer():
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=180, cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for mod in ("medkt.models", "medkt.io", "medkt.metrics"):
        assert out[mod] == [], f"importing {mod} + list_models() loaded {out[mod]}"
    assert out["world_models"] == ["world-clip", "phantom-clip", "phantom-sam"]  # still registered
    assert out["n_models"] >= 20


def test_registry_and_family_modules_import_nothing_above_models():
    """Static check: no module under medkt/models/ names an upper package or a private zoo builder."""
    root = Path(__file__).resolve().parents[1] / "medkt" / "models"
    for f in sorted(root.glob("*.py")):
        text = f.read_text()
        for pkg in UPPER:
            assert f"import {pkg}" not in text and f"from {pkg}" not in text, f"{f.name} imports {pkg}"
        assert "from medkt.models.zoo import _" not in text, f"{f.name} uses a private zoo builder"

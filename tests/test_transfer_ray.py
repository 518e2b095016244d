"""``medkt transfer --executor ray``: one job per concept on Ray actors (issue 15 item 6).

The Ray run's images and weight deltas equal a local run's bit for bit (tensors and metadata, but
the deltas' creation time) when the local run inverts each concept in its own batch
(``--batch-images`` = images per concept), the batching every Ray job uses.  Whole-file bytes
are not compared: safetensors orders header metadata differently from process to process.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from medkt.errors import ConfigError
from medkt.transfer import run
from medkt.transfer.concepts import load_concepts
from medkt.transfer.distributed import merge_inversions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RARE = load_concepts("rare")
FAST = dict(steps=6, images_per_concept=2, batch_images=2, seed=3, progress=False, lr=[1e-3, 2e-3])


def _payload_digests(root):
    """Per weights/images file: sha256 of its tensors and of its metadata without ``created``."""
    from safetensors import safe_open
    out = {}
    for p in sorted(root.rglob("*.safetensors")):
        h = hashlib.sha256()
        with safe_open(str(p), "pt") as f:
            meta = {k: v for k, v in (f.metadata() or {}).items() if k != "created"}
            h.update(json.dumps(meta, sort_keys=True).encode())
            for k in sorted(f.keys()):
                h.update(k.encode() + f.get_tensor(k).numpy().tobytes())
        out[str(p.relative_to(root))] = h.hexdigest()
    return out


def test_merge_inversions_keeps_set_order():
    from medkt.transfer.api import subset_inversion
    from medkt.models import create_model
    from medkt.transfer.protocol import invert
    inv = invert(create_model("tiny-clip"), RARE, steps=2, images_per_concept=2, progress=False)
    parts = [subset_inversion(inv, [n]) for n in reversed(RARE.names)]
    merged = merge_inversions(parts, list(RARE))
    assert merged.concept_names == inv.concept_names and torch.equal(merged.images, inv.images)
    assert torch.equal(merged.score, inv.score)


def test_ray_refuses_joint():
    with pytest.raises(ConfigError, match="per-concept"):
        run(RARE, "tiny-clip", joint=True, executor="ray", **FAST)


@pytest.mark.slow  # starts a local Ray instance and 2 actors (~1 min on 2 shared cores)
def test_ray_equals_local(tmp_path, network_attempts):
    ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'medkt[ray]')")
    local = run(RARE, "tiny-clip", out=tmp_path / "local", **FAST)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        remote = run(RARE, "tiny-clip", out=tmp_path / "ray", executor="ray", workers=2, **FAST)
        # --resume: every concept is finished, so the workers reuse all of it
        again = run(RARE, "tiny-clip", out=tmp_path / "ray", executor="ray", workers=2, resume=True, **FAST)
    finally:
        ray.shutdown()
    assert network_attempts == []
    d_local, d_ray = _payload_digests(tmp_path / "local"), _payload_digests(tmp_path / "ray")
    assert len(d_local) == len(RARE) * (1 + 2)  # images + one delta per lr, per concept
    assert d_ray == d_local
    assert torch.equal(remote.inversion.images, local.inversion.images)
    assert remote.inversion.concept_names == local.inversion.concept_names
    rec = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert rec["executor"]["executor"] == "ray" and rec["protocol"] == "per-concept"
    assert [(f["concepts"], f["lr"]) for f in rec["finetunes"]] == \
           [(f["concepts"], f["lr"]) for f in json.loads((tmp_path / "local" / "run.json").read_text())["finetunes"]]
    assert all(f.resumed for f in again.finetunes) and sorted(again.inversion.resumed) == sorted(RARE.names)
    for ft_l, ft_r in zip(local.finetunes, remote.finetunes):
        m_l, m_r = local.model(ft_l.concepts[0], ft_l.lr), remote.model(ft_r.concepts[0], ft_r.lr)
        assert all(torch.equal(a, b) for a, b in zip(m_l.state_dict().values(), m_r.state_dict().values()))


def test_cli_flags_map_to_run_keywords():
    from medkt.cli.main import build_parser
    from medkt.cli.transfer_args import transfer_kwargs
    args = build_parser().parse_args(["transfer", "--concepts", "rare", "--model", "tiny-clip", "-o", "out",
                                      "--executor", "ray", "--ray-address", "auto", "--workers", "3"])
    kw = transfer_kwargs(args)
    assert (kw["executor"], kw["ray_address"], kw["workers"], kw["gpus_per_worker"]) == ("ray", "auto", 3, 0.0)
    import inspect
    assert set(kw) <= set(inspect.signature(run).parameters)  # every flag is a keyword of the Python API

"""Full-size surrogates (issue 15 item 3): each real model's exact architecture with random
weights, written in its real on-disk layout, loads strictly through ``create_model(NAME)``.

B-sized models are built and loaded for real (slow: ~15-40 s each on 2 cores, 0.4-0.8 GB of
scratch disk, deleted afterwards).  L/H sizes are checked on the meta device (no memory, no disk):
medkt's SAM builder against segment_anything's own, and open_clip's L/14 architectures.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import json, sys
from medkt.models.surrogates import build_surrogate, check_load
s = build_surrogate(sys.argv[1])
out = {"written": s.fingerprint, "nbytes": s.nbytes, "files": [str(f) for f in s.files], "loads": {}}
for spec in sys.argv[2:]:
    out["loads"][spec] = check_load(spec)
print(json.dumps(out))
"""


@pytest.fixture
def scratch(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)  # hundreds of MB: never left for pytest's basetemp


def build_and_load(scratch: Path, name: str, *specs: str) -> dict:
    """Build ``name``'s surrogate and load ``specs`` (default: ``name``) in one fresh interpreter
    whose MEDKT_HOME and HF_HUB_CACHE point at ``scratch`` (huggingface_hub reads them at import)."""
    env = {**os.environ, "MEDKT_HOME": str(scratch / "home"), "HF_HUB_CACHE": str(scratch / "hf"),
           "MEDKT_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, "-c", CODE, name, *(specs or (name,))], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_biomedclip_loads_from_the_hf_cache_by_name_and_hf_hub_spec(scratch):
    repo = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    out = build_and_load(scratch, "biomedclip", "biomedclip", f"hf-hub:{repo}")
    snap = Path(out["files"][0]).parent
    assert snap.parent.parent.name == "models--microsoft--BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert (snap.parent.parent / "refs" / "main").read_text() == snap.name
    assert Path(out["files"][1]).is_symlink() and Path(out["files"][1]).resolve().parent.name == "blobs"
    assert not (snap / "vocab.txt").exists()  # as on the hub: the tokenizer lives in the BERT repo
    for spec, r in out["loads"].items():
        assert r["forward"] == [[1, 512], [1, 512], 256], spec  # 512-d embeddings, context 256
        assert r["parameters"] == 195_902_721
    # strict load of exactly the written weights (position_ids in the file are dropped as open_clip does)
    assert out["loads"]["biomedclip"]["fingerprint"] == out["written"]
    # regression: the hf-hub: spec loads the snapshot as a local dir, which holds no tokenizer;
    # it used to fail with "Couldn't instantiate the backend tokenizer"
    assert out["loads"][f"hf-hub:{repo}"]["fingerprint"] == out["written"]
    assert out["loads"][f"hf-hub:{repo}"]["weights"].startswith(f"hf-hub:{repo}@")


@pytest.mark.slow
@pytest.mark.parametrize("name, repo", [("clip-vit-b32", "timm/vit_base_patch32_clip_224.openai"),
                                        ("clip-vit-b16", "timm/vit_base_patch16_clip_224.openai")])
def test_openai_clip_loads_from_open_clips_hub_repo(scratch, name, repo):
    out = build_and_load(scratch, name)
    assert f"models--{repo.replace('/', '--')}" in out["files"][0]
    r = out["loads"][name]
    assert r["fingerprint"] == out["written"]
    assert r["forward"] == [[1, 512], [1, 512], 77]
    assert r["parameters"] == {"clip-vit-b32": 151_277_313, "clip-vit-b16": 149_620_737}[name]


@pytest.mark.slow
@pytest.mark.parametrize("name, filename", [("sam-vit-b", "sam_vit_b_01ec64.pth"), ("medsam", "medsam_vit_b.pth")])
def test_sam_checkpoints_load_from_medkt_home(scratch, name, filename):
    out = build_and_load(scratch, name)
    path = scratch / "home" / "weights" / name / filename
    assert out["files"] == [str(path)]
    assert out["nbytes"] > 370e6  # the published sam_vit_b_01ec64.pth is 375,042,383 bytes
    r = out["loads"][name]
    assert r["fingerprint"] == out["written"]  # segment_anything's own vit_b == medkt's builder
    assert r["weights"] == str(path) and r["parameters"] == 93_735_472
    assert r["forward"] == [1, 1, 96, 128]


@pytest.mark.slow
def test_medclip_loads_from_the_unzipped_folder_and_hf_cache_tokenizer(scratch):
    out = build_and_load(scratch, "medclip-vit")
    r = out["loads"]["medclip-vit"]
    assert r["fingerprint"] == out["written"]
    assert r["weights"] == str(scratch / "home" / "weights" / "medclip-vit" / "pytorch_model.bin")
    assert r["forward"][:2] == [[1, 512], [1, 512]]
    assert r["parameters"] == 136_616_059


@pytest.mark.slow
def test_hf_clip_loads_from_the_hf_cache_with_its_processor(scratch):
    out = build_and_load(scratch, "hf-clip-vit-b32")
    names = sorted(Path(f).name for f in out["files"])
    assert names == ["config.json", "merges.txt", "preprocessor_config.json", "pytorch_model.bin",
                     "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
    r = out["loads"]["hf-clip-vit-b32"]
    assert r["fingerprint"] == out["written"]  # from_pretrained is not strict: the fingerprint is the check
    assert r["forward"] == [[1, 512], [1, 512], 77] and r["parameters"] == 151_277_313


@pytest.mark.slow
@pytest.mark.parametrize("name, forward", [("vilt-b32-mlm", [[1, 40, 30522], 40]), ("vilt-b32-coco", [[1], 40])])
def test_vilt_heads_load_from_the_hf_cache(scratch, name, forward):
    out = build_and_load(scratch, name)
    r = out["loads"][name]
    assert r["fingerprint"] == out["written"]
    assert r["forward"] == forward  # MLM logits over a 40-token text / one ITM logit


def test_every_real_registered_model_has_a_surrogate_or_a_meta_check():
    from medkt.models import list_models
    from medkt.models.surrogates import SURROGATES
    meta_checked = {"sam-vit-l", "sam-vit-h", "clip-vit-l14", "coca-vit-l14", "coca-vit-l14-mscoco"}
    real = {s.name for s in list_models() if not s.tiny and not s.options.get("shipped")}
    assert real - set(SURROGATES) - meta_checked == set()


# ---------------------------------------------------------------------- fast checks
def test_hf_cache_put_is_found_by_huggingface_hub(tmp_path):
    from huggingface_hub import try_to_load_from_cache
    from medkt.models.surrogates import fake_commit, hf_cache_put, synthetic_vocab
    snap = hf_cache_put(tmp_path, "org/name", {"config.json": b"{}", "w.bin": lambda p: p.write_bytes(b"x" * 10)})
    assert snap.name == fake_commit("org/name")
    for f in ("config.json", "w.bin"):
        hit = try_to_load_from_cache("org/name", f, cache_dir=str(tmp_path))
        assert hit == str(snap / f) and Path(hit).read_bytes()
    import hashlib
    assert (snap / "w.bin").resolve().name == hashlib.sha256(b"x" * 10).hexdigest()  # LFS files: sha256 etag
    assert len(synthetic_vocab(30522).decode().splitlines()) == 30522


def test_hf_cache_dir_follows_huggingface_hub_precedence(monkeypatch, tmp_path):
    from medkt.paths import hf_cache_dir
    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(v, raising=False)
    assert hf_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # used to be ignored
    assert hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfh"))
    assert hf_cache_dir() == tmp_path / "hfh" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))  # used to be ignored
    assert hf_cache_dir() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "new"))
    assert hf_cache_dir() == tmp_path / "new"


def _meta_shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("arch, name, params", [("vit_l", "sam-vit-l", 312_343_088),
                                                ("vit_h", "sam-vit-h", 641_090_864)])
def test_sam_large_sizes_match_segment_anything_on_meta(arch, name, params):
    """medkt's SAM builder has exactly segment_anything's keys and shapes (no weights allocated)."""
    from segment_anything import sam_model_registry
    from medkt.models.sam import SAM_ARCHS, build_sam_module
    from medkt.models.specs import _sam_name
    with torch.device("meta"):
        official = _meta_shapes(sam_model_registry[arch]())
        ours = _meta_shapes(build_sam_module(**SAM_ARCHS[arch]))
    assert ours == official
    assert sum(torch.Size(s).numel() for s in official.values()) == params
    assert _sam_name(Path(f"sam_{arch}.pth"), official) == name  # a file of these shapes is recognised


@pytest.mark.parametrize("name", ["clip-vit-l14", "coca-vit-l14"])
def test_open_clip_large_sizes_resolve_and_build_on_meta(name):
    import open_clip
    from medkt.models import get_spec
    from medkt.models.resolve import open_clip_hub_repo
    spec = get_spec(name)
    arch, tag = spec.options["arch"], spec.options["tag"]
    repo = open_clip_hub_repo(arch, tag)
    assert repo == {"clip-vit-l14": "timm/vit_large_patch14_clip_224.openai",
                    "coca-vit-l14": "laion/CoCa-ViT-L-14-laion2B-s13B-b90k"}[name]
    with torch.device("meta"):
        model = open_clip.create_model(arch, pretrained=None, device="meta")
    n = sum(p.numel() for p in model.parameters())
    assert n == {"clip-vit-l14": 427_616_513, "coca-vit-l14": 638_450_177}[name]
    assert open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False) == (name == "clip-vit-l14")

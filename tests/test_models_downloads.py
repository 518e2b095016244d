"""Download integrity (issue 14 item 7): hash checked before the rename, full pins or an explicit
--allow-unpinned, Hugging Face revision pins, bounded and contained unzip.  All offline:
file:// URLs and a stubbed snapshot_download, under a network guard."""
from __future__ import annotations

import re
import zipfile

import pytest
import torch

from medkt.cli.main import main
from medkt.errors import WeightsError
from medkt.models import get_spec, list_models
from medkt.models.registry import _REGISTRY, ModelSpec
from medkt.models.weights import (download, entry_pinned, hf_local_only, read_state_dict, safe_extract, sha256_of,
                                  unpinned_entries, verify)


@pytest.fixture
def online(tmp_path, monkeypatch, network_attempts):
    """MEDKT_OFFLINE=0 with a private MEDKT_HOME; the conftest guard still blocks real sockets."""
    home = tmp_path / "home"
    monkeypatch.setenv("MEDKT_HOME", str(home))
    monkeypatch.setenv("MEDKT_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    yield home
    assert network_attempts == []


@pytest.fixture
def ckpt(tmp_path):
    src = tmp_path / "src" / "ckpt.pth"
    src.parent.mkdir()
    torch.save({"w": torch.ones(2)}, src)
    return src


def url_spec(name, src, **entry):
    return ModelSpec(name=name, family="segment_anything", builder=None, kind="sam",
                     files=[{"url": src.as_uri(), "filename": "ckpt.pth", **entry}])


def test_pinned_download_lands_and_verifies(online, ckpt):
    spec = url_spec("fake-sam", ckpt, sha256=sha256_of(ckpt))
    (path,) = download(spec)
    assert path == str(online / "weights" / "fake-sam" / "ckpt.pth")
    assert verify(spec) == [(path, "ok (sha256)")]
    assert not list((online / "weights" / "fake-sam").glob("*.part"))


def test_bad_hash_never_replaces_the_file_in_place(online, ckpt, tmp_path):
    """Verified *before* the rename: a corrupt re-download leaves the good file untouched."""
    spec = url_spec("fake-sam", ckpt, sha256=sha256_of(ckpt))
    (path,) = download(spec)
    good = open(path, "rb").read()
    evil = tmp_path / "evil" / "ckpt.pth"
    evil.parent.mkdir()
    evil.write_bytes(b"not the published file")
    bad = url_spec("fake-sam", evil, sha256=sha256_of(ckpt))
    with pytest.raises(WeightsError, match="not the pinned"):
        download(bad)
    folder = online / "weights" / "fake-sam"
    assert open(path, "rb").read() == good
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt.pth"]  # no .part, no .corrupt left behind


def test_unpinned_download_needs_allow_unpinned_and_is_recorded(online, ckpt):
    spec = url_spec("fake-loose", ckpt)
    assert unpinned_entries(spec) == [ckpt.as_uri()]
    with pytest.raises(WeightsError, match="--allow-unpinned"):
        download(spec)
    assert not (online / "weights" / "fake-loose").exists()
    (path,) = download(spec, allow_unpinned=True)
    sums = (online / "weights" / "fake-loose" / "SHA256SUMS").read_text()
    assert f"{sha256_of(ckpt)}  ckpt.pth" in sums
    assert verify(spec) == [(path, "ok (sha256 recorded at download)")]
    with open(path, "ab") as f:
        f.write(b"x")
    assert verify(spec)[0][1].startswith("MISMATCH")


def test_cli_download_flag(online, ckpt, monkeypatch, capsys):
    monkeypatch.setitem(_REGISTRY, "fake-cli", url_spec("fake-cli", ckpt))
    assert main(["weights", "download", "fake-cli"]) != 0
    err = capsys.readouterr().err
    assert "--allow-unpinned" in err and "Traceback" not in err
    assert main(["weights", "download", "--allow-unpinned", "fake-cli"]) == 0
    assert "fake-cli:" in capsys.readouterr().out


def test_zip_download_is_hashed_then_unzipped(online, ckpt, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(ckpt, "bundle/pytorch_model.bin")
    entry = {"url": archive.as_uri(), "filename": "pytorch_model.bin", "unzip": True}
    wrong = ModelSpec(name="fake-zip", family="medclip", builder=None, files=[{**entry, "sha256": "0" * 64}])
    with pytest.raises(WeightsError, match="not the pinned"):
        download(wrong)
    assert not (online / "weights" / "fake-zip" / "pytorch_model.bin").exists()
    good = ModelSpec(name="fake-zip", family="medclip", builder=None, files=[{**entry, "sha256": sha256_of(archive)}])
    (path,) = download(good)
    assert path == str(online / "weights" / "fake-zip" / "pytorch_model.bin") and read_state_dict(path)
    sums = (online / "weights" / "fake-zip" / "SHA256SUMS").read_text()
    assert f"{sha256_of(ckpt)}  pytorch_model.bin" in sums and sha256_of(archive) in sums
    assert ("ok (sha256 recorded at download)") in dict(verify(good)).values()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            if isinstance(data, zipfile.ZipInfo):
                z.writestr(data, name)
            else:
                z.writestr(name, data)
    return path


@pytest.mark.parametrize("members, why", [
    ([("../evil.txt", b"x")], "outside"),
    ([("/tmp/medkt-evil.txt", b"x")], "outside"),
    ([("a/../../evil.txt", b"x")], "outside"),
    ([(f"f{i}.txt", b"x") for i in range(6)], "6 members"),
    ([("big.bin", b"\0" * 5000)], "5000 bytes"),
])
def test_safe_extract_refuses_before_writing(tmp_path, members, why):
    dest = tmp_path / "out" / "model"
    dest.mkdir(parents=True)
    archive = _zip(tmp_path / "a.zip", members)
    with pytest.raises(WeightsError, match=why):
        safe_extract(archive, dest, max_members=5, max_bytes=4096)
    assert list((tmp_path / "out").rglob("*")) == [dest] and not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_links_extracts_the_rest(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (0o120777 << 16)
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(WeightsError, match="symbolic link"):
        safe_extract(_zip(tmp_path / "l.zip", [("/etc/passwd", link)]), dest)
    ok = _zip(tmp_path / "ok.zip", [("m/a.bin", b"abc"), ("m/b.bin", b"de")])
    assert sorted(p.name for p in safe_extract(ok, dest)) == ["a.bin", "b.bin"]


def test_hf_revision_is_pinned_and_passed(online, monkeypatch):
    import huggingface_hub
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: calls.append((repo, kw)) or "/x")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, **kw: ["model.safetensors"])
    rev = "a" * 40
    pinned = ModelSpec(name="fake-hf", family="hf_clip", builder=None, files=[{"repo": "org/m", "revision": rev}])
    assert entry_pinned(pinned.files[0]) and unpinned_entries(pinned) == []
    download(pinned)
    assert calls[-1][0] == "org/m" and calls[-1][1]["revision"] == rev
    assert hf_local_only(pinned, "org/m")["revision"] == rev
    loose = ModelSpec(name="fake-hf2", family="hf_clip", builder=None, files=[{"repo": "org/m"}])
    with pytest.raises(WeightsError, match="revision pin"):
        download(loose)
    branch = ModelSpec(name="fake-hf3", family="hf_clip", builder=None, files=[{"repo": "org/m", "revision": "main"}])
    assert unpinned_entries(branch) == ["org/m"]  # a branch name moves: not a pin
    oc = ModelSpec(name="fake-oc", family="open_clip", builder=None, options={"arch": "hf-hub:org/oc", "revision": rev})
    monkeypatch.setattr("medkt.models.download._download_open_clip", lambda spec: calls.append(("oc", spec)) or [])
    assert unpinned_entries(oc) == [] and download(oc) == []
    assert main(["weights", "download", "hf-hub:org/m"]) != 0  # an hf-hub: spec without @REV is unpinned
    assert main(["weights", "download", f"hf-hub:org/m@{rev}"]) == 0
    assert calls[-1][1]["revision"] == rev and calls[-1][1]["cache_dir"]


def test_registry_pins():
    """Every URL file in the registry is pinned by a full SHA-256, or listed as unpinned."""
    hexes = re.compile(r"^[0-9a-f]{64}$")
    for s in list_models():
        for e in s.files:
            assert "sha256_prefix" not in e, s.name
            if "url" in e and "sha256" in e:
                assert hexes.match(e["sha256"]), s.name
    for name in ("sam-vit-b", "sam-vit-l", "sam-vit-h"):
        assert unpinned_entries(get_spec(name)) == [], name
    assert "medclip-vit-pretrained.zip" in " ".join(unpinned_entries(get_spec("medclip-vit")))
    assert unpinned_entries(get_spec("tiny-clip")) == []


@pytest.mark.parametrize("name", ["biomedclip", "clip-vit-b32", "hf-clip-vit-b32", "medclip-vit"])
def test_implicit_online_download_is_refused_when_unpinned(online, name):
    """create_model on a connected machine never fetches an unpinned source behind the user's back."""
    from medkt.models import create_model
    with pytest.raises(WeightsError, match="--allow-unpinned"):
        create_model(name)

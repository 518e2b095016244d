"""Test-wide guards: offline, a private MEDKT_HOME, and no network connections.

Any attempt to connect to a non-loopback address fails the test that made it, so "no
test touches the network" is enforced rather than hoped for.

Markers (declared in pyproject.toml): ``slow`` (more than ~20 s alone on 2 CPU cores, or an
external runtime's start-up such as Ray or Java) and ``java``.  Every test runs by default and
in CI (``.ci/run``); ``python -m pytest -m "not slow"`` is the quick local loop.
"""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ["MEDKT_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see medkt/__init__.py


class NetworkAttempt(RuntimeError):
    pass


NETWORK_ATTEMPTS: list = []


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return True  # unix sockets
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _guard(address):
    if not _is_loopback(address):
        NETWORK_ATTEMPTS.append(address)
        raise NetworkAttempt(f"test tried to open a network connection to {address!r}")


def _connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _guard(address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _guard(address)
    return _real_connect_ex(self, address)


def _create_connection(address, *a, **k):
    _guard(address)
    return _real_create_connection(address, *a, **k)


socket.socket.connect = _connect
socket.socket.connect_ex = _connect_ex
socket.create_connection = _create_connection


@pytest.fixture(scope="session", autouse=True)
def _medkt_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("medkt-home")
    os.environ["MEDKT_HOME"] = str(home)
    yield home


@pytest.fixture
def network_attempts():
    """The list of blocked connection attempts made during the test (cleared before it)."""
    NETWORK_ATTEMPTS.clear()
    yield NETWORK_ATTEMPTS


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (``pytestmark = pytest.mark.usefixtures(...)``):
    tiny models run fastest single-threaded, and the 2-core CI box is shared."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def brightness_m2ib(monkeypatch):
    """Replace M2IB inside SaliencyEngine by 'where is it bright' (the input's mean brightness pooled
    onto the patch grid), so that tests can follow a blob through the whole image path."""
    import torch

    import medkt.segmentation.saliency as sal

    def fake_m2ib(model, pixels, text, cfg, seeds):
        x01 = model.denormalize(pixels).mean(dim=1, keepdim=True)
        lay = model.visual_layout(1)
        return torch.nn.functional.adaptive_avg_pool2d(x01, (lay.grid_h, lay.grid_w))[:, 0]

    monkeypatch.setattr(sal, "m2ib_visual", fake_m2ib)
    return fake_m2ib

"""What the cohort executors of ``medkt segment`` and ``medkt bench`` share: Ray start-up and
the validation of ``--num-parts`` / ``--part-id``.

Ray is optional (``pip install 'medkt[ray]'``) and imported only here, only when asked for.
"""
from __future__ import annotations

import os

from medkt.errors import ConfigError, OptionalDependencyError


def import_ray(feature: str):
    """The ``ray`` module, or :class:`OptionalDependencyError` naming ``feature`` and the extra."""
    try:
        import ray
    except ImportError:
        raise OptionalDependencyError("ray", feature, extra="ray") from None
    return ray


def start_ray(ray, address: str | None = None, num_cpus: int | None = None) -> bool:
    """Initialise Ray unless it already is; ``True`` when this call started it (the caller shuts it
    down).  ``address=None`` starts a local instance on 127.0.0.1 with ``num_cpus`` (default: the
    machine's, at least 2); ``"auto"`` or ``"ray://HOST:PORT"`` joins a cluster.  No dashboard,
    no usage stats, worker logs not forwarded."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kw: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        kw.update(num_cpus=num_cpus or max(2, os.cpu_count() or 2), _node_ip_address="127.0.0.1")
    else:
        kw["address"] = address
    ray.init(**kw)
    return True


def check_part(num_parts: int, part_id: int, merge_command: str) -> None:
    """Validate ``--num-parts`` / ``--part-id`` (part ids are 0-based; ``merge_command`` joins them)."""
    if num_parts < 1:
        raise ConfigError(f"--num-parts must be >= 1, got {num_parts}.")
    if not 0 <= part_id < num_parts:
        raise ConfigError(f"--part-id must be in 0..{num_parts - 1} for --num-parts {num_parts}, got {part_id}.",
                          hint=f"part ids are 0-based: run parts 0, 1, ..., N-1, then '{merge_command}'")

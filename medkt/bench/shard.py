"""Deterministic sharding of benchmark work.

The cases of every evaluation unit are cut into *blocks* of ``block_size`` consecutive
cases (the evaluation batch), numbered globally; part ``i`` of ``N`` takes blocks
``i, i+N, i+2N, ...`` (``--num-parts N --part-id i``, 0-based like nnU-Net's
``-num_parts/-part_id``).  Because a block is the same batch in a sharded and an
unsharded run, per-case results are bitwise identical, and merging is a matter of
collecting blocks by number.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass



@dataclass(frozen=True)
class Block:
    """Global block ``number`` covering case indices ``start:stop``."""

    number: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.number:06d}"


def check_part(num_parts: int, part_id: int) -> None:
    """Validate ``--num-parts`` / ``--part-id`` (0-based; joined by ``medkt bench merge``)."""
    from medkt.cluster import check_part as _check
    _check(num_parts, part_id, "medkt bench merge")


def all_blocks(n_cases: int, block_size: int) -> list[Block]:
    return [Block(b, s, min(s + block_size, n_cases)) for b, s in enumerate(range(0, n_cases, block_size))]


def part_blocks(n_cases: int, block_size: int, num_parts: int = 1, part_id: int = 0) -> list[Block]:
    """The blocks part ``part_id`` of ``num_parts`` processes (block-strided, deterministic)."""
    check_part(num_parts, part_id)
    return [b for b in all_blocks(n_cases, block_size) if b.number % num_parts == part_id]


def manifest_hash(case_ids: list[str]) -> str:
    """Hash of the ordered case ids: every part must agree on it before a merge."""
    h = hashlib.sha256()
    for cid in case_ids:
        h.update(cid.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]

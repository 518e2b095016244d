"""On-disk layout of a benchmark run (all writes atomic; a block's JSON is written last)::

    OUT/
      config.resolved.yaml            the resolved experiment config
      parts/part-000-of-003/
        manifest.json                 fingerprint, part, units (cases, blocks, dataset)
        config.resolved.yaml          (a copy, so parts merge from anywhere)
        units/<run>/<group>/<set>/
          blocks/000000.json          per-case rows of block 0  (its done-marker)
          blocks/000000.npz           stacked arrays of block 0 (embeddings, ITM scores)
          maps/<case_id>.npz          per-case maps (saliency, mask) for overlays
        run.json                      versions, timings, executor
        done.json                     the part finished
      kt/                             inverted images and fine-tuned weights (shared by parts)
      per_case.csv  summary.json  report.md  figures/     (written by the merge)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medkt.bench.common import BlockResult
from medkt.bench.shard import Block
from medkt.errors import InputError
from medkt.runs import atomic_path, atomic_write_json


def part_name(part_id: int, num_parts: int) -> str:
    return f"part-{part_id:03d}-of-{num_parts:03d}"


def unit_dir(part_dir: Path, key: str) -> Path:
    return Path(part_dir) / "units" / key


def block_json(udir: Path, block: Block | int) -> Path:
    number = block.number if isinstance(block, Block) else int(block)
    return Path(udir) / "blocks" / f"{number:06d}.json"


def block_done(udir: Path, block: Block) -> bool:
    return block_json(udir, block).exists()


def _save_npz(path: Path, arrays: dict, compressed: bool = False) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def write_block(udir: Path, block: Block, result: BlockResult, case_ids: list[str]) -> None:
    """Arrays, then per-case maps, then the rows (the block's done-marker)."""
    rows = result.rows
    if [r["case_id"] for r in rows] != case_ids:
        raise InputError(f"worker returned rows for {[r['case_id'] for r in rows][:3]}..., expected "
                         f"{case_ids[:3]}...")
    if result.arrays:
        _save_npz(udir / "blocks" / f"{block.name}.npz", result.arrays)
    for cid, arrays in result.case_arrays.items():
        _save_npz(udir / "maps" / f"{cid}.npz", arrays, compressed=True)
    out = [{"index": block.start + k, **r} for k, r in enumerate(rows)]
    atomic_write_json(block_json(udir, block), {"block": block.number, "start": block.start,
                                                "stop": block.stop, "rows": out,
                                                "arrays": sorted(result.arrays)})


def read_block(udir: Path, number: int) -> tuple[list[dict], dict]:
    data = json.loads(block_json(udir, number).read_text())
    arrays = {}
    if data.get("arrays"):
        with np.load(udir / "blocks" / f"{number:06d}.npz") as z:
            arrays = {k: z[k] for k in z.files}
    return data["rows"], arrays


def copy_block(src: Path, dst: Path, block: Block) -> None:
    """Reuse a finished block of an identical unit (same model, data and options)."""
    rows, arrays = read_block(src, block.number)
    maps = {}
    for r in rows:
        p = src / "maps" / f"{r['case_id']}.npz"
        if p.exists():
            with np.load(p) as z:
                maps[r["case_id"]] = {k: z[k] for k in z.files}
    clean = [{k: v for k, v in r.items() if k != "index"} for r in rows]
    write_block(dst, block, BlockResult(clean, arrays, maps), [r["case_id"] for r in rows])


def find_part_dirs(dirs: list[str | Path]) -> list[Path]:
    """Part folders under each of ``dirs`` (a run folder holding ``parts/``, or a part folder)."""
    found = []
    for d in dirs:
        d = Path(d)
        if (d / "manifest.json").exists():
            found.append(d)
        elif (d / "parts").is_dir():
            found += sorted(p for p in (d / "parts").iterdir() if (p / "manifest.json").exists())
        else:
            raise InputError("not a benchmark run folder (no parts/*/manifest.json).", path=str(d),
                             hint="pass the OUT folders given to 'medkt bench CONFIG -o OUT'")
    return found

"""``medkt bench merge DIR...``: gather the parts of a run, compute set-level metrics, write outputs.

Checks that every part ran the same configuration on the same cases and that every block
of every unit is present (naming the parts that are missing or unfinished), then
concatenates the blocks in global order and calls each pipeline's ``finalize`` on the
whole set — retrieval R@K, CIDEr / BLEU and bootstrap CIs are computed here, never
averaged over shards.  Writes ``per_case.csv``, ``summary.json``, ``report.md`` and
``figures/`` into the output folder.  An unsharded run calls this on itself.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import yaml

from medkt.bench import store
from medkt.bench.executors import pipeline_module
from medkt.bench.experiment import ExperimentConfig, load_experiment
from medkt.bench.tasks import context_from_dict
from medkt.errors import InputError
from medkt.runs import atomic_write_json, write_csv

log = logging.getLogger("medkt.bench")

LEAD_COLUMNS = ["run", "lr", "group", "set", "index", "case_id"]


def _load_parts(dirs) -> tuple[ExperimentConfig, dict[int, Path], dict]:
    parts = store.find_part_dirs(dirs)
    if not parts:
        raise InputError("no benchmark parts found.", path=", ".join(map(str, dirs)))
    manifests = {p: json.loads((p / "manifest.json").read_text()) for p in parts}
    first = next(iter(manifests.values()))
    by_id: dict[int, Path] = {}
    for p, m in manifests.items():
        if m["fingerprint"] != first["fingerprint"]:
            raise InputError(f"{p} was run with a different configuration ({m['fingerprint']} vs "
                             f"{first['fingerprint']}); only parts of one run can be merged.")
        if m["num_parts"] != first["num_parts"]:
            raise InputError(f"{p} is part of a {m['num_parts']}-part run, others of {first['num_parts']} parts.")
        if m["units"].keys() != first["units"].keys() or any(
                m["units"][k]["cases"] != first["units"][k]["cases"] for k in m["units"]):
            raise InputError(f"{p} covers other groups, runs or cases than the other parts.",
                             hint="run every part with the same --groups/--runs/--limit options")
        if m["part_id"] in by_id:
            raise InputError(f"part {m['part_id']} was found twice: {by_id[m['part_id']]} and {p}.")
        by_id[m["part_id"]] = p
    missing = sorted(set(range(first["num_parts"])) - set(by_id))
    if missing:
        raise InputError(f"parts {', '.join(map(str, missing))} of {first['num_parts']} are missing "
                         "(part ids are 0-based).", hint="run them with --part-id, then merge again")
    raw = yaml.safe_load((parts[0] / "config.resolved.yaml").read_text())
    raw.pop("_fingerprint", None)
    return load_experiment(raw), by_id, first


def gather(key: str, info: dict, by_id: dict[int, Path]) -> tuple[list[dict], dict, dict[str, Path]]:
    """Rows and arrays of unit ``key`` from all parts, in global case order, and the case-map paths."""
    n_parts = len(by_id)
    rows, arrays, maps, missing = [], {}, {}, {}
    for b in range(info["n_blocks"]):
        owner = b % n_parts
        udir = store.unit_dir(by_id[owner], key)
        if not store.block_json(udir, b).exists():
            missing.setdefault(owner, []).append(b)
            continue
        r, a = store.read_block(udir, b)
        rows += r
        for k, v in a.items():
            arrays.setdefault(k, []).append(v)
        for row in r:
            p = udir / "maps" / f"{row['case_id']}.npz"
            if p.exists():
                maps[row["case_id"]] = p
    if missing:
        desc = "; ".join(f"part {p}: blocks {', '.join(map(str, bs[:5]))}" for p, bs in sorted(missing.items()))
        raise InputError(f"unit {key} is incomplete ({desc}).",
                         hint="finish those parts with 'medkt bench CONFIG --resume --num-parts N --part-id I'")
    if [r["index"] for r in rows] != list(range(info["n_cases"])):
        raise InputError(f"unit {key}: gathered rows do not cover cases 0..{info['n_cases'] - 1} exactly once.")
    return rows, {k: np.concatenate(v) for k, v in arrays.items()}, maps


def merge_runs(dirs, out: str | Path | None = None, *, plots: bool = True) -> dict:
    """Merge the parts found under ``dirs`` into ``out`` (default: the first dir); returns the summary."""
    cfg, by_id, manifest = _load_parts(dirs)
    out = Path(out or dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    mod = pipeline_module(cfg.task)
    lrs = {r.run_id: r for r in cfg.runs()}
    per_case, units, maps, unit_rows = [], {}, {}, {}
    for key, info in manifest["units"].items():
        rows, arrays, maps[key] = gather(key, info, by_id)
        res = mod.finalize(rows, arrays, context_from_dict(cfg.task, info["context"]))
        units[key] = res.metrics
        unit_rows[key] = res.rows
        run = lrs.get(info["run"])
        for row in res.rows:
            per_case.append({"run": info["run"], "lr": "" if run is None or run.lr is None else repr(run.lr),
                             "group": info["group"], "set": info["set"], **row})
    columns = LEAD_COLUMNS + [c for c in dict.fromkeys(k for r in per_case for k in r) if c not in LEAD_COLUMNS]
    write_csv(out / "per_case.csv", per_case, columns)
    summary = build_summary(cfg, manifest, units)
    atomic_write_json(out / "summary.json", summary)
    figures: dict[str, str] = {}
    if plots:
        from medkt.bench.plots import make_plots
        try:
            figures = make_plots(cfg, summary, out, manifest, maps, unit_rows)
        except Exception as e:  # noqa: BLE001 - figures are optional; the tables are the result
            log.warning("figures were not drawn: %s: %s", type(e).__name__, e)
            summary.setdefault("notes", []).append(f"figures not drawn: {type(e).__name__}: {e}")
    summary["figures"] = figures
    atomic_write_json(out / "summary.json", summary)
    from medkt.bench.report import write_report
    write_report(cfg, summary, out / "report.md")
    return summary


def build_summary(cfg: ExperimentConfig, manifest: dict, units: dict[str, dict]) -> dict:
    runs = [r for r in cfg.runs() if r.run_id in manifest["runs"]]
    groups: dict = {g: {r.run_id: {} for r in runs} for g in manifest["groups"]}
    for key, metrics in units.items():
        info = manifest["units"][key]
        groups[info["group"]][info["run"]].update(metrics)
    datasets = {}
    for info in manifest["units"].values():
        datasets.setdefault(info["alias"], {"adapter": info["dataset"]["adapter"], "root": info["dataset"]["root"],
                                            "n_cases": info["n_cases"], "limit": cfg.data[info["alias"]].limit})
    return {"experiment": cfg.name, "table": cfg.table, "task": cfg.task, "model": cfg.model,
            "weights": cfg.weights, "paper_model": cfg.paper_model or cfg.model,
            "fingerprint": manifest["fingerprint"], "num_parts": manifest["num_parts"],
            "runs": [{"run": r.run_id, "lr": r.lr, "label": r.label, "batch_size": r.batch_size} for r in runs],
            "groups": groups, "units": units, "datasets": datasets}

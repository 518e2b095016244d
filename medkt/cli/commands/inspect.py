"""``medkt inspect INPUT``: the dry-run view of an input: cases found, modality, shape, spacing, problems."""
from __future__ import annotations

import json

NAME = "inspect"
HELP = "list the cases found in an input (modality, shape, spacing, problems) without processing them"
DESCRIPTION = ("Discover the cases in a DICOM folder (one per series), NIfTI file/folder or folder of 2-D images, "
               "and show what medkt would read: modality, array shape, voxel spacing (mm), and why a case cannot be "
               "read.  Headers only unless --read.  Exit code 0: all readable; 1: some cases have problems.")
ORDER = 20


def add_arguments(p):
    p.add_argument("input", help="file or folder (DICOM, NIfTI .nii/.nii.gz, PNG/JPEG/TIFF)")
    p.add_argument("--nifti-volume", type=int, default=None, metavar="N",
                   help="volume index to take from 4-D NIfTI files (without it they are refused)")
    p.add_argument("--modality", default=None, help="override the modality (CT, MR, US, CXR...)")
    p.add_argument("--read", action="store_true",
                   help="also read the pixels (finds truncated files, NaN-only volumes, decoder problems)")
    p.add_argument("--max-voxels", type=int, default=None, metavar="N",
                   help="size limit per image, checked from headers before reading (default 268435456 = "
                        "512x512x1024); larger images are reported as problems")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def inspect_input(path, *, nifti_volume: int | None = None, modality: str | None = None,
                  read: bool = False, max_voxels: int | None = None) -> dict:
    """The data behind ``medkt inspect`` (Python API): ``{"input", "cases": [...], "skipped": [...]}``.

    Header checks (size limit ``max_voxels``, truncation, geometry) run without ``read``; a case
    that fails one is listed with its ``problem``.
    """
    from medkt.errors import MedktError
    from medkt.io import discover_cases, read_case
    from medkt.io.checks import resolve_max_voxels
    if max_voxels is not None:
        resolve_max_voxels(max_voxels)
    cases = discover_cases(path, nifti_volume=nifti_volume, modality=modality, max_voxels=max_voxels)
    rows = []
    for c in cases:
        row = {"case_id": c.case_id, "kind": c.kind, "modality": c.info.get("modality", "unknown"),
               "shape": c.info.get("shape"), "spacing": c.info.get("spacing"), "files": len(c.paths),
               "problem": c.problem, "warnings": list(c.warnings)}
        if read and c.ok:
            try:
                vol = read_case(c)
                row.update(modality=vol.modality, shape=list(vol.array.shape),
                           spacing=[round(s, 6) for s in vol.spacing], dtype=str(vol.array.dtype))
                row["warnings"] = list(dict.fromkeys(row["warnings"] + list(vol.meta.get("warnings", []))))
            except MedktError as e:
                row["problem"] = e.format()
        rows.append(row)
    return {"input": str(path), "cases": rows,
            "skipped": [{"path": str(p), "reason": why} for p, why in cases.skipped]}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "x".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def run(args) -> int:
    data = inspect_input(args.input, nifti_volume=args.nifti_volume, modality=args.modality, read=args.read,
                         max_voxels=args.max_voxels)
    bad = [r for r in data["cases"] if r["problem"]]
    if args.json:
        print(json.dumps(data, indent=2))
        return 1 if bad else 0
    n = len(data["cases"])
    print(f"{data['input']}: {n} case{'s' if n != 1 else ''}, {n - len(bad)} readable")
    w = max([len("case")] + [len(r["case_id"]) for r in data["cases"]])
    print(f"  {'case':{w}s}  {'kind':8s} {'modality':9s} {'shape':16s} {'spacing (mm)':22s} status")
    for r in data["cases"]:
        status = "ok" if not r["problem"] else "PROBLEM"
        print(f"  {r['case_id']:{w}s}  {r['kind']:8s} {r['modality']:9s} {_fmt(r['shape']):16s} "
              f"{_fmt(r['spacing']):22s} {status}")
        for line in ([r["problem"]] if r["problem"] else []) + [f"note: {x}" for x in r["warnings"]]:
            print("      " + line.replace("\n", "\n      "))
    if data["skipped"]:
        print(f"skipped {len(data['skipped'])} file(s):")
        for s in data["skipped"]:
            print(f"  {s['path']}: {s['reason']}")
    return 1 if bad else 0

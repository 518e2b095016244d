"""``medkt segment-merge PART_DIR... -o OUT``: join the parts of a ``medkt segment --num-parts N`` run.

Calls :func:`medkt.segmentation.cohort.merge_parts`.
"""
from __future__ import annotations

NAME = "segment-merge"
HELP = "join the output folders of the parts of a 'medkt segment --num-parts N' run"
DESCRIPTION = """\
Check that PART_DIR... are the finished parts 0..N-1 of one `medkt segment --num-parts N` run
(same input, same options), then copy every case folder into OUT (hard links where possible)
and write OUT/cases.csv (in case-id order) and OUT/run.json (every case, each part's record
under 'parts', summed stage timings; with --gt, summary.json).  The merged folder holds the
same per-case files as a one-part run."""
ORDER = 21


def add_arguments(p):
    p.add_argument("parts", nargs="+", metavar="PART_DIR", help="output folders of the parts")
    p.add_argument("-o", "--output", required=True, help="merged output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing merged folder")


def run(args) -> int:
    from medkt.segmentation.cohort import merge_parts
    rec = merge_parts(args.parts, args.output, overwrite=args.overwrite)
    failed = rec.get("failures", [])
    print(f"merged {len(rec['parts'])} part(s), {len(rec['cases'])} case(s) into {args.output}"
          + (f"; {len(failed)} failed (see run.json)" if failed else ""))
    return 1 if failed else 0

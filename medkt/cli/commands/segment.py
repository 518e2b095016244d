"""``medkt segment INPUT -o OUT --prompt TEXT``: zero-shot M2IB → SAM segmentation.

Calls :func:`medkt.segmentation.api.segment` with the same options (keywords only).
"""
from __future__ import annotations

NAME = "segment"
HELP = "zero-shot segmentation (M2IB saliency -> SAM) of DICOM / NIfTI / 2-D image inputs"
DESCRIPTION = """\
Segment INPUT (a DICOM folder, a NIfTI file or folder, or a folder of 2-D images) for a
text prompt: M2IB saliency on a CLIP-family model, post-processing to a coarse mask, box /
point prompts, SAM.  3-D volumes are processed slice by slice (slices batched) and the
masks are written back in the source geometry.  Per case OUT/<case>/ holds the mask
(NIfTI, DICOM-SEG or PNG), the float saliency map and an overlay PNG; OUT/ holds
cases.csv and run.json.  Settings come from --config (a YAML file or a preset name such
as ct-lung-nodule, breast-us, brain-mri, cxr-pneumothorax, tiny) and --set key=value.
--finetuned KT_RUN segments with a model taught a finding by `medkt transfer` (the paper's
Table 4 workflow); --concept / --lr pick its weights when the run holds several.
All-air slices are skipped (--keep-air segments them), --slices A:B limits the range.  One line
per case gives the seconds of every stage.  --num-parts/--part-id run one part of a cohort
(join the parts with `medkt segment-merge`); --executor ray spreads cases over Ray actors.
--refiner MODEL_DIR segments with a network trained by `medkt refine` on earlier masks.
A case that fails is recorded in run.json and the run goes on; the exit status is then 1."""
ORDER = 20


def add_arguments(p):
    p.add_argument("input", help="DICOM folder, NIfTI file/folder, or folder of 2-D images")
    p.add_argument("-o", "--output", help="output folder (required unless --dry-run)")
    p.add_argument("--prompt", help="text prompt, e.g. 'a brain MRI showing a glioma'")
    p.add_argument("--model", help="CLIP-family model for the saliency map (default: biomedclip)")
    p.add_argument("--finetuned", metavar="KT_RUN",
                   help="apply Knowledge-Transfer weights to the saliency model: a `medkt transfer` output "
                        "folder or a .safetensors file (delta, lora or full)")
    p.add_argument("--concept", help="with --finetuned: the concept whose weights to use (name or slug)")
    p.add_argument("--lr", type=float, help="with --finetuned: the learning rate whose weights to use")
    p.add_argument("--refiner", metavar="MODEL_DIR",
                   help="segment with a network trained by `medkt refine` instead of the zero-shot stages "
                        "(no prompt needed; saliency files hold its foreground probability)")
    p.add_argument("--sam", help="SAM model: sam-vit-b, sam-vit-l, sam-vit-h, medsam, tiny-sam")
    p.add_argument("--modality", help="intensity preparation: ct, mr, us, xr ... (default: from the file)")
    p.add_argument("--window", help="CT window preset (lung, abdomen, brain, ...) or 'LEVEL,WIDTH' such as '40,400'")
    p.add_argument("--config", help="YAML config file or preset name (configs/segment/NAME.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set m2ib.beta=1 --set prompts.mode=boxes")
    p.add_argument("--gt", help="ground-truth mask file or folder (matched by case id): adds DSC/NSD/IoU")
    p.add_argument("--mask-format", choices=["auto", "nifti", "dicom-seg", "png"],
                   help="mask file format (default auto: like the input)")
    p.add_argument("--diagnostics", action="store_true",
                   help="prompt-sensitivity diagnostic: real vs neutral and random prompts, per case")
    p.add_argument("--seed", type=int, help="noise and point-sampling seed (default from the config)")
    p.add_argument("--max-voxels", type=int, metavar="N",
                   help="size limit per input image, checked from headers (default 268435456 = 512x512x1024)")
    p.add_argument("--slices", metavar="A:B",
                   help="only display slices A..B-1 of 3-D volumes (0-based along the plane; e.g. 40:120, 40:, :-10)")
    p.add_argument("--keep-air", action="store_true",
                   help="also segment all-air slices (default: skipped, counted in slices_air; see air.* settings)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    g = p.add_argument_group("cohorts over several machines")
    g.add_argument("--num-parts", type=int, default=1, help="split the cases into N parts (default 1)")
    g.add_argument("--part-id", type=int, default=0,
                   help="which part to run, 0-based; join the parts with 'medkt segment-merge'")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default) or ray: Ray actors (one per worker, models loaded once) segment the cases")
    g.add_argument("--ray-address", help="Ray: cluster address ('auto' joins a running cluster; default: start a "
                                         "local instance); OUT must be on a file system every node sees")
    g.add_argument("--workers", type=int, default=2, help="Ray: number of actors (default 2)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (default 0)")
    p.add_argument("--amp", choices=["none", "bf16"],
                   help="bf16 autocast for the M2IB vision tower and the SAM image encoder (GPU; same as "
                        "--set m2ib.amp=bf16 --set sam.amp=bf16)")
    p.add_argument("--dry-run", action="store_true", help="list the cases that would be processed and stop")
    p.add_argument("--resume", action="store_true", help="skip cases finished by an earlier run into OUT")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in OUT")


def run(args) -> int:
    from medkt.segmentation.api import segment
    from medkt.segmentation.cases import format_case_line
    overrides = list(args.overrides) + ([f"m2ib.amp={args.amp}", f"sam.amp={args.amp}"] if args.amp else [])
    result = segment(args.input, prompt=args.prompt, output=args.output, config=args.config,
                     overrides=overrides, model=args.model, sam=args.sam, modality=args.modality,
                     window=args.window, gt=args.gt, mask_format=args.mask_format,
                     diagnostics=True if args.diagnostics else None, seed=args.seed, device=args.device,
                     max_voxels=args.max_voxels, slices=args.slices, skip_air=False if args.keep_air else None,
                     dry_run=args.dry_run, resume=args.resume, overwrite=args.overwrite,
                     finetuned=args.finetuned, concept=args.concept, lr=args.lr, refiner=args.refiner,
                     num_parts=args.num_parts, part_id=args.part_id, executor=args.executor,
                     ray_address=args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                     on_case=lambda row: print(format_case_line(row), flush=True))
    if args.dry_run:
        for row in result.table:
            extra = f"  ({row['problem']})" if row.get("problem") else ""
            print(f"{row['case_id']}\t{row['kind']}\t{row.get('shape', '')}{extra}")
        print(f"{len(result.table)} case(s) would be processed.")
        return 0
    ok = sum(1 for r in result.table if r.get("status") == "ok")
    failed = [r for r in result.table if r.get("status") == "failed"]
    part = result.record.get("part")
    if part:
        print(f"part {part['part_id']} of {part['num_parts']} ({len(result.table)} of {part['n_cases_total']} "
              "cases); when every part is done: medkt segment-merge PART_DIRS... -o OUT")
    print(f"segmented {ok} case(s) into {result.out_dir}"
          + (f"; {len(failed)} failed (see run.json):" if failed else ""))
    for r in failed:
        print(f"  {r['case_id']}: {r.get('reason', '')}")
    if result.summary:
        parts = [f"{k} {v['mean']:.4f}" for k, v in result.summary.items()
                 if isinstance(v, dict) and "mean" in v and v.get("mean") is not None]
        if parts:
            print("mean " + ", ".join(parts))
    return 1 if failed else 0

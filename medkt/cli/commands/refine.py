"""``medkt refine IMAGES PSEUDO_MASKS -o MODEL_DIR``: train a MONAI network on zero-shot masks.

Calls :func:`medkt.refinement.train.refine` with the same options (keywords only).
"""
from __future__ import annotations

NAME = "refine"
HELP = "weakly supervised refinement: train a MONAI 2-D network on `medkt segment`'s masks"
DESCRIPTION = """\
Train a MONAI 2-D segmentation network (BasicUNet or DynUNet) on the pseudo-labels that
`medkt segment` wrote (PSEUDO_MASKS = its output folder) for IMAGES (the images it read):
MedCLIP-SAMv2's weakly supervised stage.  MODEL_DIR receives model.safetensors,
refiner.json, checkpoint.pt (--resume continues from it) and run.json.  Apply the model with
`medkt segment INPUT -o OUT --refiner MODEL_DIR`.  --val-gt GT reports the DSC of the
pseudo-labels and of the refined masks against ground truth on the training cases, or on a
held-out split with --val-images IMAGES; --set train.select=val keeps the best validated epoch.
--export-nnunet DIR also (or, without -o, only) writes IMAGES and PSEUDO_MASKS as an nnU-Net v2
raw dataset (DIR named DatasetXXX_Name) for training the original nnU-Net stage."""
ORDER = 22


def add_arguments(p):
    p.add_argument("images", help="the images `medkt segment` read (DICOM / NIfTI / 2-D image folder or file)")
    p.add_argument("pseudo_masks", help="`medkt segment`'s output folder (or a folder of masks named by case id)")
    p.add_argument("-o", "--output", metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--config", help="YAML config or preset name (configs/refine/NAME.yaml: default, phantom, tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=20 --set labels.confidence=saliency")
    p.add_argument("--val-gt", metavar="GT", help="ground-truth masks (matched by case id) for validation DSC "
                   "(and for --set train.select=val)")
    p.add_argument("--val-images", metavar="IMAGES", help="images of a held-out validation split labelled by "
                   "--val-gt (default: --val-gt labels training cases)")
    p.add_argument("--epochs", type=int, help="training epochs (config train.epochs)")
    p.add_argument("--seed", type=int, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--modality", help="intensity preparation as for `medkt segment` (ct, mr, us, ...)")
    p.add_argument("--window", help="CT window as for `medkt segment` (preset or 'LEVEL,WIDTH')")
    p.add_argument("--export-nnunet", metavar="DIR",
                   help="write an nnU-Net v2 raw dataset (dataset.json, imagesTr, labelsTr) into DIR "
                        "(named DatasetXXX_Name)")
    p.add_argument("--max-voxels", type=int, metavar="N", help="size limit per input image")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (batch / HPC logs)")
    p.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in MODEL_DIR (and DIR)")


def run(args) -> int:
    from medkt.refinement.train import refine
    res = refine(args.images, args.pseudo_masks, args.output, config=args.config, overrides=args.overrides,
                 val_gt=args.val_gt, val_images=args.val_images, epochs=args.epochs, seed=args.seed, modality=args.modality,
                 window=args.window, export_nnunet=args.export_nnunet, resume=args.resume,
                 overwrite=args.overwrite, progress=not args.no_progress, max_voxels=args.max_voxels)
    if res.nnunet:
        print(f"exported {res.nnunet['numTraining']} case(s) as an nnU-Net v2 raw dataset: {res.nnunet['dataset']}")
    if res.model_dir is not None:
        last = res.history[-1] if res.history else {}
        print(f"trained on {len(res.cases)} case(s), {res.n_slices} slice(s), {len(res.history)} epoch(s) "
              f"(final loss {last.get('loss', float('nan')):.4f}) -> {res.model_dir}")
        mean = res.validation.get("mean") if res.validation else None
        if mean:
            print(f"validation DSC: pseudo-labels {mean['pseudo_dsc']:.1f}, refined {mean['refined_dsc']:.1f}")
        kept = res.record.get("kept_epochs")
        if kept and kept != [len(res.history)]:
            print(f"kept epoch(s) {', '.join(map(str, kept))} (selected by {res.record.get('selected_by')})")
    for f in res.failures:
        print(f"  not used: {f['case_id']}: {f['reason']}")
    return 0

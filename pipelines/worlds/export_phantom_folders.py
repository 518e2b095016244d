"""Export the phantom world's held-out finding as folders, so the documented KT path can be run on it.

The KT target is ``nodule`` (CT), never seen by ``phantom-clip`` in pretraining (docs/worlds.md);
the known classes are the six seen findings.  Writes, under OUT:

* ``concepts.yaml`` — ``nodule`` with its description, *a small round bright spot in the lung*;
* ``target/nodule/NNNN.png`` — CT phantoms with a nodule;
* ``reference/<finding>/NNNN.png`` — phantoms of each seen finding in its own modality
  (effusion: CT, pneumothorax: CXR, mass and cyst: US, tumour and lesion: MRI): forgetting;
* ``ood/NNNN.png`` — normal phantoms of the four modalities (no finding): a nodule call on
  one of them is a false positive (``other_to_target``).

All are evaluation phantoms (:func:`medkt.worlds.phantom_world.phantom_eval_set`, eval seed 777,
disjoint from pretraining), 64×64, grey repeated to RGB, pixel values 0–255.  Then::

    medkt transfer --concepts OUT/concepts.yaml --model phantom-clip --lr 1e-4,3e-4,1e-3 -o kt/
    medkt zeroshot --model phantom-clip --finetuned kt/ --target OUT/target \
        --reference OUT/reference --ood OUT/ood --max-forgetting 2 -o report.json

Zero-shot class prompts are the model's own templates over the folder names (``nodule``,
``effusion``, ...).

Usage: ``python pipelines/worlds/export_phantom_folders.py OUT [--n-known 40] [--n-novel 40] [--n-ood 20]``
"""
from __future__ import annotations

import argparse
from pathlib import Path


def export(out: Path, n_known: int = 40, n_novel: int = 40, n_ood: int = 20, eval_seed: int = 777) -> dict:
    """Write the folders; returns counts ``{"target": n, "reference": n, "ood": n}``.

    ``n_known`` images per seen finding, ``n_novel`` nodule images, ``n_ood`` normals per modality.
    """
    import yaml
    from PIL import Image

    from medkt.worlds.phantom_text import DESCRIPTIONS
    from medkt.worlds.phantom_world import HELD_OUT, gray_to_rgb, phantom_eval_set, world_findings
    from medkt.worlds.phantoms import FINDINGS, MODALITIES

    def write(images, folder: Path, start: int = 0) -> int:
        folder.mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(gray_to_rgb(images)):
            Image.fromarray(img).save(folder / f"{start + k:04d}.png")
        return len(images)

    out = Path(out)
    counts = {"target": 0, "reference": 0, "ood": 0}
    nodule_mod = next(m for m in MODALITIES if HELD_OUT in FINDINGS[m])
    counts["target"] += write(phantom_eval_set(nodule_mod, HELD_OUT, n_novel, eval_seed).images,
                              out / "target" / HELD_OUT)
    for mod in MODALITIES:
        for finding in world_findings(mod):
            if finding != HELD_OUT:
                counts["reference"] += write(phantom_eval_set(mod, finding, n_known, eval_seed).images,
                                             out / "reference" / finding)
        counts["ood"] += write(phantom_eval_set(mod, None, n_ood, eval_seed).images, out / "ood",
                               start=counts["ood"])
    concepts = {"name": "phantom-world-held-out",
                "source": "medkt.worlds phantom world: the held-out CT finding",
                "concepts": [{"name": HELD_OUT, "descriptions": [DESCRIPTIONS[HELD_OUT]]}]}
    (out / "concepts.yaml").write_text(yaml.safe_dump(concepts, sort_keys=False))
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n-known", type=int, default=40)
    p.add_argument("--n-novel", type=int, default=40)
    p.add_argument("--n-ood", type=int, default=20)
    a = p.parse_args(argv)
    print(export(a.out, a.n_known, a.n_novel, a.n_ood))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Export the natural world as folders, so the documented KT path can be run on it from the CLI.

Writes, under OUT:

* ``concepts.yaml`` — the 5 novel concepts, name + description (the KT input);
* ``target/<name>/NNNN.png`` — evaluation images of each novel concept;
* ``reference/<known name>/NNNN.png`` — evaluation images of each known class (forgetting);
* ``ood/NNNN.png`` — unnamed compositions (neither a known class nor a novel concept).

The images are those of :class:`medkt.worlds.evaluate.NaturalEval` and
:func:`medkt.worlds.experiments.ood_images` (same seeds), as 32×32 RGB PNGs. Then::

    medkt transfer --concepts OUT/concepts.yaml --model world-clip --lr 1e-4,3e-4,5e-4 -o kt/
    medkt zeroshot --model world-clip --finetuned kt/ --target OUT/target \
        --reference OUT/reference --ood OUT/ood --max-forgetting 2 -o report.json

Usage: ``python pipelines/worlds/export_natural_folders.py OUT [--n-known 20] [--n-novel 40] [--n-ood 200]``
"""
from __future__ import annotations

import argparse
from pathlib import Path


def export(out: Path, n_known: int = 20, n_novel: int = 40, n_ood: int = 200) -> dict:
    """Write the folders; returns counts ``{"target": n, "reference": n, "ood": n}``."""
    import numpy as np
    import yaml
    from PIL import Image

    from medkt.worlds.concepts import build_world
    from medkt.worlds.evaluate import NaturalEval
    from medkt.worlds.experiments import ood_images

    world = build_world()
    ev = NaturalEval.build(world, n_known, n_novel)
    names = [c.name for c in world.concepts]
    counts = {"target": 0, "reference": 0, "ood": 0}
    seen: dict[int, int] = {}
    for img, lab in zip(ev.images, ev.labels):
        c = world.concepts[int(lab)]
        group = "target" if c.novel else "reference"
        k = seen.get(int(lab), 0)
        seen[int(lab)] = k + 1
        d = out / group / names[int(lab)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img, np.uint8)).save(d / f"{k:04d}.png")
        counts[group] += 1
    (out / "ood").mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(ood_images(world, n_ood)):
        Image.fromarray(img).save(out / "ood" / f"{k:04d}.png")
        counts["ood"] += 1
    concepts = {"name": "natural-world-novel",
                "source": "medkt.worlds natural world: the 5 held-out compositions",
                "concepts": [{"name": c.name, "descriptions": [c.description]} for c in world.novel]}
    (out / "concepts.yaml").write_text(yaml.safe_dump(concepts, sort_keys=False))
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n-known", type=int, default=20)
    p.add_argument("--n-novel", type=int, default=40)
    p.add_argument("--n-ood", type=int, default=200)
    a = p.parse_args(argv)
    print(export(a.out, a.n_known, a.n_novel, a.n_ood))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

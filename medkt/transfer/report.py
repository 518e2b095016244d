"""Console summaries of ``medkt invert`` / ``medkt transfer`` (one row per concept / fine-tune).

Honest by construction: a resumed step says where it was reused from instead of
reprinting its numbers as if it had just run; the noise control prints no similarity
(nothing was optimised); loss figures are means over the first and last 10 % of steps.
"""
from __future__ import annotations

from pathlib import Path


def _rel(path, root) -> str:
    if path is None:
        return "(in memory)"
    try:
        return str(Path(path).relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def print_inversion(inv, kind: str, where: Path | None, out=print) -> None:
    """One line per concept: similarity start → end, or where a resumed concept was reused from."""
    if kind == "given":
        out("inversion: images given by the caller (not run here)")
        return
    if kind == "noise_control":
        out("noise control: fine-tuning on the inversion's starting noise (no inversion, no similarity)")
        return
    fresh = [c for c in inv.concepts if c.name not in inv.resumed]
    n = inv.images.shape[0] // max(1, len(inv.concepts))
    if fresh:
        out(f"inversion: {len(fresh)} concept(s) x {n} images, {inv.seconds:.1f} s "
            "(cosine similarity of image and description, start -> end)")
    if inv.resumed:
        out(f"inversion: {len(inv.resumed)} concept(s) reused from an earlier run (not re-run)")
    summary = inv.summary()
    width = max(len(c.name) for c in inv.concepts)
    for c in inv.concepts:
        if c.name in inv.resumed:
            src = Path(where) / "images" / c.slug if where is not None else "an earlier run"
            out(f"  {c.name:{width}s}  reused from {src}")
        else:
            s = summary[c.name]
            if s["score"] is not None:
                out(f"  {c.name:{width}s}  {s['initial_score']:+.3f} -> {s['score']:+.3f}")


def recipe_line(res) -> str:
    """``recipe: preset name-prompts (default) - trains visual, captions definition+name, ...``."""
    cfg, preset = res.config, (res.record or {}).get("preset")
    ft = cfg.finetune
    named = f"preset {preset}" if preset else "config given"
    default = " (the default; --preset paper = the paper's caption alone)" if preset == "name-prompts" else ""
    default = " (the --joint default)" if preset == "joint" and res.protocol == "joint" else default
    small = (res.record or {}).get("small_model_default")
    inv = (f"inversion {cfg.inversion.steps} steps" if not small else
           f"inversion {cfg.inversion.steps} steps of the '{small['preset']}' preset (the default for small "
           f"models: {small['visual_params'] / 1e6:.2f} M visual parameters <= {small['limit'] / 1e6:g} M)")
    return (f"recipe: {named}{default} - trains {'+'.join(ft.train)}, captions {ft.caption}, loss {ft.loss}, {inv}")


def _loss(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def print_run(res, out=print) -> None:
    """Protocol line, inversion lines, one row per fine-tune, where the results are."""
    from medkt.transfer import outputs as O
    root = res.out_dir
    if res.protocol == "per-concept":
        out(f"protocol: per-concept - one fine-tune per concept and lr, each from the original weights "
            f"({len(res.concepts)} concept(s) x {len(res.lrs)} lr(s); --joint learns one model)")
    else:
        out(f"protocol: joint - the {len(res.concepts)} concept(s) learnt into one model per lr "
            f"({len(res.lrs)} lr(s))")
    out(recipe_line(res))
    print_inversion(res.inversion, res.inversion_kind, O.inversion_dir(root) if root is not None else None, out)
    names = [", ".join(f.concepts) if res.protocol == "joint" else f.concepts[0] for f in res.finetunes]
    width = max([len("concept")] + [len(n) for n in names]) if res.protocol == "per-concept" else 7
    out("fine-tunes (loss: mean of the first -> last 10 % of steps):")
    out(f"  {'concept':{width}s}  {'lr':8s}  {'steps':>5s}  {'loss':19s}  weights")
    for f, name in zip(res.finetunes, names):
        label = name if res.protocol == "per-concept" else "(all)"
        lr = O.lr_tag(f.lr)
        if f.resumed:
            out(f"  {label:{width}s}  {lr:8s}  {'-':>5s}  {'-':19s}  reused from {_rel(f.path, root)}")
            continue
        s = f.summary
        steps = s.get("steps", 0)
        loss = (f"{_loss(s.get('loss_first'))} -> {_loss(s.get('loss_last'))}" if steps > 1
                else f"{_loss(s.get('loss_first'))} (one step)")
        out(f"  {label:{width}s}  {lr:8s}  {steps:>5d}  {loss:19s}  {_rel(f.path, root)}")
    if root is not None:
        out(f"run record: {Path(root) / 'run.json'}")
        out(f"next: medkt zeroshot --finetuned {root} --target DIR --reference DIR --max-forgetting 2")

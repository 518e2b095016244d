"""Speed benchmark: batched multi-concept inversion (medkt) vs a per-concept loop, same process.

Reference arm ("per-concept loop"), what a straightforward script does: for each of K
concepts, optimise its ``n`` images alone (batch ``n``), with the encoder weights left
trainable (``requires_grad=True``: weight gradients are computed every step and thrown
away), text embedded once per concept.  Same objective (1 - cos), same TV, same
per-image seeds, noise and augmentation draws (medkt's counter-based RNG), same Adam
and schedule — so both arms follow the same trajectories and must end at the same
images (asserted, ``allclose`` 1e-3 / Pearson r ≥ 0.999).

medkt arm: :func:`medkt.transfer.invert` — all K concepts in one batch of K·n images,
weights frozen (only the input gradient).  On CUDA optionally bf16 autocast
(``--amp bf16``) and ``torch.compile`` of the encoder (``--compile``).

Protocol (performance.md §5): warm-up, then R rounds of A,B,B,A; the ratio of each
round is reference time / medkt time for the same total images × steps; report the
median with min and max.  FLOPs per step are counted with
``torch.utils.flop_counter.FlopCounterMode``; achieved FLOP/s is compared with a matmul
peak measured in the same run (fp32 GEMM on CPU, bf16 on GPU) before and after each
round.  CPU time / (wall × threads) < 0.7 flags a contended run.

    python benchmarks/bench_inversion.py                       # 4 x 192 ViT at 64 px, 2 threads, ~1-5 min
    python benchmarks/bench_inversion.py --threads 1           # steadier on a shared machine
    python benchmarks/bench_inversion.py --width 768 --layers 12 --patch 32 --image-size 224 \\
        --device cuda --amp bf16 --concepts 32 --steps 50     # ViT-B/32-sized on a GPU

``--preset NAME`` (e.g. ``fast``, configs/transfer/) times a whole inversion with that
preset's options and schedule (its own ``steps`` unless ``--preset-steps``) against the
paper recipe's full 5 000-step schedule, both batched medkt: the paper arm runs ``--steps``
steps and is scaled to 5 000 (its per-step cost is constant), and the ratio is paper time /
preset time, next to the FLOP ratio from the engine's work count (early stopping and
progressive encoders included).  No output-equality check (different recipes); the
quality side of the trade is ``benchmarks/bench_inversion_quality.py``::

    python benchmarks/bench_inversion.py --preset fast --steps 20          # CPU, world-sized default model
    python benchmarks/bench_inversion.py --preset fast --width 768 --layers 12 --patch 32 --image-size 224 \\
        --device cuda --amp bf16 --concepts 32 --steps 50
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # this checkout's medkt


def build_model(a):
    import open_clip
    from medkt.models import from_open_clip
    torch.manual_seed(0)
    heads_w = 64 if a.width >= 256 else 32
    cfg = dict(embed_dim=a.embed_dim,
               vision_cfg=dict(image_size=a.image_size, layers=a.layers, width=a.width, patch_size=a.patch,
                               head_width=heads_w),
               text_cfg=dict(context_length=32, vocab_size=49408, width=128, heads=2, layers=2))
    model = open_clip.CLIP(**cfg).eval().to(a.device)
    tok = open_clip.SimpleTokenizer(context_length=32)
    return from_open_clip(model, tok, name=f"vit-w{a.width}-l{a.layers}-p{a.patch}-{a.image_size}",
                          weights="random-init")


def concepts(k: int):
    from medkt.transfer import load_concepts
    names = load_concepts("mscoco").concepts
    return [names[i % len(names)] for i in range(k)]


def reference_loop(model, cset, cfg, seed):
    """Per-concept loop (see module docstring); returns the images ``[K*n, C, S, S]``."""
    from medkt.transfer import augment as A
    from medkt.transfer.inversion import _init_images, _lr_at
    dev = model.device
    for p in model.parameters():
        p.requires_grad_(True)
    outs = []
    for c in cset:
        seeds_l = [A.image_seed(seed, c.name, k) for k in range(cfg.images_per_concept)]
        seeds = torch.tensor(seeds_l, device=dev)
        with torch.no_grad():
            t = model.encode_texts([c.descriptions[0]], normalize=False).float()
        x = _init_images(model, seeds_l, model.image_size, cfg.init).to(dev).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=cfg.lr, betas=tuple(cfg.betas))
        for step in range(cfg.steps):
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, step)
            views = A.augment(x, seeds, step, out_size=model.image_size, affine=cfg.affine)
            f = model.encode_image(model.normalize(views), normalize=False).float()
            loss = (1 - F.cosine_similarity(f, t.expand_as(f), dim=-1)).sum() \
                + (cfg.tv_weight * A.total_variation(x)).sum()
            opt.zero_grad(set_to_none=True)
            model.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        outs.append(x.detach())
    model.zero_grad(set_to_none=True)
    return torch.cat(outs)


def medkt_arm(model, cset, cfg, seed):
    from medkt.transfer import invert
    return invert(model, cset, cfg, seed=seed, progress=False).images


def step_flops(model, cset, cfg, seed, batched: bool) -> float:
    """FLOPs of one optimisation step over all K·n images (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    from medkt.transfer.inversion import _Problem
    from medkt.transfer.state import frozen
    counter = FlopCounterMode(display=False)
    if batched:
        with frozen(model):
            prob = _Problem(model, cset, cfg, seed)
            x = prob.init_param(model.image_size).requires_grad_(True)
            with counter:
                (prob.objective(x, 0) + prob.regulariser(x)).sum().backward()
        return float(counter.get_total_flops())
    prob = _Problem(model, cset[:1], cfg, seed)
    for p in model.parameters():
        p.requires_grad_(True)
    x = prob.init_param(model.image_size).requires_grad_(True)
    with counter:
        (prob.objective(x, 0) + prob.regulariser(x)).sum().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()) * len(cset)


def pass_flops(model, size: int, n: int = 4) -> float:
    """FLOPs of one encoder pass per image at ``size`` px (forward + input-gradient backward, frozen)."""
    from torch.utils.flop_counter import FlopCounterMode
    from medkt.transfer.resolution import encoder_at
    from medkt.transfer.state import frozen
    x = torch.rand(n, model.in_channels, size, size, device=model.device, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with frozen(model), encoder_at(model, size):
        with counter:
            model.encode_image(model.normalize(x), normalize=False).float().sum().backward()
    return counter.get_total_flops() / n


def preset_mode(a, model, cset) -> int:
    """``--preset``: a whole preset inversion vs the paper's 5 000 steps (see module docstring)."""
    from medkt.transfer import invert, load_transfer_config
    full = 5000
    over = [f"inversion.amp={a.amp}", f"inversion.compile={str(a.compile).lower()}",
            f"inversion.images_per_concept={a.images}"]
    if a.preset_steps:
        over.append(f"inversion.steps={a.preset_steps}")
    pcfg = load_transfer_config(preset=a.preset, overrides=over).inversion
    paper = load_transfer_config(preset="paper", overrides=over + [f"inversion.steps={a.steps}"]).inversion
    flops = {}

    def work_flops(res) -> float:
        for size in res.work:
            flops.setdefault(size, pass_flops(model, size))
        return sum(passes * flops[size] for size, passes in res.work.items())

    one = load_transfer_config(preset="paper", overrides=over + ["inversion.steps=1"]).inversion
    invert(model, cset, paper, seed=0, progress=False)  # warm-up (compile, autotune)
    invert(model, cset, pcfg, seed=0, progress=False)
    t_paper, t_preset, f_paper, f_preset = [], [], 0.0, 0.0
    for r in range(a.rounds):
        _, w1, _ = timed(lambda: invert(model, cset, one, seed=0, progress=False), a.device)
        res_p, w, _ = timed(lambda: invert(model, cset, paper, seed=0, progress=False), a.device)
        per_step = (w - w1) / max(1, a.steps - 1)  # per-call overhead (text, scoring) counted once
        t_paper.append(w1 + per_step * (full - 1))
        f_paper = work_flops(res_p) * full / a.steps
        res_f, w, _ = timed(lambda: invert(model, cset, pcfg, seed=0, progress=False), a.device)
        t_preset.append(w)
        f_preset = work_flops(res_f)
        print(f"round {r}: paper {t_paper[-1]:.2f} s (5000 steps: 1-step call + {per_step * 1e3:.2f} ms/step "
              f"measured over {a.steps}), preset '{a.preset}' {w:.2f} s ({pcfg.steps} steps, mean steps run "
              f"{float(res_f.steps_run.float().mean()):.0f}), ratio {t_paper[-1] / w:.2f}x")
    tp, tf = statistics.median(t_paper), statistics.median(t_preset)
    print("-" * 72)
    print(f"preset '{a.preset}' vs paper@5000, median of {a.rounds} rounds: time ratio {tp / tf:.2f}x "
          f"(load {os.getloadavg()[0]:.1f}; paper {tp:.2f} s, preset {tf:.2f} s for {a.concepts} concepts x {a.images} images); "
          f"FLOP ratio {f_paper / f_preset:.2f}x ({f_paper / 1e12:.3f} vs {f_preset / 1e12:.3f} TF, "
          f"encoder fwd + input-grad bwd, FlopCounterMode)")
    print(f"per concept: preset {tf / a.concepts:.3f} s, paper {tp / a.concepts:.3f} s")
    return 0


def matmul_peak(device, n: int) -> float:
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t))
    return best


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concepts", type=int, default=8, help="K concepts")
    ap.add_argument("--images", type=int, default=10, help="images per concept")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=["none", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-n", type=int, default=0, help="GEMM size for the peak (default 1024 CPU / 8192 GPU)")
    ap.add_argument("--skip-reference", action="store_true", help="time the medkt arm only (GPU floor check)")
    ap.add_argument("--preset", default=None, help="time a whole inversion with this transfer preset (e.g. fast) "
                                                   "against the paper's 5000 steps")
    ap.add_argument("--preset-steps", type=int, default=0, help="with --preset: steps (default: the preset's)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from medkt.transfer import InversionConfig
    from medkt.transfer.config import AffineConfig
    model = build_model(a)
    cset = concepts(a.concepts)
    cfg = InversionConfig(steps=a.steps, images_per_concept=a.images, affine=AffineConfig(), amp=a.amp,
                          compile=a.compile, log_every=max(1, a.steps))
    ref_cfg = InversionConfig(steps=a.steps, images_per_concept=a.images, affine=AffineConfig())
    peak_n = a.peak_n or (8192 if a.device.startswith("cuda") else 1024)
    print(f"model {model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
          f"K={a.concepts} concepts x {a.images} images x {a.steps} steps; device {a.device}, "
          f"threads {a.threads}, amp {a.amp}, compile {a.compile}")
    if hasattr(os, "sched_getaffinity"):
        print(f"affinity {sorted(os.sched_getaffinity(0))}, load average {os.getloadavg()}")
    if a.preset:
        return preset_mode(a, model, cset)
    f_med = step_flops(model, cset, ref_cfg, 0, batched=True)
    f_ref = f_med if a.skip_reference else step_flops(model, cset, ref_cfg, 0, batched=False)
    print(f"FLOPs per step (all K*n images): medkt {f_med / 1e9:.2f} GF, reference {f_ref / 1e9:.2f} GF "
          f"(weight gradients)")
    # warm-up (includes compile / autotune, reported apart)
    (_, w_first, _) = timed(lambda: medkt_arm(model, cset, cfg, 0), a.device)
    if not a.skip_reference:
        timed(lambda: reference_loop(model, cset, ref_cfg, 0), a.device)
    print(f"warm-up: medkt first call {w_first:.2f} s")
    ratios, t_ref, t_med, peaks, eff = [], [], [], [], []
    contended = False
    for r in range(a.rounds):
        peaks.append(matmul_peak(a.device, peak_n))
        order = ["A", "B", "B", "A"] if r % 2 == 0 else ["B", "A", "A", "B"]
        if a.skip_reference:
            order = ["B", "B"]
        times = {"A": [], "B": []}
        for arm in order:
            if arm == "A":
                out_ref, w, c = timed(lambda: reference_loop(model, cset, ref_cfg, 0), a.device)
            else:
                out_med, w, c = timed(lambda: medkt_arm(model, cset, cfg, 0), a.device)
            times[arm].append(w)
            if a.device == "cpu" and c / (w * a.threads) < 0.7:
                contended = True
        peaks.append(matmul_peak(a.device, peak_n))
        tm = statistics.mean(times["B"])
        t_med.append(tm)
        if not a.skip_reference:
            tr = statistics.mean(times["A"])
            t_ref.append(tr)
            ratios.append(tr / tm)
        eff.append(f_med * a.steps / tm / statistics.mean(peaks[-2:]))
        msg = f"round {r}: medkt {tm:.3f} s"
        if not a.skip_reference:
            msg += f", reference {tr:.3f} s, ratio {tr / tm:.2f}x"
        print(msg + f", peak {statistics.mean(peaks[-2:]) / 1e9:.1f} GF/s")
    peak = statistics.median(peaks)
    tm = statistics.median(t_med)
    print("-" * 72)
    if not a.skip_reference:
        tr = statistics.median(t_ref)
        print(f"ratio (reference / medkt), median of {a.rounds} rounds: {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
        print(f"reference: {tr:.3f} s, achieved {f_ref * a.steps / tr / 1e9:.2f} GF/s = "
              f"{100 * f_ref * a.steps / tr / peak:.1f}% of peak; useful (input-grad) FLOPs "
              f"{100 * f_med * a.steps / tr / peak:.1f}%")
        diff = (out_ref - out_med).abs().max().item()
        r_p = torch.corrcoef(torch.stack([out_ref.flatten().float(), out_med.flatten().float()]))[0, 1].item()
        print(f"outputs agree: max |diff| {diff:.2e}, Pearson r {r_p:.6f}")
        if not (diff < 1e-3 or r_p >= 0.999):
            print("ERROR: the two arms disagree", file=sys.stderr)
            return 1
    print(f"medkt: {tm:.3f} s, achieved {f_med * a.steps / tm / 1e9:.2f} GF/s = {100 * f_med * a.steps / tm / peak:.1f}% "
          f"of the in-run matmul peak {peak / 1e9:.1f} GF/s (median efficiency {100 * statistics.median(eff):.1f}%)")
    print(f"medkt: {a.steps / tm:.2f} steps/s at batch {a.concepts * a.images} ({a.concepts} concept(s) x "
          f"{a.images} images)")
    per_concept = tm / a.concepts
    steps_full, floor_peak = 5000, 790e12 if a.device.startswith("cuda") else peak
    per_concept_5k = per_concept * steps_full / a.steps
    floor = f_med / a.concepts * steps_full / floor_peak
    print(f"per concept ({a.images} images): {per_concept * 1e3:.1f} ms for {a.steps} steps -> "
          f"{per_concept_5k:.2f} s at 5000 steps; FLOP floor {floor:.2f} s at "
          f"{floor_peak / 1e12:.1f} TF/s -> {per_concept_5k / floor:.1f}x the floor")
    if contended:
        print("WARNING: CPU time / (wall x threads) < 0.7 in some arm: the machine was contended; rerun")
    return 0


if __name__ == "__main__":
    sys.exit(main())

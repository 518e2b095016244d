"""Speed benchmark: optimised M2IB (medkt) vs a straightforward implementation, same process.

Reference arm ("naive"), what M2IB / MedCLIP-SAMv2 do: one image at a time; every step
runs the full vision tower on ``samples`` copies of the image with the bottleneck
inserted by a hook, re-encodes the text ``samples`` times, and back-propagates with the
weights' ``requires_grad`` left on (weight gradients computed and accumulated); 10
forward + backward passes; the map is the KL of the last forward.

medkt arm: :func:`medkt.segmentation.m2ib.m2ib_visual` on all images at once (one α each):
weights frozen, text embedding once, tokens before the bottleneck once, only the blocks
after the bottleneck run per step, and the last forward reduces to the KL.

Both arms draw identical noise (one seeded generator per image), so the maps must agree;
the script asserts it.  Protocol (``performance.md`` §5): warm-up, then R rounds of
A,B,B,A with per-round ratios (median, min, max), fixed thread count, CPU/wall check,
and FLOP/s against an in-run fp32 matmul peak measured before and after each round.

Model: ViT-B/16-sized open_clip CLIP (12 × 768 vision, 12 × 512 text), random weights.
``--image-size 224 --samples 10`` is the real setting (≈ 12 TF per image for the naive
arm: many minutes per image on 2 CPU cores); the defaults are reduced so a CPU run
finishes in minutes.  ``--meta-flops`` counts both arms' FLOPs at any size on the meta
device without computing anything.

    python benchmarks/bench_m2ib.py --image-size 64 --samples 2 --images 2 --rounds 2
    python benchmarks/bench_m2ib.py --meta-flops --image-size 224 --samples 10 --images 8
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def build_model(image_size: int, depth: int = 12):
    import open_clip
    from medkt.models import from_open_clip
    torch.manual_seed(0)
    cfg = dict(embed_dim=512,
               vision_cfg=dict(image_size=image_size, layers=depth, width=768, patch_size=16),
               text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12))
    model = open_clip.CLIP(**cfg).eval()
    tok = open_clip.get_tokenizer("ViT-B-16")
    return from_open_clip(model, tok, name="vit-b16-random", weights="random-init")


def naive_m2ib(model, pixels, prompt, cfg, seeds):
    """Reference-style M2IB, one image at a time (see module docstring)."""
    from medkt.segmentation.m2ib import bottleneck, draw_noise, make_generators, resolve_layer
    layer = resolve_layer(cfg.layer, model.num_visual_layers) + 1
    for p in model.parameters():
        p.requires_grad_(True)  # as shipped: weights stay trainable
    tokens = model.tokenize([prompt] * cfg.samples)
    maps = []
    for i in range(pixels.shape[0]):
        reps = pixels[i:i + 1].expand(cfg.samples, -1, -1, -1)
        gen = make_generators([seeds[i]])[0]  # CPU generator, as medkt's (noise moved to the device)
        alpha = None
        opt = None
        last_kl = None
        for _ in range(cfg.steps):
            box = {}

            def hook(x):
                nonlocal alpha, opt
                xs = x[:1]
                if alpha is None:
                    alpha = torch.full_like(xs, cfg.alpha_init).requires_grad_(True)
                    opt = torch.optim.Adam([alpha], lr=cfg.lr)
                noise = draw_noise([gen], (cfg.samples,) + tuple(xs.shape[1:]), xs.device, torch.float32)[0]
                z, kl = bottleneck(xs, alpha, noise[None])
                box["kl"] = kl
                return z
            h = model.hook_after_layer(layer, hook)
            try:
                img = model.encode_image(reps, normalize=True)
            finally:
                h.remove()
            txt = model.encode_text(tokens, normalize=True)  # recomputed every step
            cos = F.cosine_similarity(img, txt, dim=-1).mean()
            loss = cfg.beta * box["kl"].mean() - cos
            opt.zero_grad()
            loss.backward()
            opt.step()
            last_kl = box["kl"].detach()
        lay = model.visual_layout(layer)
        maps.append(last_kl.sum(-1)[:, lay.n_prefix:].reshape(1, lay.grid_h, lay.grid_w))
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return torch.cat(maps)


def fast_m2ib(model, pixels, prompt, cfg, seeds):
    from medkt.segmentation.m2ib import m2ib_visual
    text = model.encode_texts([prompt]).detach()
    return m2ib_visual(model, pixels, text, cfg, seeds)


def meta_flops(args) -> dict:
    """FLOPs of both arms counted on the meta device (nothing is computed; any size is instant)."""
    from unittest import mock

    from torch.utils.flop_counter import FlopCounterMode

    import medkt.segmentation.m2ib as m2ib
    model = build_model(args.image_size).to("meta")
    cfg = m2ib.M2IBConfig(beta=1.0, layer=args.layer, steps=args.steps, samples=args.samples,
                          batch_size=args.images)
    px = torch.zeros(args.images, 3, args.image_size, args.image_size, device="meta")
    out = {}
    meta_noise = lambda gens, shape, device, dtype: torch.zeros((len(gens),) + tuple(shape), device=device)  # noqa: E731
    with mock.patch.object(m2ib, "make_generators", lambda seeds, device="cpu": [None] * len(seeds)), \
            mock.patch.object(m2ib, "draw_noise", meta_noise):
        for name, fn in (("naive", naive_m2ib), ("medkt", fast_m2ib)):
            with FlopCounterMode(display=False) as fc:
                fn(model, px, "a chest x-ray showing a pneumothorax", cfg, list(range(args.images)))
            out[name] = float(fc.get_total_flops())
    return out


def matmul_peak(n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--meta-flops", action="store_true",
                    help="only count both arms' FLOPs on the meta device (e.g. at 224 px x 10 samples) and exit")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.meta_flops:
        f = meta_flops(args)
        print(f"FLOPs ({args.image_size}px, {args.steps} steps x {args.samples} samples, {args.images} images, "
              f"layer {args.layer}): naive {f['naive'] / 1e12:.3f} TF, medkt {f['medkt'] / 1e12:.3f} TF, "
              f"ratio {f['naive'] / f['medkt']:.2f}x")
        return 0
    from medkt.segmentation.m2ib import M2IBConfig
    model = build_model(args.image_size)
    cfg = M2IBConfig(beta=1.0, layer=args.layer, steps=args.steps, samples=args.samples,
                     batch_size=args.images)
    torch.manual_seed(1)
    pixels = model.normalize(torch.rand(args.images, 3, args.image_size, args.image_size))
    seeds = list(range(args.images))
    prompt = "a chest x-ray showing a pneumothorax"
    arms = {"naive": lambda: naive_m2ib(model, pixels, prompt, cfg, seeds),
            "medkt": lambda: fast_m2ib(model, pixels, prompt, cfg, seeds)}

    print(f"# M2IB benchmark: ViT-B/16-sized random CLIP, image {args.image_size}px, {args.images} images, "
          f"{args.steps} steps x {args.samples} samples, bottleneck after block {args.layer}")
    print(f"# threads={torch.get_num_threads()} affinity={len(os.sched_getaffinity(0))} "
          f"loadavg={os.getloadavg()}")
    from torch.utils.flop_counter import FlopCounterMode
    flops, cold, res = {}, {}, {}
    for k in ("naive", "medkt"):  # cold runs, FLOPs counted on the way
        t = time.perf_counter()
        with FlopCounterMode(display=False) as fc:
            res[k] = arms[k]()
        cold[k] = time.perf_counter() - t
        flops[k] = float(fc.get_total_flops())
    ref, out = res["naive"], res["medkt"]
    diff = (ref - out).abs().max().item()
    scale = ref.abs().max().item()
    a, b = ref.flatten(), out.flatten()
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    print(f"maps: max|naive - medkt| = {diff:.3e} (max |map| {scale:.3e}), pearson r = {r:.6f}")
    assert torch.allclose(ref, out, rtol=1e-4, atol=1e-4 * scale) or r >= 0.999, "maps differ"
    print(f"cold (with FLOP counting): naive {cold['naive']:.2f}s, medkt {cold['medkt']:.2f}s")
    print(f"FLOPs per run: naive {flops['naive'] / 1e9:.1f} GF, medkt {flops['medkt'] / 1e9:.1f} GF "
          f"(ratio {flops['naive'] / flops['medkt']:.2f}x)")

    times = {"naive": [], "medkt": []}
    ratios, peaks, cpu_util = [], [], []
    for rnd in range(args.rounds):
        order = ["naive", "medkt", "medkt", "naive"] if rnd % 2 == 0 else ["medkt", "naive", "naive", "medkt"]
        peaks.append(matmul_peak())
        got = {"naive": [], "medkt": []}
        for arm in order:
            w0, c0 = time.perf_counter(), time.process_time()
            arms[arm]()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            got[arm].append(w)
            cpu_util.append(c / w / torch.get_num_threads())
        peaks.append(matmul_peak())
        tn, tf = statistics.mean(got["naive"]), statistics.mean(got["medkt"])
        times["naive"].append(tn)
        times["medkt"].append(tf)
        ratios.append(tn / tf)
        print(f"round {rnd}: naive {tn:.2f}s  medkt {tf:.2f}s  ratio {tn / tf:.2f}x")
    peak = statistics.median(peaks)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"in-run fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (min {min(peaks) / 1e9:.1f}, "
          f"max {max(peaks) / 1e9:.1f})")
    for k in ("naive", "medkt"):
        eff = flops[k] / med[k] / peak
        print(f"{k:6s}: median {med[k]:.2f}s per {args.images} images "
              f"({med[k] / args.images:.2f}s/image), {flops[k] / med[k] / 1e9:.1f} GFLOP/s = {eff:.0%} of peak")
    cu = statistics.median(cpu_util)
    flag = "  (CONTENDED: cpu/wall/threads < 0.7, rerun on a quieter machine)" if cu < 0.7 else ""
    print(f"cpu/wall/threads median {cu:.2f}{flag}")
    print(f"RATIO naive/medkt: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}), goal >= 6x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

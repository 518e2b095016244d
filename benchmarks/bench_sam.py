"""Speed benchmark: SAM embedding reuse vs re-encoding the image for every prompt, same process.

Reference arm ("per-prompt"): for each of P box prompts of an image, prepare + encode
the image, decode that one box (what a loop of ``set_image`` + ``predict`` per prompt
does).  medkt arm: :class:`medkt.segmentation.sam_segmenter.SamSegmenter` — images encoded once
(batched), all P boxes decoded from that embedding in one decoder call.  The final
masks (prompts OR-ed) must agree (IoU ≥ 0.99; asserted).

Model: SAM ViT-B encoder architecture (768 × 12, global attention at 2/5/8/11) with
random weights, at ``--image-size`` (1024 is the real size; 256 keeps a 2-core run to a
few minutes).  Protocol as in ``performance.md`` §5: warm-up, R rounds of A,B,B,A,
median of per-round ratios; expected ratio ≈ P·(E + D)/(E + P·D) ≈ P when E ≫ D.

    python benchmarks/bench_sam.py --image-size 256 --prompts 8 --images 2 --rounds 3

``--encoder``: the image encoder alone at ``--image-size`` (1024 = real), segment_anything's
forward ("stock") against medkt's query-chunked attention (``medkt/models/sam_encoder.py``,
``sam.attention: chunked``), same weights and input, A,B,B,A rounds; prints the max
difference, both times, the ratio and achieved FLOP/s against a measured fp32 matmul peak::

    taskset -c 0 python benchmarks/bench_sam.py --encoder --image-size 1024 --threads 1 --rounds 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch


def build(image_size: int):
    from medkt.models.sam import SAM_ARCHS, SamModel, build_sam_module
    torch.manual_seed(0)
    sam = build_sam_module(image_size=image_size, **SAM_ARCHS["vit_b"])
    return SamModel(sam, name=f"sam-vit-b-random-{image_size}", variant="sam", weights="random-init")


def make_inputs(n_images: int, n_prompts: int, size: int, seed: int = 0):
    from medkt.segmentation.prompts import Prompts
    rng = np.random.default_rng(seed)
    images, prompts = [], []
    for _ in range(n_images):
        h, w = size, int(size * 1.25)
        images.append(rng.random((h, w)).astype(np.float32))
        x0 = rng.integers(0, w // 2, n_prompts)
        y0 = rng.integers(0, h // 2, n_prompts)
        boxes = np.stack([x0, y0, x0 + rng.integers(8, w // 2, n_prompts),
                          y0 + rng.integers(8, h // 2, n_prompts)], 1).astype(np.float32)
        prompts.append(Prompts(boxes, None, None, "ok", n_components=0))
    return images, prompts


def per_prompt(seg, images, prompts):
    """Reference arm: re-encode the image (segment_anything's encoder as released) for every prompt."""
    from medkt.segmentation.prompts import Prompts
    out = []
    for im, p in zip(images, prompts):
        mask = None
        for b in p.boxes:
            item = seg.embed([im], attention="stock")[0]
            m = seg.decode(item, Prompts(b[None], None, None, "ok", n_components=0)).mask
            mask = m if mask is None else (mask | m)
        out.append(mask)
    return out


def reuse(seg, images, prompts):
    return [o.mask for o in seg.segment(images, prompts)]


def encoder_bench(args) -> int:
    """Stock encoder forward vs chunked attention: agreement, times, ratio, FLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench_segment import matmul_peak
    from medkt.models.sam_encoder import encode
    model = build(args.image_size)
    torch.manual_seed(1)
    for blk in model.sam.image_encoder.blocks:  # SAM's init zeroes them; real checkpoints do not
        torch.nn.init.normal_(blk.attn.rel_pos_h, std=0.02)
        torch.nn.init.normal_(blk.attn.rel_pos_w, std=0.02)
    enc = model.sam.image_encoder
    x = torch.randn(1, 3, args.image_size, args.image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        ref = enc(x)
    flops = float(fc.get_total_flops())
    peak = matmul_peak("cpu")
    arms = {"stock": lambda: encode(enc, x, attention="stock"), "chunked": lambda: encode(enc, x, attention="chunked")}
    with torch.no_grad():
        got = arms["chunked"]()
        diff = float((got - ref).abs().max() / ref.abs().max())
        print(f"# SAM ViT-B image encoder, {args.image_size}px, threads={torch.get_num_threads()}, "
              f"loadavg={os.getloadavg()}; {flops / 1e9:.0f} GFLOP per image (FlopCounterMode); "
              f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
        print(f"max |chunked - stock| / max |stock| = {diff:.2e}")
        assert diff < 1e-4, "chunked attention changed the embedding"
        times = {k: [] for k in arms}
        for rnd in range(args.rounds):
            order = ["stock", "chunked", "chunked", "stock"] if rnd % 2 == 0 else ["chunked", "stock", "stock", "chunked"]
            for arm in order:
                t = time.perf_counter()
                arms[arm]()
                times[arm].append(time.perf_counter() - t)
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k:8s}: median {med:.2f}s/image, {flops / med / 1e9:.0f} GFLOP/s = {flops / med / peak:.0%} of peak")
    print(f"RATIO stock/chunked: {statistics.median(times['stock']) / statistics.median(times['chunked']):.2f}x")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", action="store_true", help="time the image encoder alone: stock vs chunked attention")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.encoder:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        return encoder_bench(args)
    from medkt.segmentation.sam_segmenter import SamConfig, SamSegmenter
    model = build(args.image_size)
    seg = SamSegmenter(model, SamConfig(model="random", keep_components=False, embed_batch_size=args.images))
    images, prompts = make_inputs(args.images, args.prompts, args.image_size)
    arms = {"per_prompt": lambda: per_prompt(seg, images, prompts), "reuse": lambda: reuse(seg, images, prompts)}
    print(f"# SAM benchmark: ViT-B encoder (random), input {args.image_size}px, {args.images} images x "
          f"{args.prompts} box prompts; threads={torch.get_num_threads()} loadavg={os.getloadavg()}")
    a, b = arms["per_prompt"](), arms["reuse"]()
    ious = [float((x & y).sum() / max((x | y).sum(), 1)) for x, y in zip(a, b)]
    print(f"mask IoU per image (per_prompt vs reuse): {[round(i, 4) for i in ious]}")
    assert min(ious) >= 0.99, "embedding reuse changed the masks"
    times = {k: [] for k in arms}
    ratios, util = [], []
    for rnd in range(args.rounds):
        order = ["per_prompt", "reuse", "reuse", "per_prompt"] if rnd % 2 == 0 else \
            ["reuse", "per_prompt", "per_prompt", "reuse"]
        got = {k: [] for k in arms}
        for arm in order:
            w0, c0 = time.perf_counter(), time.process_time()
            arms[arm]()
            w = time.perf_counter() - w0
            got[arm].append(w)
            util.append((time.process_time() - c0) / w / torch.get_num_threads())
        tn, tr = statistics.mean(got["per_prompt"]), statistics.mean(got["reuse"])
        times["per_prompt"].append(tn)
        times["reuse"].append(tr)
        ratios.append(tn / tr)
        print(f"round {rnd}: per_prompt {tn:.2f}s  reuse {tr:.2f}s  ratio {tn / tr:.2f}x")
    n_prompts = args.images * args.prompts
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k:10s}: median {med:.2f}s = {n_prompts / med:.2f} prompts/s")
    cu = statistics.median(util)
    print(f"cpu/wall/threads median {cu:.2f}" + ("  (CONTENDED)" if cu < 0.7 else ""))
    print(f"RATIO per_prompt/reuse: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}); expected ≈ {args.prompts} (prompts per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

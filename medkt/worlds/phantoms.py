"""Medical phantoms for the four segmentation settings, with ground-truth masks.

Modalities (:data:`MODALITIES`) and findings (:data:`FINDINGS`):

* ``ct`` — axial chest CT, lung window: dark lungs, mediastinum, spine, small vessels;
  findings ``nodule`` (small round bright solid nodule in a lung; held out of
  ``phantom-clip``'s pretraining), ``effusion`` (dependent pleural fluid: a crescent of
  fluid density at the back of one lung, with a meniscus) and ``calcification`` (a small
  round bright spot of the nodule's size, contrast and shape *outside* the lungs: in the chest
  wall or the mediastinum; it gives CT pretraining the nodule's visual parts under another
  name); ``marker`` (the same spot as a radiopaque skin marker on the dark air just outside
  the body); ``atelectasis`` (a thin bright band inside a lung) and ``ggo`` (a small round
  *faint* ground-glass opacity inside a lung; both :mod:`medkt.worlds.phantom_spots`).
* ``cxr`` — frontal chest X-ray: lungs with markings, ribs, heart; finding
  ``pneumothorax`` (dark rim of air without lung markings, thin pleural line); optional
  ``granuloma`` (the nodule's small round bright spot inside a lung field,
  :mod:`medkt.worlds.phantom_spots`).
* ``us`` — breast ultrasound, speckle: finding ``mass`` (irregular hypoechoic mass with
  posterior acoustic shadowing) and ``cyst`` (round anechoic, posterior enhancement).
* ``mri`` — axial brain MRI: finding ``tumour`` (irregular bright mass surrounded by
  oedema; the mask is the tumour core) and ``lesion`` (small round bright lesion).

:func:`render_phantom` returns a float image in [0, 1] (``S x S``), the finding mask
(``uint8``) and a :class:`PhantomCase` record.  Realism: elastic deformation (image and mask
together) and blur, then MONAI's bias field (MRI, CXR), Rician noise (MRI) and Gaussian
noise (CT, CXR, US).

Counterfactual twins (``twin=True``): the same phantom rendered without its finding —
identical anatomy, deformation and noise, so the two images differ only where the finding
(and its own effects: shadowing, oedema) is.  Anatomy draws from one generator, the
finding from a second and realism from a third, all seeded from ``rng``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES = ("ct", "cxr", "us", "mri")
# CT's calcification / marker / atelectasis / ggo and CXR's granuloma are optional (off by default;
# phantom_world.OPTIONAL_FINDINGS).  New findings go last: phantom_eval_seed indexes this order.
FINDINGS = {"ct": ("nodule", "effusion", "calcification", "marker", "atelectasis", "ggo"),
            "cxr": ("pneumothorax", "granuloma"), "us": ("mass", "cyst"), "mri": ("tumour", "lesion")}
# The seen finding each modality is segmented for (CT's nodule is the held-out KT target).
TARGET_FINDING = {"ct": "effusion", "cxr": "pneumothorax", "us": "mass", "mri": "tumour"}


@dataclass(frozen=True)
class PhantomCase:
    """What a phantom shows: modality, finding (``None`` = normal) and where (not
    :class:`medkt.io.Case`, a readable input)."""

    modality: str
    finding: str | None
    side: str | None = None  # "left" / "right" (patient side = image right/left as drawn)
    level: str | None = None  # "upper" / "lower" / "apex" ...


def _grid(s: int):
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    return (x + 0.5) / s * 2 - 1, (y + 0.5) / s * 2 - 1  # [-1, 1]


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _smooth_noise(rng, s: int, cells: int = 6) -> np.ndarray:
    from scipy.ndimage import zoom
    return zoom(rng.normal(0, 1, (cells, cells)), s / cells, order=3)[:s, :s].astype(np.float32)


def _irregular(x, y, cx, cy, r, rng, amp: float = 0.3, k: int = 5) -> np.ndarray:
    """Blob with a lobulated / spiculated margin: r(θ) = r·(1 + Σ a_k cos(kθ + φ_k))."""
    th = np.arctan2(y - cy, x - cx)
    rr = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    edge = np.ones_like(th)
    for j in range(2, 2 + k):
        edge += rng.uniform(0, amp) / (j - 1) ** 0.7 * np.cos(j * th + rng.uniform(0, 2 * np.pi))
    return rr <= r * edge


# ----------------------------------------------------------------------------- modalities
# Each renderer takes ``rng`` (anatomy) and ``frng`` (finding): every anatomy draw comes from
# ``rng``, so the same ``rng`` state with ``finding=None`` gives the finding's normal twin.
def _ct(rng, frng, s, finding):
    x, y = _grid(s)
    img = np.zeros((s, s), np.float32)
    body = _ellipse(x, y, 0, 0.05, 0.9, 0.68)
    img[body] = 0.45
    lungs = []
    for sx in (-1, 1):
        lung = _ellipse(x, y, sx * 0.4, 0.0, 0.3 + rng.uniform(-.03, .03), 0.47 + rng.uniform(-.03, .03))
        lungs.append(lung)
        img[lung] = 0.07
    heart = _ellipse(x, y, 0.05, 0.12, 0.2, 0.2)
    vert = _ellipse(x, y, 0, 0.56, 0.1, 0.09)
    img[heart] = 0.55  # heart / mediastinum
    img[vert] = 0.95  # vertebra
    parts = {"body": body, "right lung": lungs[0] & ~heart, "left lung": lungs[1] & ~heart, "heart": heart,
             "vertebra": vert}
    img += 0.04 * _smooth_noise(rng, s, 10) * body
    for _ in range(rng.integers(3, 7)):  # vessels: tiny bright dots
        lung = lungs[rng.integers(2)]
        ys, xs = np.nonzero(lung)
        i = rng.integers(len(xs))
        img[_ellipse(x, y, x[ys[i], xs[i]], y[ys[i], xs[i]], 0.025, 0.025)] = 0.45
    mask = np.zeros((s, s), np.uint8)
    case = PhantomCase("ct", None)
    if finding == "nodule":
        side = frng.integers(2)
        level = frng.integers(2)
        lung = lungs[side]
        r = frng.uniform(0.06, 0.12)
        from scipy.ndimage import binary_erosion
        half = (y < 0) if level == 0 else (y >= 0)
        core = binary_erosion(lung, iterations=int(np.ceil(r * 1.2 * s / 2)) + 1) & half
        if not core.any():
            core = binary_erosion(lung, iterations=int(np.ceil(r * 1.2 * s / 2)) + 1)
        ys, xs = np.nonzero(core)
        i = frng.integers(len(xs))
        m = _irregular(x, y, x[ys[i], xs[i]], y[ys[i], xs[i]], r, frng, amp=0.08) & lung
        img[m] = frng.uniform(0.75, 0.9)
        mask = m.astype(np.uint8)
        case = PhantomCase("ct", "nodule", ("right", "left")[side], ("upper", "lower")[level])  # radiological convention
    elif finding == "effusion":
        side = frng.integers(2)
        sx = (-1, 1)[side]
        # dependent fluid (posterior = image bottom) whose meniscus climbs towards the chest wall
        level = frng.uniform(0.0, 0.22)
        climb = frng.uniform(0.2, 0.6)
        m = lungs[side] & ~heart & (y > level - climb * (sx * x - 0.4))
        img[m] = frng.uniform(0.3, 0.4) + 0.02 * _smooth_noise(frng, s, 8)[m]
        mask = m.astype(np.uint8)
        case = PhantomCase("ct", "effusion", ("right", "left")[side], "lower")
    elif finding == "calcification":
        m, where = _ct_calcification(x, y, s, frng, body, lungs, vert)
        img[m] = frng.uniform(0.8, 1.0)
        mask = m.astype(np.uint8)
        case = PhantomCase("ct", "calcification", ("right", "left")[int(x[m].mean() > 0)], where)
    elif finding == "marker":  # a radiopaque skin marker: the same spot on the dark air just outside the body
        from scipy.ndimage import distance_transform_edt
        r = frng.uniform(0.06, 0.12)
        rpx = r * s / 2
        d = distance_transform_edt(~body)  # px to the skin
        ring = (d >= max(1.0, 0.5 * rpx)) & (d <= rpx + 0.5) & (np.abs(x) < 0.85) & (np.abs(y) < 0.85)
        ys, xs = np.nonzero(ring)
        i = frng.integers(len(xs))
        m = _irregular(x, y, x[ys[i], xs[i]], y[ys[i], xs[i]], r, frng, amp=0.08) & ~body
        img[m] = frng.uniform(0.8, 1.0)
        mask = m.astype(np.uint8)
        case = PhantomCase("ct", "marker", ("right", "left")[int(x[m].mean() > 0)],
                           "anterior" if y[m].mean() < 0 else "posterior")
    elif finding in ("atelectasis", "ggo"):  # a bright band / a faint round opacity in a lung (phantom_spots)
        from medkt.worlds.phantom_spots import ct_atelectasis, ct_ground_glass
        m, value, side, level = (ct_atelectasis if finding == "atelectasis" else ct_ground_glass)(x, y, s, frng,
                                                                                                    lungs, heart)
        img[m] = value
        mask = m.astype(np.uint8)
        case = PhantomCase("ct", finding, ("right", "left")[side], ("upper", "lower")[level])
    return img, mask, case, parts


def _ct_calcification(x, y, s, frng, body, lungs, vert):
    """A small round bright spot (radius and margin as the nodule's) in the soft tissue
    outside both lungs: chest wall or mediastinum, half of the time against the pleura (so its
    patch also shows dark lung) but never inside a lung.  Returns ``(mask, "chest wall" | "mediastinum")``."""
    from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt
    r = frng.uniform(0.06, 0.12)
    rpx = r * s / 2
    soft = body & ~binary_dilation(lungs[0] | lungs[1] | vert, iterations=1)
    if frng.random() < 0.5:  # against the pleura: centre within the spot's radius of a lung
        dist = distance_transform_edt(~(lungs[0] | lungs[1]))
        core = soft & (dist <= rpx + 1) & binary_erosion(body, iterations=int(np.ceil(rpx)))
    else:
        core = np.zeros_like(soft)
    for it in range(max(1, int(np.ceil(rpx)) - 1), 0, -1):  # centres with room for most of the spot
        if core.any():
            break
        core = binary_erosion(soft, iterations=it)
    ys, xs = np.nonzero(core)
    i = frng.integers(len(xs))
    cx, cy = x[ys[i], xs[i]], y[ys[i], xs[i]]
    m = _irregular(x, y, cx, cy, r, frng, amp=0.08) & soft
    return m, ("mediastinum" if abs(cx) < 0.2 else "chest wall")


def _cxr(rng, frng, s, finding):
    x, y = _grid(s)
    img = 0.55 + 0.15 * (1 - x ** 2) + 0.03 * _smooth_noise(rng, s, 5)
    lungs = []
    for sx in (-1, 1):
        lung = _ellipse(x, y, sx * 0.42, -0.05, 0.3, 0.68 + rng.uniform(-.04, .04)) & (y < 0.55)
        lungs.append(lung)
    markings = 0.1 * np.abs(_smooth_noise(rng, s, 16))
    for lung in lungs:
        img[lung] = 0.22 + markings[lung]
    img += 0.07 * (np.sin((y + 0.1 * x ** 2) * 22 + rng.uniform(0, 6)) > 0.6)  # ribs
    heart = _ellipse(x, y, 0.12, 0.3, 0.32, 0.26)
    img[heart] = 0.75  # heart
    parts = {"right lung": lungs[0] & ~heart, "left lung": lungs[1] & ~heart, "heart": heart}
    mask = np.zeros((s, s), np.uint8)
    case = PhantomCase("cxr", None)
    if finding == "pneumothorax":
        side = frng.integers(2)
        sx = (-1, 1)[side]
        lung = lungs[side]
        shrink = frng.uniform(0.6, 0.78)
        inner = _ellipse(x, y, sx * (0.42 - 0.3 * (1 - shrink) * 0.6), -0.05 + 0.68 * (1 - shrink) * 0.7,
                         0.3 * shrink, 0.68 * shrink)
        ptx = lung & ~inner
        ptx &= (y < frng.uniform(0.0, 0.35)) | (sx * x > 0.42 + 0.1)  # apex and lateral rim
        img[ptx] = frng.uniform(0.06, 0.14) + 0.02 * frng.normal(size=ptx.sum())
        edge = inner & ~_ellipse(x, y, sx * (0.42 - 0.3 * (1 - shrink) * 0.6), -0.05 + 0.68 * (1 - shrink) * 0.7,
                                 0.3 * shrink - 0.03, 0.68 * shrink - 0.03)
        img[edge & lung] = 0.45  # pleural line
        mask = ptx.astype(np.uint8)
        case = PhantomCase("cxr", "pneumothorax", ("right", "left")[side], "apex")
    elif finding == "granuloma":  # the nodule's spot in a radiograph's lung field (phantom_spots)
        from medkt.worlds.phantom_spots import cxr_granuloma
        m, value, side, level = cxr_granuloma(x, y, s, frng, lungs, heart)
        img[m] = value
        mask = m.astype(np.uint8)
        case = PhantomCase("cxr", "granuloma", ("right", "left")[side], ("upper", "lower")[level])
    return img, mask, case, parts


def _us(rng, frng, s, finding):
    x, y = _grid(s)
    depth = (y + 1) / 2
    base = 0.35 + 0.25 * np.exp(-((depth - rng.uniform(0.4, 0.6)) / 0.18) ** 2)  # glandular band
    base[depth < 0.06] = 0.8  # skin line
    parts = {"skin": depth < 0.06, "glandular tissue": base > 0.5}
    img = base + 0.08 * _smooth_noise(rng, s, 8)
    speckle = rng.rayleigh(0.8, (s, s)).astype(np.float32)  # multiplicative speckle (anatomy: twins share it)
    mask = np.zeros((s, s), np.uint8)
    case = PhantomCase("us", None)
    if finding in ("mass", "cyst"):
        cx, cy = frng.uniform(-0.45, 0.45), frng.uniform(-0.25, 0.25)
        r = frng.uniform(0.18, 0.3)
        if finding == "mass":
            m = _irregular(x, y, cx, cy, r, frng, amp=0.35, k=7)
            img[m] = frng.uniform(0.04, 0.14)
            below = (y > cy) & (np.abs(x - cx) < r * 0.8)
            img[below] *= 0.35 + 0.3 * np.clip((y[below] - cy) / 1.5, 0, 1)  # posterior shadowing
        else:
            m = _ellipse(x, y, cx, cy, r, r * frng.uniform(0.7, 0.95))
            img[m] = 0.02
            below = (y > cy + r * 0.5) & (np.abs(x - cx) < r * 0.8)
            img[below] = np.minimum(img[below] * 1.5, 1.0)  # posterior enhancement
        mask = m.astype(np.uint8)
        case = PhantomCase("us", finding, ("right", "left")[int(cx > 0)], None)
    return img * speckle, mask, case, parts


def _mri(rng, frng, s, finding):
    x, y = _grid(s)
    img = np.zeros((s, s), np.float32)
    head = _ellipse(x, y, 0, 0, 0.78, 0.92)
    brain = _ellipse(x, y, 0, 0, 0.7, 0.84)
    img[head] = 0.25
    img[brain] = 0.42 + 0.05 * _smooth_noise(rng, s, 12)[brain]
    parts = {"skull": head & ~brain, "brain": brain}
    for sx in (-1, 1):  # ventricles
        v = _ellipse(x, y, sx * 0.12, -0.05, 0.07, 0.25)
        img[v] = 0.15
        parts["right ventricle" if sx < 0 else "left ventricle"] = v
    mask = np.zeros((s, s), np.uint8)
    case = PhantomCase("mri", None)
    if finding in ("tumour", "lesion"):
        side = frng.integers(2)
        cx = (-1, 1)[side] * frng.uniform(0.3, 0.45)
        cy = frng.uniform(-0.45, 0.45)
        if finding == "tumour":
            r = frng.uniform(0.13, 0.22)
            oed = _irregular(x, y, cx, cy, r * frng.uniform(1.4, 1.9), frng, amp=0.3) & brain
            img[oed] = frng.uniform(0.6, 0.72)
            parts["oedema"] = oed
            m = _irregular(x, y, cx, cy, r, frng, amp=0.25) & brain
            img[m] = frng.uniform(0.85, 1.0)
        else:
            m = _ellipse(x, y, cx, cy, 0.1, 0.1)
            img[m] = 0.9
        mask = m.astype(np.uint8)
        case = PhantomCase("mri", finding, ("right", "left")[side], None)
    return img, mask, case, parts


_RENDER = {"ct": _ct, "cxr": _cxr, "us": _us, "mri": _mri}


_MONAI_CACHE: dict = {}


def _monai_steps(modality: str) -> list:
    """Cached MONAI intensity transforms for ``modality`` (built once; re-seeded per image)."""
    if modality not in _MONAI_CACHE:
        from monai.transforms import RandBiasField, RandGaussianNoise, RandRicianNoise
        steps = []
        if modality in ("mri", "cxr"):
            steps.append(RandBiasField(degree=3, coeff_range=(0.05, 0.2), prob=1.0))
        if modality == "mri":
            steps.append(RandRicianNoise(prob=1.0, std=0.03, relative=False, sample_std=True))
        else:
            steps.append(RandGaussianNoise(prob=1.0, std={"ct": 0.03, "cxr": 0.02, "us": 0.03}[modality]))
        _MONAI_CACHE[modality] = steps
    return _MONAI_CACHE[modality]


def elastic(img: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator, magnitude: float = 1.5,
            cells: int = 4) -> tuple[np.ndarray, list[np.ndarray]]:
    """Smooth random elastic deformation of an image (linear) and its masks (nearest) together.

    Same model as MONAI's ``Rand2DElastic`` (a coarse random displacement grid, upsampled
    smoothly), written with SciPy because MONAI's version costs ~80 ms per 64 px image.
    """
    from scipy.ndimage import map_coordinates, zoom
    s = img.shape[0]
    disp = [zoom(rng.normal(0, magnitude, (cells, cells)), s / cells, order=3)[:s, :s] for _ in range(2)]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    coords = [yy + disp[0], xx + disp[1]]
    im = map_coordinates(img, coords, order=1, mode="nearest")
    out = [map_coordinates(m.astype(np.uint8), coords, order=0, mode="nearest").astype(np.uint8) for m in masks]
    return im.astype(np.float32), out


def _realism(modality: str, img: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator):
    """Elastic deformation (image + masks), blur, then MONAI bias field and noise."""
    from scipy.ndimage import gaussian_filter
    img, masks = elastic(img, masks, rng)
    img = gaussian_filter(img, rng.uniform(0.3, 0.8))
    im = img[None]
    seed = int(rng.integers(2 ** 31))
    for k, t in enumerate(_monai_steps(modality)):
        t.set_random_state(seed + 17 * k)
        im = np.asarray(t(im))
    return np.clip(im[0], 0, 1).astype(np.float32), masks


def render_phantom(modality: str, finding: str | None, rng: np.random.Generator, size: int = 64,
                   realism: bool = True, with_parts: bool = False, twin: bool = False):
    """One phantom → ``(image float32 [S, S] in [0, 1], mask uint8 [S, S], PhantomCase)``.

    ``with_parts``: also return ``{structure name: uint8 mask}`` of the normal anatomy
    (lungs, heart, brain, ventricles, ...), deformed with the image (SAM training targets).
    ``twin``: also return (last) the counterfactual normal image — same anatomy,
    deformation and noise, no finding.
    """
    if modality not in _RENDER:
        from medkt.errors import UnknownNameError
        raise UnknownNameError("phantom modality", modality, MODALITIES)
    if finding is not None and finding not in FINDINGS[modality]:
        from medkt.errors import UnknownNameError
        raise UnknownNameError(f"{modality} finding", finding, FINDINGS[modality])
    seeds = [int(v) for v in rng.integers(2 ** 31, size=3)]  # anatomy, finding, realism

    def draw(f):
        img, mask, case, parts = _RENDER[modality](np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1]),
                                                   size, f)
        img = np.clip(img, 0, 1).astype(np.float32)
        names = list(parts)
        masks = [mask.astype(np.uint8)] + [parts[n].astype(np.uint8) for n in names]
        if realism:
            img, masks = _realism(modality, img, masks, np.random.default_rng(seeds[2]))
        return img, masks, case, names

    img, masks, case, names = draw(finding)
    out = [img, masks[0], case]
    if with_parts:
        out.append(dict(zip(names, masks[1:])))
    if twin:
        out.append(draw(None)[0])
    return tuple(out)


def phantom_set(modality: str, finding: str | None, n: int, seed: int, size: int = 64, with_parts: bool = False):
    """``n`` phantoms: images ``[n, S, S]`` uint8, masks ``[n, S, S]`` uint8, cases (+ parts list)."""
    rng = np.random.default_rng(seed)
    ims, masks, cases, parts = [], [], [], []
    for _ in range(n):
        out = render_phantom(modality, finding, rng, size, with_parts=with_parts)
        ims.append((out[0] * 255).round().astype(np.uint8))
        masks.append(out[1])
        cases.append(out[2])
        if with_parts:
            parts.append(out[3])
    if with_parts:
        return np.stack(ims), np.stack(masks), cases, parts
    return np.stack(ims), np.stack(masks), cases


def counterfactual_set(modality: str, finding: str, n: int, seed: int, size: int = 64):
    """``n`` counterfactual pairs: images ``[n, S, S]`` uint8 with the finding, their normal twins
    ``[n, S, S]`` uint8 (same anatomy and noise, no finding), masks ``[n, S, S]`` and cases."""
    rng = np.random.default_rng(seed)
    ims, twins, masks, cases = [], [], [], []
    for _ in range(n):
        img, mask, case, normal = render_phantom(modality, finding, rng, size, twin=True)
        ims.append((img * 255).round().astype(np.uint8))
        twins.append((normal * 255).round().astype(np.uint8))
        masks.append(mask)
        cases.append(case)
    return np.stack(ims), np.stack(twins), np.stack(masks), cases

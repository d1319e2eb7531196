"""Find the paper ECG in a photo and propose a flat, upright page: rotation and perspective.

A phone photo of a printout is tilted and seen at an angle. :func:`propose_straightening` finds
the page and its grid and returns a :class:`Proposal`: the four page corners in the photo's
pixels (top-left, top-right, bottom-right, bottom-left of the *upright* page), the size of the
flat page (grid squares square), the fine angle, which evidence it used and how sure it is.
Nothing is changed: :func:`apply_straightening` warps the photo to the flat page when the user
accepts, and :func:`pulse_app.intake.edit_image` replays it from a stored edit
(``{"corners": ..., "page_size": ..., "rotate90": ..., "angle_deg": ..., "crop": ...}``).

How (all on a copy at most :data:`WORK_SIDE_PX` pixels a side, so a 12-megapixel photo costs
about what a 1-megapixel one does):

1. *Lines.* Thin dark lines are the black-hat of the darkest colour channel; ink (dark in every
   channel) is taken out to leave the printed grid. Local directions come from the structure
   tensor; folded modulo 90 degrees they give the page's tilt.
2. *Grid.* In tiles, the directions of the two line families point at their vanishing points;
   each point is then refined from projections (bands of the grid turned until their lines
   pile up sharpest), and the two give the perspective. A grid is accepted when the rectified
   map repeats along both axes with the same period (every harmonic of a thin-line comb).
3. *Page edges.* With thin lines closed away, the paper is a bright region; scanning inwards
   from each side finds the first sharp step up from background, fitted as a straight line
   (RANSAC). Four edges give the corners directly; an edge seen over a short stretch takes its
   direction from the grid; a side out of view is closed with the grid's (or the tilt's) frame
   around the whole picture, so nothing in the photo is cut off. A page found small in the
   picture is looked at again, cropped from the original.
4. *Trace baselines.* Without a grid, long ink curves (ECG traces, not lines of text or
   specks) give the tilt, where their rows pile up sharpest; with no grid and no traces the
   photo is not taken for an ECG (method ``"none"``).

>>> from pulse_app.ecg.simulate import ecg_simulate
>>> from pulse_app.ecg.render import render_ecg
>>> page = render_ecg(ecg_simulate(seed=1), distort={"rotation": {"angle_deg": 12}})
>>> proposal = propose_straightening(page.image)     # the page was turned 12 degrees to the left
>>> proposal.method, round(proposal.angle_deg)       # so it is levelled by 12 to the right
('grid', -12)
>>> flat = apply_straightening(page.image, proposal.corners, proposal.page_size)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from pulse_app.errors import ImageRejected
from pulse_app.intake import MIN_SIDE_PX

#: Long side of the analysis copy, in pixels.
WORK_SIDE_PX = 1024
#: Methods a proposal can come from, best evidence first.
METHODS = ("grid", "page edges", "trace baselines", "none")

_TILE_PX = 96              # orientation tiles (analysis pixels)
_FAMILY_WINDOW_DEG = 14.0  # gradient directions counted for a line family, either side
_TENSOR_SIGMA_PX = 2.0     # structure tensor smoothing
_GRADIENT_FLOOR_PCT = 70   # line directions are read from the strongest 30 % of the pixels
_INK_DARKNESS = 0.35       # ink: this much darker than the paper around it, in every channel
_TRACE_MAX_FILL = 0.5      # a trace's ink fills at most this share of its box (text: more)
_TRACE_MIN_SOLID = 0.15    # ... and at least this share of it is ink before bridging gaps
_STRAIGHT_SHARE = 0.002    # corners this close to the picture's (share of its side): straight
_MAX_PAGE_GROWTH = 4.0     # a flat page may have at most this many times the photo's pixels
_ZOOM_MAX_SHARE = 0.6      # paper taking less of the picture than this is looked at closer
_EDGE_WINDOW_PX = 8        # mean brightness window on either side of a page edge
_EDGE_STEP_MIN = 10.0      # a page edge: at least this many grey levels brighter inside ...
_EDGE_STEP_REL = 0.10      # ... and this share of the inside brightness ...
_EDGE_SHARPNESS = 0.5      # ... most of it within a few pixels (shadows are soft)
_EDGE_MIN_FREE_SPAN = 0.3  # an edge seen over less of the picture takes the frame's direction
_EDGE_SCAN_SHARE = 0.75    # edges are looked for this far into the picture from each side
_GRID_MIN_COMB = 1.5      # a grid: its harmonics stand out this much (log power, mean)


@dataclass(frozen=True)
class Proposal:
    """A proposed straightening (nothing applied yet).

    ``corners``: ((x, y) x 4) in pixels of the original image: top-left, top-right, bottom-right,
    bottom-left of the upright page (may lie outside the image when the page does), or None.
    ``page_size``: (width, height) in pixels of the flat page, grid squares square.
    ``angle_deg``: the page's tilt as a fine rotation that levels it, counter-clockwise, as
    :func:`pulse_app.intake.edit_image` takes it. ``method``: one of :data:`METHODS`.
    ``confidence``: 0 (nothing) .. 1 (sure). ``message``: one plain sentence for the user.
    ``grid_period_px``: the grid's period on the flat page, in original pixels (usually its
    5 mm squares), when a grid was found.
    """

    corners: tuple[tuple[float, float], ...] | None
    page_size: tuple[int, int] | None
    angle_deg: float
    method: str
    confidence: float
    message: str
    grid_period_px: float | None = None
    details: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def found(self) -> bool:
        return self.method != "none"

    def edit(self) -> dict:
        """The accepted proposal as an edit dict for :func:`pulse_app.intake.edit_image`."""
        return {"corners": [list(c) for c in self.corners] if self.corners else None,
                "page_size": list(self.page_size) if self.page_size else None,
                "rotate90": 0, "angle_deg": 0.0, "crop": None}


# -- the analysis ---------------------------------------------------------------------------------

@dataclass
class PageAnalysis:
    """What one look at a photo found (analysis pixels unless named otherwise); the readability
    check reuses it."""

    scale: float                    # original pixels per analysis pixel
    size: tuple[int, int]           # (width, height) of the original image
    rgb: np.ndarray                 # the analysis copy, H x W x 3 uint8
    gray: np.ndarray                # its luma
    lines: np.ndarray               # thin dark lines (black-hat of the darkest channel), uint8
    ink: np.ndarray | None = None   # ink (much darker than the paper in every channel), 0/1
    tilt_deg: float = 0.0           # tilt of the horizontal lines (image y down: clockwise > 0)
    coherence: float = 0.0          # 0..1, how strongly line directions agree (mod 90 degrees)
    frame: np.ndarray | None = None  # analysis px -> rectified frame (3x3), grid or tilt only
    grid: bool = False
    grid_strength: float = 0.0
    traces: int = 0                 # long ink curves (ECG traces) seen, incl. joined ones
    ink_share: float = 0.0          # share of the picture that is ink
    edges: dict = field(default_factory=dict)   # side -> (a, b, c) line, analysis px
    quad: np.ndarray | None = None  # 4 x 2 corners, analysis px
    vanishing_points: tuple | None = None
    details: dict = field(default_factory=dict)   # intermediate results, for the curious


def _work_copy(image, side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The analysis copy (RGB uint8, long side at most ``side``), its scale (original pixels
    per analysis pixel) and the original size. Big PIL images are first reduced by a whole
    factor in PIL (a box filter in C: no full-size array is made), then area-resampled."""
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        w, h = image.size
        factor = int(max(w, h) / side)
        if factor >= 2:
            image = image.reduce(factor)
        arr = np.asarray(image)
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        arr = np.ascontiguousarray(arr[:, :, :3]).astype(np.uint8, copy=False)
        h, w = arr.shape[:2]
    ah, aw = arr.shape[:2]
    if max(ah, aw) > side:
        s = side / max(ah, aw)
        arr = cv2.resize(arr, (max(1, round(aw * s)), max(1, round(ah * s))),
                         interpolation=cv2.INTER_AREA)
    return arr, w / arr.shape[1], (int(w), int(h))


def analyse_page(image, *, work_side: int = WORK_SIDE_PX, zoom: bool = True) -> PageAnalysis:
    """Look at a photo once: lines, tilt, grid, traces, page edges, corners (see the module
    docstring). A page too small in the picture to show its grid or tracing at the analysis
    scale is looked at again, cropped from the original (``zoom``); the closer look is kept in
    ``details["zoom"]`` as (analysis, (left, top) of the crop in original pixels)."""
    rgb, scale, size = _work_copy(image, work_side)
    darkest = rgb.min(axis=2)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))
    lines = cv2.morphologyEx(darkest, cv2.MORPH_BLACKHAT, kernel)
    pa = PageAnalysis(scale=scale, size=size, rgb=rgb, gray=gray, lines=lines)
    pa.ink = _ink_mask(pa)
    _orientation(pa)
    _grid(pa)
    _traces(pa)
    if not pa.grid and pa.traces:
        pa.tilt_deg = _baseline_tilt(pa.ink, _tilt_all(pa))
    _page_edges(pa)
    _corners(pa)
    if pa.quad is None and zoom and len(pa.edges) == 4:
        _zoom_in(pa, image, work_side)
    return pa


def _zoom_in(pa: PageAnalysis, image, work_side: int) -> None:
    """Analyse the paper found by its four edges again, cropped from the original."""
    quad = _intersections(pa.edges)
    if quad is None or not _is_convex(quad):
        return
    h, w = pa.gray.shape
    if cv2.contourArea(quad.astype(np.float32)) > _ZOOM_MAX_SHARE * w * h:
        return
    s = pa.scale
    lo = np.clip((quad.min(0) - 0.03 * max(w, h)) * s, 0, None).astype(int)
    hi = np.minimum((quad.max(0) + 0.03 * max(w, h)) * s, pa.size).astype(int)
    if np.any(hi - lo < MIN_SIDE_PX):
        return
    if isinstance(image, Image.Image):
        crop = image.crop((int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])))
    else:
        crop = np.asarray(image)[lo[1]:hi[1], lo[0]:hi[0]]
    inner = analyse_page(crop, work_side=work_side, zoom=False)
    if inner.quad is None:
        return
    pa.details["zoom"] = (inner, (int(lo[0]), int(lo[1])))
    on_original = (inner.quad + 0.5) * inner.scale - 0.5 + lo
    pa.quad = (on_original + 0.5) / s - 0.5
    pa.grid, pa.traces, pa.tilt_deg = inner.grid, inner.traces, inner.tilt_deg


def _intersections(edges: dict) -> np.ndarray | None:
    """Corners (TL, TR, BR, BL) where four edge lines meet, or None."""
    quad = []
    for a, b in (("top", "left"), ("top", "right"), ("bottom", "right"), ("bottom", "left")):
        p = np.cross(edges[a], edges[b])
        if abs(p[2]) < 1e-12:
            return None
        quad.append(p[:2] / p[2])
    return np.array(quad)


# -- 1. line directions ------------------------------------------------------------------------

def _gradients(lines: np.ndarray):
    """Local line directions of a line map: gradient direction (rad, modulo pi) and strength
    from the structure tensor, over its strongest pixels (:data:`_GRADIENT_FLOOR_PCT`).

    The strength is the tensor's eigenvalue gap, so speckle (paper texture, sensor noise,
    JPEG blocks), whose gradients point every way, weighs little; the map is smoothed before
    and the tensor after taking gradients: thin lines at the analysis scale are staircases,
    and raw gradients pull every direction towards the pixel axes by degrees."""
    smooth = cv2.GaussianBlur(lines.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Scharr(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Scharr(smooth, cv2.CV_32F, 0, 1)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), _TENSOR_SIGMA_PX)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), _TENSOR_SIGMA_PX)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), _TENSOR_SIGMA_PX)
    gap = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2)
    floor = max(1e-3, float(np.percentile(gap[::3, ::3], _GRADIENT_FLOOR_PCT)))
    ys, xs = np.nonzero(gap > floor)
    alpha = (np.arctan2(2 * jxy[ys, xs], jxx[ys, xs] - jyy[ys, xs]) / 2) % np.pi
    return xs.astype(np.float32), ys.astype(np.float32), alpha.astype(np.float64), \
        np.sqrt(gap[ys, xs]).astype(np.float64)


def _dominant_direction(alpha: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """(tilt in degrees in (-45, 45], coherence 0..1) of directions folded modulo 90 degrees:
    horizontal and vertical lines of a page vote together."""
    if len(weight) < 200:
        return 0.0, 0.0
    z = np.sum(weight * np.exp(4j * alpha))
    return float(np.degrees(np.angle(z) / 4)), float(abs(z) / weight.sum())


def _orientation(pa: PageAnalysis) -> None:
    """The tilt from the grid's lines (ink taken out: its curves bias the directions)."""
    xs, ys, alpha, weight = _gradients(_grid_lines(pa))
    pa.details.update(xs=xs, ys=ys, alpha=alpha, weight=weight)
    pa.tilt_deg, pa.coherence = _dominant_direction(alpha, weight)


def _tilt_all(pa: PageAnalysis) -> float:
    """The tilt (degrees) from every line, ink included: for pages without a grid."""
    if "tilt_all" not in pa.details:
        _, _, alpha, weight = _gradients(pa.lines)
        pa.details["tilt_all"], pa.details["coherence_all"] = _dominant_direction(alpha, weight)
    return pa.details["tilt_all"]


def _baseline_tilt(ink: np.ndarray, start_deg: float) -> float:
    """Tilt (degrees) at which the ink's row profile is sharpest: ECG traces spend most of their
    length near their baselines, so levelled rows pile their ink into a few rows."""
    ys, xs = np.nonzero(ink)
    if len(xs) < 200:
        return start_deg
    if len(xs) > 60000:
        keep = np.random.default_rng(0).choice(len(xs), 60000, replace=False)
        xs, ys = xs[keep], ys[keep]
    xs = xs - xs.mean()
    ys = ys - ys.mean()

    def sharpness(deg: float) -> float:
        t = np.radians(deg)
        rows = np.round(ys * np.cos(t) - xs * np.sin(t)).astype(np.int64)
        counts = np.bincount(rows - rows.min())
        return float(np.dot(counts, counts))

    best = start_deg
    for span, step in ((4.0, 0.25), (0.3, 0.025)):
        angles = best + np.arange(-span, span + step / 2, step)
        best = float(angles[int(np.argmax([sharpness(a) for a in angles]))])
    return best


def _wrap_pi(a):
    """Angle differences folded into (-pi/2, pi/2] (directions modulo pi)."""
    return (a + np.pi / 2) % np.pi - np.pi / 2


def _family_tiles(pa: PageAnalysis, centre: np.ndarray | float, tile_of: np.ndarray, n_tiles: int,
                  window: float):
    """Per tile: mean direction (rad, mod pi), weight, weighted position of one line family."""
    d = pa.details
    diff = _wrap_pi(d["alpha"] - (centre[tile_of] if np.ndim(centre) else centre))
    keep = np.abs(diff) < window
    t, w = tile_of[keep], d["weight"][keep]
    a2 = 2.0 * d["alpha"][keep]
    sw = np.bincount(t, w, n_tiles)
    sc = np.bincount(t, w * np.cos(a2), n_tiles)
    ss = np.bincount(t, w * np.sin(a2), n_tiles)
    sx = np.bincount(t, w * d["xs"][keep], n_tiles)
    sy = np.bincount(t, w * d["ys"][keep], n_tiles)
    with np.errstate(invalid="ignore", divide="ignore"):
        direction = (np.arctan2(ss, sc) / 2) % np.pi
        coherence = np.hypot(sc, ss) / sw
        pos = np.stack([sx / sw, sy / sw], 1)
    return direction, np.nan_to_num(sw * coherence ** 2), pos


def _vanishing_point(pos: np.ndarray, normal_angle: np.ndarray, weight: np.ndarray):
    """Homogeneous point all tile lines point at (least squares on the angle errors, robust)."""
    n = np.stack([np.cos(normal_angle), np.sin(normal_angle)], 1)
    lines = np.concatenate([n, -(n * pos).sum(1, keepdims=True)], 1)
    w = weight.copy()
    v = np.array([0.0, 0.0, 1.0])
    for _ in range(10):
        m = (lines * w[:, None]).T @ lines
        v = np.linalg.eigh(m)[1][:, 0]
        towards = v[:2][None, :] - v[2] * pos
        dist = np.linalg.norm(towards, axis=1) + 1e-12
        resid = (lines @ v) / dist
        med = np.sqrt(np.sum(weight * resid ** 2) / weight.sum())
        s = max(np.radians(0.15), med)
        w = weight / dist ** 2 / (1.0 + (resid / (2.5 * s)) ** 2)
    return v


def _norm_matrix(shape) -> np.ndarray:
    """Analysis pixels -> coordinates centred on the image, half the long side = 1."""
    h, w = shape[:2]
    s = 2.0 / max(h, w)
    return np.array([[s, 0, -s * (w - 1) / 2], [0, s, -s * (h - 1) / 2], [0, 0, 1.0]])


def _rotation_frame(shape, tilt_deg: float) -> np.ndarray:
    """Analysis pixels -> the picture turned to level the tilt (about its centre)."""
    h, w = shape[:2]
    m = np.eye(3)
    m[:2] = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), tilt_deg, 1.0)
    return m


def _grid_frame(pa: PageAnalysis):
    """The rectifying homography from the two families' vanishing points, or None."""
    d = pa.details
    h, w = pa.lines.shape
    ntx, nty = max(2, round(w / _TILE_PX)), max(2, round(h / _TILE_PX))
    tx = np.minimum((d["xs"] * ntx / w).astype(np.int64), ntx - 1)
    ty = np.minimum((d["ys"] * nty / h).astype(np.int64), nty - 1)
    tile_of = ty * ntx + tx
    n_tiles = ntx * nty
    t = np.radians(pa.tilt_deg)
    norm = _norm_matrix(pa.lines.shape)
    points = []
    for centre in (t + np.pi / 2, t):            # gradient direction of horizontal, vertical lines
        direction, weight, pos = _family_tiles(pa, centre % np.pi, tile_of, n_tiles,
                                               np.radians(_FAMILY_WINDOW_DEG))
        good = weight > 0
        if good.sum() < 6:
            return None
        # second pass: a narrower window around each tile's own direction
        centre2 = np.where(good, direction, centre % np.pi)
        direction, weight, pos = _family_tiles(pa, centre2, tile_of, n_tiles, np.radians(5.0))
        good = weight > 0.05 * np.max(weight)
        if good.sum() < 6:
            return None
        p = (np.c_[pos[good], np.ones(good.sum())] @ norm.T)[:, :2]
        points.append(_vanishing_point(p, direction[good], weight[good]))
    grid_pts = _grid_points(pa, norm)
    if grid_pts is not None:
        px = 2.0 / max(h, w)                      # one analysis pixel, normalised
        points = [_refine_vanishing_point(*grid_pts, v, px) for v in points]
    vh, vv = points
    horizon = np.cross(vh, vv)
    corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]]) * \
        np.array([w / max(h, w), h / max(h, w), 1])
    if abs(horizon[2]) < 1e-12:
        return None
    hp = np.eye(3)
    hp[2, :2] = horizon[:2] / horizon[2]
    if np.min(corners @ hp[2]) < 0.2:             # the horizon would cross (or near) the picture
        return None
    dh, dv = (hp @ vh)[:2], (hp @ vv)[:2]
    dh = dh / np.linalg.norm(dh) * (1 if dh[0] > 0 else -1)
    dv = dv / np.linalg.norm(dv) * (1 if dv[1] > 0 else -1)
    basis = np.column_stack([dh, dv])
    if abs(np.linalg.det(basis)) < 0.5:          # families far from perpendicular
        return None
    a = np.eye(3)
    a[:2, :2] = np.linalg.inv(basis)
    pa.vanishing_points = (vh, vv)
    return a @ hp @ norm


def _grid_points(pa: PageAnalysis, norm: np.ndarray, most: int = 60000):
    """(positions normalised, weights) of the grid map's stronger pixels, at most ``most``."""
    g = _grid_lines(pa)
    top = float(np.percentile(g[::2, ::2], 99.5))
    ys, xs = np.nonzero(g >= max(4.0, 0.3 * top))
    if len(xs) < 500:
        return None
    if len(xs) > most:
        keep = np.random.default_rng(0).choice(len(xs), most, replace=False)
        xs, ys = xs[keep], ys[keep]
    pts = np.c_[xs, ys, np.ones(len(xs))] @ norm.T
    return pts[:, :2], g[ys, xs].astype(np.float64)


def _sharpness(pts, wts, angle: float, px: float) -> float:
    """How sharply lines of direction ``angle`` (rad) pile up in a profile across them."""
    across = (pts[:, 1] * np.cos(angle) - pts[:, 0] * np.sin(angle)) / px
    low = np.floor(across)
    frac = across - low
    bins = (low - low.min()).astype(np.int64)
    counts = np.bincount(bins, wts * (1 - frac), len(bins) and bins.max() + 2) + \
        np.bincount(bins + 1, wts * frac, len(bins) and bins.max() + 2)
    return float(np.dot(counts, counts))


def _best_angle(pts, wts, guess: float, px: float) -> float:
    """The line direction (rad) near ``guess`` whose profile is sharpest (coarse to fine on a
    sample, then all points; parabolic peak)."""
    best = guess
    few = slice(None, None, max(1, len(pts) // 8000))
    for span, step, sub in ((np.radians(1.2), np.radians(0.15), few),
                            (np.radians(0.15), np.radians(0.015), slice(None))):
        angles = best + np.arange(-span, span + step / 2, step)
        scores = np.array([_sharpness(pts[sub], wts[sub], a, px) for a in angles])
        i = int(np.argmax(scores))
        best = float(angles[i])
        if 0 < i < len(angles) - 1:
            a, b, c = scores[i - 1:i + 2]
            if a - 2 * b + c < 0:
                best += 0.5 * (a - c) / (a - 2 * b + c) * step
    return best


def _refine_vanishing_point(pts, wts, v: np.ndarray, px: float, bands: int = 4) -> np.ndarray:
    """A family's vanishing point from projections: the grid cut into bands across its lines,
    each band's direction found where its profile is sharpest (immune to the pixel-staircase
    and speckle that bias gradient directions), the band lines intersected."""
    def direction_at(p):
        d = v[:2] - v[2] * p
        return math.atan2(d[1], d[0])

    centre = np.average(pts, axis=0, weights=wts)
    phi = direction_at(centre)
    normal = np.array([-math.sin(phi), math.cos(phi)])
    across = pts @ normal
    edges = np.quantile(across, np.linspace(0, 1, bands + 1))
    lines, weights = [], []
    for i in range(bands):
        inside = (across >= edges[i]) & (across <= edges[i + 1])
        if inside.sum() < 300:
            continue
        p, w = pts[inside], wts[inside]
        c = np.average(p, axis=0, weights=w)
        angle = _best_angle(p, w, direction_at(c), px)
        n = np.array([-math.sin(angle), math.cos(angle)])
        lines.append([n[0], n[1], -float(n @ c)])
        weights.append(w.sum())
    if len(lines) < 2:
        return v
    lines, weights = np.array(lines), np.array(weights)
    m = (lines * weights[:, None]).T @ lines
    return np.linalg.eigh(m)[1][:, 0]


def _fit_frame_to(frame: np.ndarray, shape, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Scale/shift a frame so the whole picture lands in a canvas of about ``side`` pixels."""
    h, w = shape[:2]
    quad = _apply(frame, np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float))
    lo, hi = quad.min(0), quad.max(0)
    s = side / max(hi - lo)
    m = np.array([[s, 0, -s * lo[0]], [0, s, -s * lo[1]], [0, 0, 1]])
    size = np.ceil((hi - lo) * s).astype(int) + 1
    return m @ frame, (int(size[0]), int(size[1]))


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ m.T
    return p[:, :2] / p[:, 2:]


# -- 2. the grid ----------------------------------------------------------------------------------

_LOG_BINS = 512
_PERIOD_PX = (2.5, 64.0)          # grid periods looked for, analysis pixels


def _whitened_spectrum(bands: list[np.ndarray]) -> np.ndarray | None:
    """Mean power spectrum of 1-D profiles on a log-frequency axis (periods :data:`_PERIOD_PX`),
    in log units above its running median: peaks stand out by how much stronger they are than
    their neighbours (about 0 where there is nothing)."""
    lo, hi = _PERIOD_PX
    bands = [b for b in bands if len(b) >= 64]
    if not bands:
        return None
    n = max(len(b) for b in bands)
    nfft = 1 << (int(n * 4) - 1).bit_length()
    freq = np.fft.rfftfreq(nfft)
    power = np.zeros(len(freq))
    for b in bands:
        trend = cv2.blur(b.reshape(1, -1).astype(np.float32), (int(min(hi, len(b) / 4)) | 1, 1))
        x = (b - trend.ravel()) * np.hanning(len(b))
        power += np.abs(np.fft.rfft(x, nfft)) ** 2
    log_f = _log_axis()
    log_p = np.log(np.interp(np.exp(log_f), freq, power / len(bands)) + 1e-9)
    from scipy.ndimage import median_filter

    white = log_p - median_filter(log_p, size=61, mode="nearest")
    white[np.exp(log_f) < 3.0 / n] = 0.0         # fewer than 3 periods in the profile
    return np.maximum(white, 0.0)


def _log_axis() -> np.ndarray:
    """Log frequency (cycles per px) of each bin of a whitened spectrum."""
    lo, hi = _PERIOD_PX
    return np.linspace(np.log(1 / hi), np.log(1 / lo), _LOG_BINS)


def _comb(white: np.ndarray, harmonics: int = 6, min_harmonics: int = 3) -> np.ndarray:
    """Per period of the log axis: the mean height of its harmonics in a whitened spectrum (a
    printed grid is a comb of thin lines, so every harmonic of its period stands out)."""
    log_f = _log_axis()
    total = np.zeros(len(log_f))
    count = np.zeros(len(log_f))
    for k in range(1, harmonics + 1):
        at = log_f + np.log(k)
        inside = at <= log_f[-1]
        total += np.where(inside, np.interp(at, log_f, white), 0.0)
        count += inside
    return np.where(count >= min_harmonics, total / np.maximum(count, 1), 0.0)


def _grid_period(wx: np.ndarray, wy: np.ndarray, max_ratio: float = 1.43):
    """(period along x, along y, score): the grid period seen on both axes (squares are nearly
    square in a rectified frame, so both axes must agree within ``max_ratio``)."""
    sx, sy = _comb(wx), _comb(wy)
    periods = 1.0 / np.exp(_log_axis())
    step = np.log(_PERIOD_PX[1] / _PERIOD_PX[0]) / (_LOG_BINS - 1)
    reach = int(np.ceil(np.log(max_ratio) / step))
    best = (None, None, 0.0)
    for i in {int(np.argmax(sx)), int(np.argmax(sy))}:
        lo, hi = max(0, i - reach), min(_LOG_BINS, i + reach + 1)
        ix, iy = lo + int(np.argmax(sx[lo:hi])), lo + int(np.argmax(sy[lo:hi]))
        score = float(min(sx[ix], sy[iy]))
        if score > best[2] and abs(ix - iy) <= reach:
            best = (float(periods[ix]), float(periods[iy]), score)
    return best


def _period_ratio(wx: np.ndarray, wy: np.ndarray, period: float, max_ratio: float = 1.3):
    """period_x / period_y: the scale that best overlays the two spectra's harmonics of a grid
    of about ``period`` px (every harmonic votes, so the axes cannot pick different ones)."""
    step = np.log(_PERIOD_PX[1] / _PERIOD_PX[0]) / (_LOG_BINS - 1)
    keep = _log_axis() >= np.log(0.75 / period)
    wx, wy = wx * keep, wy * keep
    kmax = int(np.ceil(np.log(max_ratio) / step))
    shifts = np.arange(-kmax, kmax + 1)
    score = np.array([np.dot(wx[max(0, k):_LOG_BINS + min(0, k)],
                             wy[max(0, -k):_LOG_BINS - max(0, k)]) for k in shifts])
    i = int(np.argmax(score))
    k = float(shifts[i])
    if 0 < i < len(score) - 1:
        a, b, c = score[i - 1:i + 2]
        if a - 2 * b + c < 0:
            k += 0.5 * (a - c) / (a - 2 * b + c)
    # wx[i + k] overlays wy[i]: f_x = f_y exp(k step), so period_x / period_y = exp(-k step)
    return float(np.exp(-k * step))


_BAND_PX = 96


def _band_profiles(image: np.ndarray, valid: np.ndarray, axis: int) -> list[np.ndarray]:
    """Median of ``image`` across bands of :data:`_BAND_PX` rows (axis 0: a profile along x per
    band) or columns (axis 1): grid lines run through every band, traces and text do not."""
    if axis == 1:
        image, valid = image.T, valid.T
    out = []
    for y0 in range(0, image.shape[0] - _BAND_PX // 2, _BAND_PX):
        band, ok = image[y0:y0 + _BAND_PX], valid[y0:y0 + _BAND_PX]
        cols = ok.all(0)
        if cols.sum() < 64:
            continue
        x0, x1 = np.flatnonzero(cols)[[0, -1]]
        out.append(np.median(band[:, x0:x1 + 1], axis=0).astype(np.float32))
    return out


def _grid_spectra(lines: np.ndarray, frame: np.ndarray, size: tuple[int, int]):
    """Whitened spectra of ``lines`` warped by ``frame``, along x and along y."""
    warped = cv2.warpPerspective(lines, frame, size, flags=cv2.INTER_LINEAR, borderValue=0)
    valid = cv2.warpPerspective(np.ones_like(lines), frame, size, flags=cv2.INTER_NEAREST,
                                borderValue=0)
    valid = cv2.erode(valid, np.ones((5, 5), np.uint8)) > 0
    return (_whitened_spectrum(_band_profiles(warped, valid, 0)),
            _whitened_spectrum(_band_profiles(warped, valid, 1)))


def _grid_lines(pa: PageAnalysis) -> np.ndarray:
    """The line map without ink: what is left of it is mostly the printed grid."""
    if "grid_lines" not in pa.details:
        ink = cv2.dilate(pa.ink, np.ones((3, 3), np.uint8))
        pa.details["grid_lines"] = np.where(ink > 0, 0, pa.lines).astype(np.uint8)
    return pa.details["grid_lines"]


def _grid(pa: PageAnalysis) -> None:
    """The grid frame (perspective from the vanishing points, else the tilt alone) and whether
    the rectified map is a grid."""
    if pa.coherence < 0.05:
        return
    frame = _grid_frame(pa)
    pa.details["perspective"] = frame is not None
    if frame is None:
        frame = _rotation_frame(pa.lines.shape, pa.tilt_deg)
    pa.frame = frame
    fitted, size = _fit_frame_to(frame, pa.lines.shape, max(pa.lines.shape))
    wx, wy = _grid_spectra(_grid_lines(pa), fitted, size)
    if wx is None or wy is None:
        return
    px, py, score = _grid_period(wx, wy)
    pa.grid_strength = score
    pa.details["grid_period_px"] = (px, py)
    if px is not None and score > _GRID_MIN_COMB:
        pa.grid = True


# -- 3. traces --------------------------------------------------------------------------------

def _ink_mask(pa: PageAnalysis) -> np.ndarray:
    """Ink: much darker than the paper around it in every colour channel (grid lines are pale in
    their own colour, so the lightest channel drops them)."""
    lightest = pa.rgb.max(axis=2)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    paper = cv2.morphologyEx(lightest, cv2.MORPH_CLOSE, kernel).astype(np.float32)
    dark = (paper - lightest.astype(np.float32)) / np.maximum(paper, 1.0)
    return ((dark > _INK_DARKNESS) & (paper > 40)).astype(np.uint8)


def _traces(pa: PageAnalysis) -> None:
    """Count the long ink curves of the levelled picture (see the conditions below)."""
    ink = pa.ink
    pa.ink_share = float(ink.mean())
    tilt = pa.tilt_deg if pa.grid else _tilt_all(pa)
    frame = _rotation_frame(ink.shape, tilt)
    fitted, size = _fit_frame_to(frame, ink.shape, max(ink.shape))
    turned = cv2.warpPerspective(ink, fitted, size, flags=cv2.INTER_NEAREST, borderValue=0)
    joined = cv2.dilate(turned, np.ones((3, 7), np.uint8))    # bridge faint bits of a trace
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    if n <= 1:
        return
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    area = stats[1:, cv2.CC_STAT_AREA]
    own = np.bincount(labels[turned > 0], minlength=n)[1:]     # ink before the bridging
    # an ECG trace: one ink curve across a good part of the levelled picture, with ink in
    # nearly every column it spans, going up and down (a ruled line does not), thin in its
    # box (a line of text fills its box with letters), and mostly ink where it was bridged
    # (specks of noise joined up are mostly bridge)
    long = (w >= 0.25 * size[0]) & (area >= 0.8 * w) & (h >= 0.015 * size[1]) & \
        (area <= _TRACE_MAX_FILL * w * h) & (own >= _TRACE_MIN_SOLID * area)
    pa.traces = int(long.sum())


# -- 4. page edges --------------------------------------------------------------------------

def _ransac_line(pts: np.ndarray, rng: np.random.Generator, tol: float = 1.5, iters: int = 150):
    """(a, b, c) with a x + b y + c = 0, |(a, b)| = 1, and the inlier mask; None if too few."""
    n = len(pts)
    if n < 8:
        return None, None
    best, best_count = None, 0
    for _ in range(iters):
        i, j = rng.choice(n, 2, replace=False)
        d = pts[j] - pts[i]
        norm = np.hypot(*d)
        if norm < 1e-6:
            continue
        a, b = -d[1] / norm, d[0] / norm
        c = -(a * pts[i, 0] + b * pts[i, 1])
        inl = np.abs(pts @ np.array([a, b]) + c) < tol
        count = int(inl.sum())
        if count > best_count:
            best, best_count = inl, count
    if best is None:
        return None, None
    for _ in range(2):                                # total least squares on the inliers
        p = pts[best]
        mean = p.mean(0)
        _, _, vt = np.linalg.svd(p - mean, full_matrices=False)
        a, b = vt[1]
        c = -(a * mean[0] + b * mean[1])
        best = np.abs(pts @ np.array([a, b]) + c) < tol
        if best.sum() < 2:
            return None, None
    return np.array([a, b, c]), best


def _page_edges(pa: PageAnalysis) -> None:
    """Scan inwards from each side of the levelled picture for the first bright step."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    paper = cv2.morphologyEx(pa.gray, cv2.MORPH_CLOSE, kernel)
    paper = cv2.GaussianBlur(paper, (0, 0), 1.0)
    frame = _rotation_frame(paper.shape, pa.tilt_deg)
    fitted, size = _fit_frame_to(frame, paper.shape, max(paper.shape))
    g = cv2.warpPerspective(paper, fitted, size, flags=cv2.INTER_LINEAR).astype(np.float32)
    valid = cv2.warpPerspective(np.ones_like(paper), fitted, size, flags=cv2.INTER_NEAREST)
    inside_ref = float(np.percentile(g[::3, ::3][valid[::3, ::3] > 0], 90)) if valid.any() \
        else 255.0
    k, off = _EDGE_WINDOW_PX, _EDGE_WINDOW_PX // 2 + 2
    back = np.linalg.inv(fitted)
    rng = np.random.default_rng(0)
    pa.edges = {}
    for side in ("top", "bottom", "left", "right"):
        # turn the canvas so that the side is at the top, scanning down every column
        img, val = g, valid
        if side == "bottom":
            img, val = img[::-1], val[::-1]
        elif side == "left":
            img, val = img.T, val.T
        elif side == "right":
            img, val = img.T[::-1], val.T[::-1]
        rows, cols = img.shape
        lim = int(rows * _EDGE_SCAN_SHARE)          # how far in an edge may lie
        if lim <= 3 * off:
            continue
        part = np.ascontiguousarray(img[:lim + off + 3])
        mean = cv2.blur(part, (1, k))
        near = cv2.blur(part, (1, 3))
        ok = cv2.erode(np.ascontiguousarray(val[:lim + off + 3]),
                       np.ones((2 * (k + off) + 1, 1), np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        y = np.arange(off, lim)                    # rows scanned; arrays below align with y
        inner, step = mean[y + off], mean[y + off] - mean[y - off]
        short = cv2.dilate(np.ascontiguousarray(near[y + 2] - near[y - 2]),
                           np.ones((5, 1), np.uint8))
        need = np.maximum(_EDGE_STEP_MIN, _EDGE_STEP_REL * inner)
        hit = ok[y] & (step > need) & (inner > 0.45 * inside_ref) & \
            (short > _EDGE_SHARPNESS * step)
        has = hit.any(0)
        first = hit.argmax(0)
        xs = np.flatnonzero(has)
        # a page edge has background all the way out to the picture's border, not paper (a
        # dark band of print near a scanned page's border is no edge): sample the outside
        top = np.argmax(val[:lim, xs] > 0, axis=0)
        end = np.maximum(y[first[xs]] - off, top + 1)
        at = (top[:, None] + (end - top)[:, None] * np.linspace(0.05, 0.95, 9)[None, :])
        outside = part[at.astype(np.int64), xs[:, None]].mean(1)
        level = inner[first[xs], xs]
        xs = xs[outside < level - 0.7 * need[first[xs], xs]]
        if len(xs) < 10:
            continue
        first = first + off                        # back to rows of the turned canvas
        step_full = np.zeros_like(part)
        step_full[y] = step
        step = step_full
        # the strongest step just after the first hit
        ys = first[xs]
        window = np.clip(ys[:, None] + np.arange(0, 2 * off + 1)[None, :], 0, len(step) - 1)
        ys = window[np.arange(len(xs)), np.argmax(step[window, xs[:, None]], axis=1)] + 0.5
        if side == "top":
            pts = np.c_[xs, ys]
        elif side == "bottom":
            pts = np.c_[xs, size[1] - 1 - ys]
        elif side == "left":
            pts = np.c_[ys, xs]
        else:
            pts = np.c_[size[0] - 1 - ys, xs]
        line, inl = _ransac_line(pts.astype(float), rng)
        if line is None:
            continue
        span = np.ptp(xs[inl]) if inl is not None else 0
        along = size[0] if side in ("top", "bottom") else size[1]
        if inl.sum() < max(12, 0.04 * along) or span < 0.06 * along:
            continue
        horizontal = side in ("top", "bottom")
        if abs(line[1 if horizontal else 0]) < math.cos(math.radians(20)):
            continue
        pa.edges[side] = line @ fitted            # back to analysis pixels: l' = l F
        pa.details.setdefault("edge_points", {})[side] = _apply(back, pts[inl])


# -- 5. corners --------------------------------------------------------------------------------

def _line_through(p, q) -> np.ndarray:
    return np.cross([p[0], p[1], 1.0], [q[0], q[1], 1.0])


def _corners(pa: PageAnalysis) -> None:
    """Page corners: the found edges, closed by the frame around the whole picture."""
    if not (pa.grid or pa.traces >= 1):
        return
    frame = pa.frame if (pa.grid and pa.frame is not None) else \
        _rotation_frame(pa.lines.shape, pa.tilt_deg)
    h, w = pa.lines.shape
    img_quad = _apply(frame, np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float))
    lo, hi = img_quad.min(0), img_quad.max(0)
    frame_sides = {"top": np.array([0, 1.0, -lo[1]]), "bottom": np.array([0, 1.0, -hi[1]]),
                   "left": np.array([1.0, 0, -lo[0]]), "right": np.array([1.0, 0, -hi[0]])}
    sides = {}
    points = pa.details.get("edge_points", {})
    for side, line in frame_sides.items():
        if side not in pa.edges:
            sides[side] = line @ frame                 # out of view: around the whole picture
            continue
        # a short stretch of edge (a corner of the page cut off by the frame) gives its offset
        # well but its direction poorly: then the frame gives the direction
        p = _apply(frame, points[side])
        axis = 1 if side in ("top", "bottom") else 0
        span = np.ptp(points[side][:, 0] if axis else points[side][:, 1])
        if span < _EDGE_MIN_FREE_SPAN * max(h, w):
            line = line.copy()
            line[2] = -float(np.median(p[:, axis]))
            sides[side] = line @ frame
        else:
            sides[side] = pa.edges[side]
    quad = _intersections(sides)
    if quad is None or not _is_convex(quad):
        return
    pa.quad = quad


def _is_convex(quad: np.ndarray) -> bool:
    signs = []
    for i in range(4):
        a, b, c = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        signs.append(np.cross(b - a, c - b))
    signs = np.array(signs)
    return bool(np.all(signs > 0) or np.all(signs < 0))


# -- the proposal ----------------------------------------------------------------------------

def _flat_size(pa: PageAnalysis, quad: np.ndarray) -> tuple[float, float, float | None]:
    """(width, height) of the flat page in analysis px and the grid period there (or None).

    The width keeps the longer of top and bottom (no detail lost); the height follows the mean
    side lengths, then, with a grid, whatever makes its squares square."""
    top, bottom = np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])
    left, right = np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])
    width = max(top, bottom)
    height = (left + right) / (top + bottom) * width
    if not pa.grid:
        return width, height, None
    size = (max(8, int(round(width))), max(8, int(round(height))))
    m = cv2.getPerspectiveTransform(quad.astype(np.float32),
                                    np.float32([[0, 0], [size[0], 0], [size[0], size[1]],
                                                [0, size[1]]])).astype(np.float64)
    wx, wy = _grid_spectra(_grid_lines(pa), m, size)
    if wx is None or wy is None:
        return width, height, None
    px, py, score = _grid_period(wx, wy)
    if px is None:
        return width, height, None
    ratio = _period_ratio(wx, wy, max(px, py))    # period_x / period_y
    return width, height * ratio, px


def _message(method: str, angle: float, perspective: bool) -> str:
    if method == "none":
        return ("no ECG grid, tracing or page edge was found in the picture; photograph the "
                "whole page straight on, in good light")
    what = {"grid": "the ECG grid", "page edges": "the page edges",
            "trace baselines": "the tracing's baselines"}[method]
    if abs(angle) < 0.3 and not perspective:
        return f"found {what}: the page is already straight"
    turn = f"tilted {abs(angle):.1f} degrees" if abs(angle) >= 0.3 else "level"
    return f"found {what}: {turn}{', seen at an angle' if perspective else ''}"


def propose_straightening(image, *, work_side: int = WORK_SIDE_PX) -> Proposal:
    """Propose the four page corners (and flat size) that straighten a photographed ECG.

    ``image``: PIL image or H x W x 3 uint8 array (RGB). Nothing is changed; see
    :func:`apply_straightening`. Always returns a :class:`Proposal`; ``method == "none"`` with a
    plain ``message`` when no grid, tracing or page was found.
    """
    pa = analyse_page(image, work_side=work_side)
    return proposal_from(pa)


def proposal_from(pa: PageAnalysis) -> Proposal:
    """The :class:`Proposal` for an analysis already made by :func:`analyse_page`."""
    if "zoom" in pa.details:                        # the page was found in a closer look
        inner, (left, top) = pa.details["zoom"]
        p = proposal_from(inner)
        corners = tuple((x + left, y + top) for x, y in p.corners)
        return Proposal(corners, p.page_size, p.angle_deg, p.method, p.confidence,
                        p.message, p.grid_period_px, details={"analysis": pa})
    if pa.quad is None:
        return Proposal(None, None, 0.0, "none", 0.0, _message("none", 0.0, False),
                        details={"analysis": pa})
    quad = pa.quad
    method = "grid" if pa.grid else ("page edges" if len(pa.edges) == 4 else "trace baselines")
    width, height, period = _flat_size(pa, quad)
    s = pa.scale
    corners = np.array([((x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5) for x, y in quad])
    page_size = (int(round(width * s)) + 1, int(round(height * s)) + 1)
    w, h = pa.size
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    if np.abs(corners - frame).max() <= max(2.0, _STRAIGHT_SHARE * max(w, h)):
        corners, page_size = frame, (w, h)          # already straight: no resampling at all
    left_mid, right_mid = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
    angle = math.degrees(math.atan2(right_mid[1] - left_mid[1], right_mid[0] - left_mid[0]))
    m = cv2.getPerspectiveTransform(corners.astype(np.float32), np.float32(
        [[0, 0], [page_size[0], 0], list(page_size), [0, page_size[1]]]))
    perspective = float(np.hypot(m[2, 0], m[2, 1]) * max(page_size)) > 0.02
    return Proposal(tuple((float(x), float(y)) for x, y in corners), page_size,
                    round(angle, 2), method, round(_confidence(pa, method), 2),
                    _message(method, angle, perspective),
                    grid_period_px=float(period * s) if period else None,
                    details={"analysis": pa})


def _confidence(pa: PageAnalysis, method: str) -> float:
    """0..1: how much evidence the proposal rests on (a heuristic, not a probability)."""
    edges = len(pa.edges) / 4
    if method == "grid":
        return 0.55 + 0.35 * float(np.clip((pa.grid_strength - _GRID_MIN_COMB) / 3, 0, 1)) \
            + 0.1 * edges
    if method == "page edges":
        return 0.5 + 0.2 * min(pa.traces, 3) / 3
    return 0.3 + 0.1 * edges


def apply_straightening(image: Image.Image, corners, page_size=None, *,
                        fill=(255, 255, 255)) -> Image.Image:
    """Warp ``image`` so that ``corners`` (top-left, top-right, bottom-right, bottom-left, in
    its pixels) become a flat, upright page of ``page_size`` = (width, height) pixels (default:
    :func:`flat_size`). Outside the photo is filled with ``fill``.

    Raises :class:`~pulse_app.errors.ImageRejected` for corners that do not make a page (not
    four points, crossed or folded, too small a page, or one far larger than the photo).

    >>> img = Image.new("RGB", (400, 300), "white")
    >>> apply_straightening(img, [(0, 0), (399, 0), (399, 299), (0, 299)]).size
    (400, 300)
    """
    quad = _check_corners(corners)
    width, height = flat_size(quad) if page_size is None else (int(round(v)) for v in page_size)
    if min(width, height) < MIN_SIDE_PX:
        raise ImageRejected(f"the corners make a page of only {width} x {height} pixels",
                            hint=f"drag them apart: at least {MIN_SIDE_PX} px a side")
    limit = max(_MAX_PAGE_GROWTH * image.width * image.height, MIN_SIDE_PX ** 2)
    if width * height > limit:
        raise ImageRejected(f"the corners make a page of {width} x {height} pixels, far larger "
                            "than the photo", hint="drag the corners onto the page's corners")
    src = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    dst = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    out = cv2.warpPerspective(src, m, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(fill))
    return Image.fromarray(out)


def _check_corners(corners) -> np.ndarray:
    """Four corners as a 4 x 2 float array, in page order and convex, or ImageRejected."""
    try:
        quad = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    except (TypeError, ValueError) as error:
        raise ImageRejected("the page corners are not four (x, y) points",
                            hint="reset the straightening and try again") from error
    if not np.all(np.isfinite(quad)):
        raise ImageRejected("the page corners are not four (x, y) points",
                            hint="reset the straightening and try again")
    turns = [np.cross(quad[(i + 1) % 4] - quad[i], quad[(i + 2) % 4] - quad[(i + 1) % 4])
             for i in range(4)]
    if not all(t > 0 for t in turns):
        raise ImageRejected("the page corners cross or fold over",
                            hint="put them on the page's corners in order: top-left, top-right, "
                                 "bottom-right, bottom-left")
    return quad


def flat_size(corners) -> tuple[int, int]:
    """(width, height) in pixels of the flat page for four corners (pixel centres) when nothing
    better is known: the longer of each pair of opposite sides, so no detail is lost.

    >>> flat_size([(0, 0), (399, 0), (399, 299), (0, 299)])
    (400, 300)
    """
    q = np.asarray(corners, dtype=np.float64).reshape(4, 2)
    width = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
    height = max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))
    return int(round(width)) + 1, int(round(height)) + 1

"""Distortions of a rendered ECG page: old paper, folds, pen marks, phone photos, scans.

Each kind has a sampler (random parameters from a numpy Generator) and is applied in a fixed,
physical order: first what happens to the paper (grid missing at print time, yellowing, wrinkles,
creases, handwritten marks), then the camera (rotation, perspective, crop/padding as one warp;
shadows and uneven light), then the sensor and the file (blur, noise, JPEG). Every applied kind
and its parameters go into the sidecar, so an image can be reproduced and audited.

Folds are relief, not stains: wrinkles (short straight folds in random directions, crossing
into facets) and creases (long folds across the page, ridge or valley) are height fields; the
light on their slopes shades the paper, and the camera, looking at a slant, sees every point of
the sheet moved by its height (``lift_mm`` at the crest, along ``view_deg``), so the grid and
the traces bend where they cross a fold. One :class:`PageWarp` (folds, then the camera) moves
the pixels and the sidecar's boxes alike.

Modes: ``"none"``; ``"photo"`` (phone photo: rotation, perspective, shadow, colour cast, blur,
noise, JPEG); ``"phone"`` (a hand-held photo of the whole page: rotated up to
±:data:`PHONE_MAX_ROTATION_DEG`, perspective, zoomed out so the page fits the frame with
background around it, then the light and sensor effects of ``"photo"``); ``"all"`` (every
kind; grid removal keeps its p = 0.02); ``"mix"`` (the training mix of the PULSE paper: half
the pages clean, the other half each kind with :data:`PROBABILITIES`); or a dict
``{kind: params | True}``: listed kinds only, given parameters override sampled ones (``True`` =
all sampled).

Example:
    >>> rng = np.random.default_rng(0)
    >>> plan = plan_distortions({"rotation": {"angle_deg": 3.0}, "jpeg": True}, rng)
    >>> list(plan), plan["rotation"]["angle_deg"]
    (['rotation', 'jpeg'], 3.0)
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

#: Application order.
KINDS = ("grid_removal", "yellowing", "wrinkles", "creases", "marks",
         "rotation", "perspective", "crop_pad", "shadow", "blur", "noise", "jpeg")
GEOMETRIC = ("rotation", "perspective", "crop_pad")
PHOTO = ("rotation", "perspective", "yellowing", "shadow", "blur", "noise", "jpeg")
PHONE = ("rotation", "perspective", "crop_pad", "yellowing", "shadow", "blur", "noise", "jpeg")
#: Largest rotation of the "phone" mode, degrees either way (other modes: 6).
PHONE_MAX_ROTATION_DEG = 30.0
#: Probability of each kind on a distorted page of the training mix (grid removal: paper, 0.02).
PROBABILITIES = {"grid_removal": 0.02, "yellowing": 0.4, "wrinkles": 0.3, "creases": 0.25,
                 "marks": 0.15, "rotation": 0.6, "perspective": 0.35, "crop_pad": 0.3,
                 "shadow": 0.35, "blur": 0.35, "noise": 0.45, "jpeg": 0.5}
#: Share of clean pages in the training mix.
CLEAN_SHARE = 0.5
_BACKGROUNDS = ((58, 52, 48), (120, 96, 70), (200, 200, 196), (32, 34, 40), (150, 140, 125))
_LOWRES = 4   # light/paper maps are computed at 1/4 resolution, then resized


def _u(rng, lo, hi, nd=3):
    return round(float(rng.uniform(lo, hi)), nd)


def _background(rng):
    return list(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))])


def _sample(kind: str, rng: np.random.Generator) -> dict:
    """Random parameters of one kind (fractions of the image size unless units say otherwise)."""
    if kind == "grid_removal":
        return {}
    if kind == "yellowing":
        s = float(rng.uniform(0.05, 0.3))
        cast = rng.uniform(-0.04, 0.04, 3)
        return {"strength": round(s, 3),
                "rgb_gain": [round(1.0 + cast[0], 3), round(1.0 - 0.08 * s + cast[1], 3),
                             round(1.0 - 0.35 * s + cast[2], 3)]}
    if kind == "wrinkles":
        return {"count": int(rng.integers(8, 30)), "length_mm": _u(rng, 30, 110, 1),
                "spread_mm": _u(rng, 1.5, 5.0), "strength": _u(rng, 0.08, 0.2),
                "lift_mm": _u(rng, 0.2, 0.6), "view_deg": _u(rng, 0, 360, 1),
                "light_deg": _u(rng, 0, 360, 1), "seed": int(rng.integers(2**31))}
    if kind == "creases":
        lines, ridge = [], []
        for _ in range(int(rng.integers(1, 4))):
            pos, tilt = float(rng.uniform(0.2, 0.8)), float(rng.uniform(-0.05, 0.05))
            if rng.random() < 0.5:      # horizontal fold
                lines.append([0.0, round(pos, 3), 1.0, round(pos + tilt, 3)])
            else:
                lines.append([round(pos, 3), 0.0, round(pos + tilt, 3), 1.0])
            ridge.append(1 if rng.random() < 0.5 else -1)      # mountain or valley fold
        return {"lines": lines, "ridge": ridge, "depth": _u(rng, 0.1, 0.25),
                "width_mm": _u(rng, 0.3, 0.9), "spread_mm": _u(rng, 4, 14, 1),
                "lift_mm": _u(rng, 0.8, 2.0), "strength": _u(rng, 0.08, 0.2),
                "view_deg": _u(rng, 0, 360, 1), "light_deg": _u(rng, 0, 360, 1)}
    if kind == "marks":
        pens = ((30, 50, 150), (20, 20, 30), (160, 30, 40))
        return {"count": int(rng.integers(1, 5)), "colour": list(pens[int(rng.integers(3))]),
                "width_mm": _u(rng, 0.25, 0.6), "seed": int(rng.integers(2**31))}
    if kind == "rotation":
        return {"angle_deg": _u(rng, -6, 6, 2), "background": _background(rng)}
    if kind == "perspective":
        return {"corner_shift": [[_u(rng, 0.0, 0.07), _u(rng, 0.0, 0.07)] for _ in range(4)],
                "background": _background(rng)}
    if kind == "crop_pad":
        # "fit" (optional, a fraction of the frame): zoom so the whole warped page fits inside
        # the frame with that margin; "scale" is then ignored and "shift" moves it off centre.
        return {"scale": _u(rng, 0.88, 1.12), "shift": [_u(rng, -0.04, 0.04), _u(rng, -0.04, 0.04)],
                "background": _background(rng)}
    if kind == "shadow":
        cx, cy = rng.uniform(-0.2, 1.2, 2)
        poly = [[round(float(cx + 0.6 * np.cos(a) * r), 3), round(float(cy + 0.6 * np.sin(a) * r), 3)]
                for a, r in zip(np.sort(rng.uniform(0, 2 * np.pi, 6)), rng.uniform(0.3, 1.0, 6))]
        return {"polygon": poly, "darkness": _u(rng, 0.12, 0.45), "softness_mm": _u(rng, 8, 35, 1),
                "light_gradient": [_u(rng, -1, 1), _u(rng, -1, 1)], "light_strength": _u(rng, 0.0, 0.25)}
    if kind == "blur":
        return {"sigma_mm": _u(rng, 0.06, 0.2)}
    if kind == "noise":
        return {"sigma": _u(rng, 2.0, 9.0, 2), "seed": int(rng.integers(2**31))}
    if kind == "jpeg":
        return {"quality": int(rng.integers(20, 80))}
    raise ValueError(f"unknown distortion {kind!r}: use {', '.join(KINDS)}")


def _sample_phone(kind: str, rng: np.random.Generator) -> dict:
    """What the "phone" mode samples differently: a wider rotation, the page fitted in the frame."""
    if kind == "rotation":
        return {"angle_deg": _u(rng, -PHONE_MAX_ROTATION_DEG, PHONE_MAX_ROTATION_DEG, 2)}
    if kind == "crop_pad":
        margin = _u(rng, 0.02, 0.1)
        return {"fit": margin, "shift": [_u(rng, -0.8 * margin, 0.8 * margin) for _ in range(2)]}
    return {}


def plan_distortions(distort: str | dict | None, rng: np.random.Generator) -> dict[str, dict]:
    """Which kinds to apply, with their parameters, in application order."""
    if distort is None or distort == "none":
        return {}
    if isinstance(distort, dict):
        unknown = set(distort) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown distortion {sorted(unknown)}: use {', '.join(KINDS)}")
        chosen = {k: distort[k] for k in KINDS if k in distort and distort[k] not in (None, False)}
    elif distort == "all":
        chosen = {k: True for k in KINDS if k != "grid_removal" or rng.random() < PROBABILITIES[k]}
    elif distort == "photo":
        chosen = {k: True for k in PHOTO}
    elif distort == "phone":
        chosen = {k: True for k in PHONE}
    elif distort == "mix":
        if rng.random() < CLEAN_SHARE:
            return {}
        chosen = {k: True for k in KINDS if rng.random() < PROBABILITIES[k]}
        if not chosen or set(chosen) == {"grid_removal"}:
            kinds = [k for k in KINDS if k != "grid_removal"]
            chosen[kinds[int(rng.integers(len(kinds)))]] = True
        chosen = {k: True for k in KINDS if k in chosen}
    else:
        raise ValueError(f"unknown distort mode {distort!r}: use none, photo, phone, all, mix "
                         "or a dict")
    plan = {}
    for kind in (k for k in KINDS if k in chosen):
        params = _sample(kind, rng)
        if distort == "phone":
            params.update(_sample_phone(kind, rng))
        if isinstance(chosen[kind], dict):
            params.update(chosen[kind])
        plan[kind] = params
    return plan


# --- paper -------------------------------------------------------------------------------------

def _low_grid(h: int, w: int, shape_full) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution page coordinates (px) of the low-resolution grid's cells, aligned the way
    ``cv2.resize`` (linear) interpolates between them."""
    H, W = shape_full[:2]
    ys = ((np.arange(h) + 0.5) * (H / h) - 0.5).astype(np.float32)
    xs = ((np.arange(w) + 0.5) * (W / w) - 0.5).astype(np.float32)
    return np.meshgrid(xs, ys)


def _wrinkle_height(h: int, w: int, p: dict, lppm: float) -> np.ndarray:
    """Crumpled and flattened paper as a height field (about -1..1): ``count`` short straight
    folds in random directions, each a ridge or valley with sharp crest, flanks falling off over
    ``spread_mm`` and ends tapering to nothing; where they cross, facets form."""
    r = np.random.default_rng(p["seed"])
    height = np.zeros((h, w), np.float32)
    spread = max(0.5, p["spread_mm"] * lppm)
    for _ in range(int(p["count"])):
        length = r.uniform(0.5, 1.5) * p["length_mm"] * lppm
        cx, cy, angle = r.uniform(0, w), r.uniform(0, h), r.uniform(0, np.pi)
        ux, uy = np.cos(angle), np.sin(angle)
        half_w = abs(ux) * length / 2 + 4 * spread             # the fold's reach, low-res px
        half_h = abs(uy) * length / 2 + 4 * spread
        x0, x1 = int(max(0, cx - half_w)), int(min(w, cx + half_w + 1))
        y0, y1 = int(max(0, cy - half_h)), int(min(h, cy + half_h + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        along = ((xx - cx) * ux + (yy - cy) * uy) / (length / 2)       # -1..1 on the fold
        across = np.abs(-(xx - cx) * uy + (yy - cy) * ux)
        taper = np.clip(1.0 - along ** 2, 0.0, 1.0) ** 0.5
        sign = 1.0 if r.random() < 0.5 else -1.0
        height[y0:y1, x0:x1] += sign * r.uniform(0.4, 1.0) * taper * np.exp(-across / spread)
    return np.clip(height, -1.5, 1.5)


def _crease_height(h: int, w: int, p: dict, lppm: float) -> tuple[np.ndarray, np.ndarray]:
    """Creases: each line a ridge or valley whose flanks fall off over ``spread_mm`` (a tent,
    sharp at the fold), and a dark line of broken fibres. Returns (height in [-1, 1], line map)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    height = np.zeros((h, w), np.float32)
    line = np.ones((h, w), np.float32)
    spread = max(0.5, p["spread_mm"] * lppm)
    width = max(0.7, p["width_mm"] * lppm)
    ridges = p.get("ridge") or [1]
    for k, (x0, y0, x1, y1) in enumerate(p["lines"]):
        ax, ay, bx, by = x0 * w, y0 * h, x1 * w, y1 * h
        nx, ny = by - ay, -(bx - ax)
        norm = np.hypot(nx, ny) or 1.0
        d = ((xx - ax) * nx + (yy - ay) * ny) / norm          # signed distance, low-res px
        height += ridges[k % len(ridges)] * np.exp(-np.abs(d) / spread)
        line *= 1.0 - p["depth"] * np.exp(-((d / width) ** 2))
    return np.clip(height, -1.0, 1.0), line


def _paper_fields(shape, plan, ppm) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The paper at low resolution (h/4 × w/4), in page coordinates: a multiplicative shading
    map (×3 channels, float32: yellowing, the light on wrinkles and creases, crease lines) and
    the folds' displacement (h/4 × w/4 × 2, page px): a wrinkled or creased sheet is not flat,
    so the camera sees every point of it moved by its height along the viewing slant."""
    if not any(k in plan for k in ("yellowing", "wrinkles", "creases")):
        return None, None
    h, w = shape[0] // _LOWRES, shape[1] // _LOWRES
    lppm = ppm / _LOWRES
    shade = np.ones((h, w), np.float32)
    shift = np.zeros((h, w, 2), np.float32)
    for kind in ("wrinkles", "creases"):
        if kind not in plan:
            continue
        p = plan[kind]
        if kind == "wrinkles":
            height, line = _wrinkle_height(h, w, p, lppm), None
        else:
            height, line = _crease_height(h, w, p, lppm)
        # light: the slope along the light's direction brightens or darkens each facet
        gy, gx = np.gradient(height)
        angle = np.deg2rad(p["light_deg"])
        slope = (gx * np.cos(angle) + gy * np.sin(angle)) * p["spread_mm"] * lppm
        # (paper under a lamp is not pure white: the flat sheet dims a little, so that the
        # facets turned to the light can be brighter than it)
        shade *= (1.0 - 0.4 * p["strength"]) * (1.0 + p["strength"] * np.clip(slope, -1.5, 1.5))
        if line is not None:
            shade *= line
        view = np.deg2rad(p["view_deg"])
        lift = p["lift_mm"] * ppm
        shift[..., 0] += lift * np.cos(view) * height
        shift[..., 1] += lift * np.sin(view) * height
    out = np.repeat(shade[:, :, None], 3, axis=2)
    if "yellowing" in plan:
        out *= np.asarray(plan["yellowing"]["rgb_gain"], np.float32)
    folded = "wrinkles" in plan or "creases" in plan
    return out, (shift if folded else None)


def _apply_map(img: np.ndarray, lowres_map: np.ndarray) -> np.ndarray:
    full = cv2.resize(lowres_map, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(img, full, dtype=cv2.CV_8U)


def _draw_marks(img: np.ndarray, p: dict, ppm: float) -> None:
    """Handwritten-style pen marks: circles round a spot, ticks, underlines, scribbled words."""
    r = np.random.default_rng(p["seed"])
    h, w = img.shape[:2]
    thick = max(1, round(p["width_mm"] * ppm))
    colour = tuple(int(c) for c in p["colour"])
    for _ in range(p["count"]):
        cx, cy = r.uniform(0.08 * w, 0.92 * w), r.uniform(0.08 * h, 0.92 * h)
        kind = r.integers(4)
        if kind == 0:        # loose circle
            t = np.linspace(0, 2 * np.pi * r.uniform(1.0, 1.2), 60)
            rx, ry = r.uniform(8, 25) * ppm, r.uniform(5, 15) * ppm
            wob = 1 + 0.08 * np.sin(3 * t + r.uniform(0, 6))
            pts = np.stack([cx + rx * wob * np.cos(t), cy + ry * wob * np.sin(t)], 1)
        elif kind == 1:      # tick / arrow head
            s = r.uniform(4, 10) * ppm
            pts = np.array([[cx - s, cy - s * 0.2], [cx - s * 0.4, cy + s * 0.5], [cx + s, cy - s]])
        elif kind == 2:      # underline
            length = r.uniform(20, 60) * ppm
            t = np.linspace(0, 1, 30)
            pts = np.stack([cx + length * t, cy + r.uniform(0.3, 1.0) * ppm * np.sin(6 * t)], 1)
        else:                # scribbled word
            length = r.uniform(15, 40) * ppm
            t = np.linspace(0, 1, 120)
            loops = r.uniform(6, 12)
            pts = np.stack([cx + length * t + 1.2 * ppm * np.cos(2 * np.pi * loops * t),
                            cy - 2.0 * ppm * np.abs(np.sin(np.pi * loops * t)) * r.uniform(0.6, 1.2)], 1)
        cv2.polylines(img, [np.round(pts * 8).astype(np.int32).reshape(-1, 1, 2)], False, colour,
                      thick, cv2.LINE_AA, shift=3)


# --- camera ------------------------------------------------------------------------------------

def _homography(plan: dict, w: int, h: int) -> np.ndarray:
    H = np.eye(3)
    if "rotation" in plan:
        R = np.eye(3)
        R[:2] = cv2.getRotationMatrix2D((w / 2, h / 2), plan["rotation"]["angle_deg"], 1.0)
        H = R @ H
    if "perspective" in plan:
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
        dst = src + inward * np.float32(plan["perspective"]["corner_shift"]) * np.float32([w, h])
        H = cv2.getPerspectiveTransform(src, dst).astype(np.float64) @ H
    if "crop_pad" in plan:
        dx, dy = plan["crop_pad"]["shift"]
        if "fit" in plan["crop_pad"]:           # the whole page in view, with a margin
            quad = np.float64([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]]) @ H.T
            quad = quad[:, :2] / quad[:, 2:]
            (x0, y0), (x1, y1) = quad.min(0), quad.max(0)
            room = 1.0 - 2.0 * plan["crop_pad"]["fit"]
            s = min(room * w / (x1 - x0), room * h / (y1 - y0))
            C = np.array([[s, 0, w / 2 - s * (x0 + x1) / 2 + dx * w],
                          [0, s, h / 2 - s * (y0 + y1) / 2 + dy * h], [0, 0, 1]])
        else:
            s = plan["crop_pad"]["scale"]
            C = np.array([[s, 0, w / 2 * (1 - s) + dx * w], [0, s, h / 2 * (1 - s) + dy * h],
                          [0, 0, 1]])
        H = C @ H
    return H


def _light_map(h: int, w: int, p: dict, ppm: float) -> np.ndarray:
    """Uneven light and a soft shadow, as an h×w×3 float32 factor map (h, w: low resolution)."""
    gx, gy = p["light_gradient"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 + p["light_strength"] * ((xx / w - 0.5) * gx + (yy / h - 0.5) * gy)
    sh, sw = max(1, h // 4), max(1, w // 4)          # the soft shadow at 1/4 of that again
    mask = np.zeros((sh, sw), np.float32)
    poly = np.round(np.float32(p["polygon"]) * np.float32([sw, sh])).astype(np.int32)
    cv2.fillPoly(mask, [poly], 1.0)
    sigma = p["softness_mm"] * ppm * sw / (w * _LOWRES)
    mask = cv2.resize(cv2.GaussianBlur(mask, (0, 0), max(0.5, sigma)), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    m = light * (1.0 - p["darkness"] * mask)
    return np.repeat(m[:, :, None], 3, axis=2)


class PageWarp:
    """Where a point of the page lands in the image: moved by the paper's folds (a displacement
    field sampled at low resolution, page px), then by the camera (``homography``, 3×3).

    The same field moves the pixels (:func:`apply_distortions` samples the page at the inverse)
    and the sidecar's boxes (:meth:`points`), so lead and text boxes stay exact on folded pages.
    """

    def __init__(self, homography: np.ndarray, shift: np.ndarray | None, page_shape):
        self.homography = homography
        self.shift = shift                      # (h/4, w/4, 2) float32 or None
        self.page_h, self.page_w = page_shape[:2]

    def _shift_at(self, xy: np.ndarray) -> np.ndarray:
        """The folds' displacement (px) at page points ``xy`` (N×2), bilinear like cv2.resize."""
        lh, lw = self.shift.shape[:2]
        n = len(xy)
        rows = -(-n // 1024)                   # remap wants maps under 32767 rows: n -> rows × 1024
        uv = np.zeros((rows * 1024, 2), np.float32)
        uv[:n, 0] = (xy[:, 0] + 0.5) * (lw / self.page_w) - 0.5
        uv[:n, 1] = (xy[:, 1] + 0.5) * (lh / self.page_h) - 0.5
        uv = uv.reshape(rows, 1024, 2)
        out = cv2.remap(self.shift, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(-1, 2)[:n].astype(np.float64)

    def points(self, xy) -> np.ndarray:
        """Page pixels (N×2) -> image pixels (N×2)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if self.shift is not None:
            xy = xy + self._shift_at(xy)
        q = np.c_[xy, np.ones(len(xy))] @ self.homography.T
        return q[:, :2] / q[:, 2:]

    @cached_property
    def scale(self) -> float:
        """Largest local magnification of the warp (a line drawn ``t`` px wide appears at most
        about ``t × scale`` wide): the camera's at the page corners, times the folds' stretch."""
        if self.is_identity():
            return 1.0
        H = self.homography
        scale = 1.0
        corners = np.float64([(0, 0), (self.page_w, 0), (self.page_w, self.page_h), (0, self.page_h)])
        for c in corners:
            q = np.c_[np.array([c, c + [1.0, 0.0], c + [0.0, 1.0]]), np.ones(3)] @ H.T
            q = q[:, :2] / q[:, 2:]
            scale = max(scale, np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[0]))
        if self.shift is not None:
            step = self.page_w / self.shift.shape[1]               # page px per low-res cell
            slopes = [np.abs(g).max() for g in (*np.gradient(self.shift[..., 0]),
                                                *np.gradient(self.shift[..., 1]))]
            scale *= 1.0 + float(max(slopes)) / step
        return scale

    def boxes(self, lines: list[np.ndarray], pad_px: float, size) -> list[list[float]]:
        """Boxes [x0, y0, x1, y1] (image px, clipped to ``size`` = (w, h)) of ink drawn along
        each of ``lines`` (page points, N×2) with ``pad_px`` of ink each side (0: the points'
        own box)."""
        if not lines:
            return []
        q = self.points(np.concatenate(lines))
        pad = pad_px * self.scale + (1.0 if self.shift is not None and pad_px else 0.0)
        out, start = [], 0
        for line in lines:
            part = q[start:start + len(line)]
            start += len(line)
            out.append(self._clip(part.min(0) - pad, part.max(0) + pad, size))
        return out

    @staticmethod
    def outline(box, step_px: float = 4.0) -> np.ndarray:
        """Points every ``step_px`` along the edges of a page box (to map it through folds)."""
        x0, y0, x1, y1 = box
        n = max(2, int(max(x1 - x0, y1 - y0) // step_px) + 2)
        t = np.linspace(0.0, 1.0, n)
        return np.concatenate([np.c_[x0 + (x1 - x0) * t, np.full(n, y0)],
                               np.c_[x0 + (x1 - x0) * t, np.full(n, y1)],
                               np.c_[np.full(n, x0), y0 + (y1 - y0) * t],
                               np.c_[np.full(n, x1), y0 + (y1 - y0) * t]])

    @staticmethod
    def _clip(lo, hi, size) -> list[float]:
        w, h = size
        lo, hi = np.clip(lo, 0, [w, h]), np.clip(hi, 0, [w, h])
        return [round(float(v), 1) for v in (*lo, *hi)]

    def is_identity(self) -> bool:
        return self.shift is None and np.allclose(self.homography, np.eye(3))

    def homography_list(self) -> list[list[float]]:
        return [[round(float(v), 8) for v in row] for row in self.homography]

    def sample_maps(self, out_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Inverse maps for ``cv2.remap``: for every image pixel, the page point seen there, at
        full resolution and at the shading maps' low resolution (page px, both; float32)."""
        lh, lw = self.shift.shape[:2]
        gx, gy = _low_grid(lh, lw, out_shape)
        Hi = np.linalg.inv(self.homography).astype(np.float32)
        den = Hi[2, 0] * gx + Hi[2, 1] * gy + Hi[2, 2]
        fx = (Hi[0, 0] * gx + Hi[0, 1] * gy + Hi[0, 2]) / den     # paper point after the folds
        fy = (Hi[1, 0] * gx + Hi[1, 1] * gy + Hi[1, 2]) / den
        sx, sy = np.float32(lw / self.page_w), np.float32(lh / self.page_h)
        half = np.float32(0.5)
        mx, my = fx, fy
        for _ in range(4):                                         # invert p -> p + shift(p)
            d = cv2.remap(self.shift, (mx + half) * sx - half, (my + half) * sy - half,
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            mx, my = fx - d[..., 0], fy - d[..., 1]
        h, w = out_shape[:2]
        full_x = cv2.resize(mx, (w, h), interpolation=cv2.INTER_LINEAR)
        full_y = cv2.resize(my, (w, h), interpolation=cv2.INTER_LINEAR)
        return full_x, full_y, mx, my


def warp_of(sidecar: dict) -> PageWarp:
    """The page -> image map of a rendered page, rebuilt from its sidecar (every distortion's
    parameters are recorded): ``warp_of(sidecar).points(xy)`` places page points (e.g. a beat
    at a panel's baseline) exactly in the image, folds included; ``page_to_image`` alone is
    the camera only."""
    plan = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in sidecar["distortions"]}
    shape = (int(sidecar["height"]), int(sidecar["width"]))
    folds = {k: plan[k] for k in ("wrinkles", "creases") if k in plan}
    _, shift = _paper_fields(shape, folds, float(sidecar["px_per_mm"]))
    return PageWarp(np.asarray(sidecar["page_to_image"], np.float64), shift, shape)


def apply_distortions(img: np.ndarray, plan: dict, ppm: float):
    """Apply ``plan`` (from :func:`plan_distortions`) to an RGB page.

    Returns (image, applied list for the sidecar, :class:`PageWarp` from page to image pixels).
    ``grid_removal`` is done by the renderer (the grid is never drawn). Without folds (wrinkles,
    creases) the camera is one ``cv2.warpPerspective``; with them, one ``cv2.remap`` through
    both.
    """
    h, w = img.shape[:2]
    applied = [{"name": k, **v} for k, v in plan.items()]
    if "marks" in plan:
        _draw_marks(img, plan["marks"], ppm)
    # Paper shading (yellowing, wrinkles, creases) is computed at low resolution, warped with
    # the page and multiplied together with the camera's light in one full-resolution pass.
    shade, shift = _paper_fields(img.shape, plan, ppm)
    H = _homography(plan, w, h)
    warp = PageWarp(H, shift, img.shape)
    geometric = [k for k in GEOMETRIC if k in plan]
    bg = tuple(int(c) for c in plan[geometric[0]].get("background", (60, 60, 60))) if geometric \
        else (60, 60, 60)
    if shift is not None:
        full_x, full_y, low_x, low_y = warp.sample_maps(img.shape)
        # without a camera warp the sheet fills the picture: its edges are paper, not table
        border = cv2.BORDER_CONSTANT if geometric else cv2.BORDER_REFLECT_101
        img = cv2.remap(img, full_x, full_y, cv2.INTER_LINEAR, borderMode=border, borderValue=bg)
        lh, lw = shade.shape[:2]
        shade = cv2.remap(shade, (low_x + 0.5) * (lw / w) - 0.5, (low_y + 0.5) * (lh / h) - 0.5,
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(1.0, 1.0, 1.0))
    elif geometric:
        img = cv2.warpPerspective(img, H, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=bg)
        if shade is not None:
            lh, lw = shade.shape[:2]
            S = np.diag([lw / w, lh / h, 1.0])
            shade = cv2.warpPerspective(shade, S @ H @ np.linalg.inv(S), (lw, lh),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                        borderValue=(1.0, 1.0, 1.0))
    if "shadow" in plan:
        lh, lw = h // _LOWRES, w // _LOWRES
        light = _light_map(lh, lw, plan["shadow"], ppm)
        shade = light if shade is None else shade * light
    if shade is not None:
        img = _apply_map(img, shade)
    if "blur" in plan:
        img = cv2.GaussianBlur(img, (0, 0), max(0.3, plan["blur"]["sigma_mm"] * ppm))
    if "noise" in plan:      # in 2×2-pixel grains, like demosaiced sensor noise
        noise = np.empty(((h + 1) // 2, (w + 1) // 2, 3), np.int16)
        cv2.setRNGSeed(int(plan["noise"]["seed"]))
        cv2.randn(noise, 0, plan["noise"]["sigma"])
        noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
    if "jpeg" in plan:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(plan["jpeg"]["quality"])])
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img), applied, warp

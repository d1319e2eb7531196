"""Distortions of a rendered ECG page: old paper, folds, pen marks, phone photos, scans.

Each kind has a sampler (random parameters from a numpy Generator) and is applied in a fixed,
physical order: first what happens to the paper (grid missing at print time, yellowing, wrinkles,
creases, handwritten marks), then the camera (rotation, perspective, crop/padding as one warp;
shadows and uneven light), then the sensor and the file (blur, noise, JPEG). Every applied kind
and its parameters go into the sidecar, so an image can be reproduced and audited; geometric
kinds also move the lead boxes.

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
        return {"strength": _u(rng, 0.05, 0.15), "scale_mm": _u(rng, 15, 45, 1),
                "light_deg": _u(rng, 0, 360, 1), "seed": int(rng.integers(2**31))}
    if kind == "creases":
        lines = []
        for _ in range(int(rng.integers(1, 4))):
            pos, tilt = float(rng.uniform(0.2, 0.8)), float(rng.uniform(-0.05, 0.05))
            if rng.random() < 0.5:      # horizontal fold
                lines.append([0.0, round(pos, 3), 1.0, round(pos + tilt, 3)])
            else:
                lines.append([round(pos, 3), 0.0, round(pos + tilt, 3), 1.0])
        return {"lines": lines, "depth": _u(rng, 0.1, 0.3), "width_mm": _u(rng, 0.8, 2.5)}
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

def _paper_map(shape, plan, ppm) -> np.ndarray | None:
    """Low-resolution multiplicative map (h/4 × w/4 × 3, float32) for yellowing/wrinkles/creases."""
    if not any(k in plan for k in ("yellowing", "wrinkles", "creases")):
        return None
    h, w = shape[0] // _LOWRES, shape[1] // _LOWRES
    lppm = ppm / _LOWRES
    m = np.ones((h, w), np.float32)
    if "wrinkles" in plan:
        # Crumpled paper: a ridged random height field (two octaves of -|smooth noise|), lit
        # from one side; the shading is the slope along the light direction.
        p = plan["wrinkles"]
        r = np.random.default_rng(p["seed"])
        height = np.zeros((h, w), np.float32)
        for octave, amp in ((1.0, 1.0), (0.4, 0.45)):
            cell = max(2, int(p["scale_mm"] * octave * lppm))
            gh, gw = h // cell + 3, w // cell + 3
            coarse = r.standard_normal((gh, gw)).astype(np.float32)
            field = cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
            height -= amp * np.abs(field[cell:cell + h, cell:cell + w])
        gy, gx = np.gradient(height)
        angle = np.deg2rad(p.get("light_deg", 45.0))
        slope = gx * np.cos(angle) + gy * np.sin(angle)
        m *= 1.0 + p["strength"] * np.clip(slope / (3 * slope.std() + 1e-6), -1.5, 1.5)
    if "creases" in plan:
        p = plan["creases"]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        width = max(0.7, p["width_mm"] * lppm)
        for x0, y0, x1, y1 in p["lines"]:
            ax, ay, bx, by = x0 * w, y0 * h, x1 * w, y1 * h
            nx, ny = by - ay, -(bx - ax)
            norm = np.hypot(nx, ny) or 1.0
            d = ((xx - ax) * nx + (yy - ay) * ny) / norm / width
            # a dark fold line with a bright edge on one side
            m *= 1.0 - p["depth"] * np.exp(-d ** 2) + 0.5 * p["depth"] * d * np.exp(-(d ** 2) / 2) * 0.6
    out = np.repeat(m[:, :, None], 3, axis=2)
    if "yellowing" in plan:
        out *= np.asarray(plan["yellowing"]["rgb_gain"], np.float32)
    return out


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


def apply_distortions(img: np.ndarray, plan: dict, boxes: dict[str, list[float]], ppm: float):
    """Apply ``plan`` (from :func:`plan_distortions`) to an RGB page.

    Returns (image, boxes in image pixels clipped to it, applied list for the sidecar, page-to-image
    homography as nested lists). ``grid_removal`` is done by the renderer (the grid is never drawn).
    """
    h, w = img.shape[:2]
    applied = [{"name": k, **v} for k, v in plan.items()]
    if "marks" in plan:
        _draw_marks(img, plan["marks"], ppm)
    # Paper shading (yellowing, wrinkles, creases) is computed at low resolution, warped with
    # the page and multiplied together with the camera's light in one full-resolution pass.
    shade = _paper_map(img.shape, plan, ppm)
    H = _homography(plan, w, h)
    geometric = [k for k in GEOMETRIC if k in plan]
    if geometric:
        bg = tuple(int(c) for c in plan[geometric[0]].get("background", (60, 60, 60)))
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
    out_boxes = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        quad = np.float64([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]]) @ H.T
        quad = quad[:, :2] / quad[:, 2:]
        bx0, by0 = np.clip(quad.min(0), 0, [w, h])
        bx1, by1 = np.clip(quad.max(0), 0, [w, h])
        out_boxes[name] = [round(float(v), 1) for v in (bx0, by0, bx1, by1)]
    return np.ascontiguousarray(img), out_boxes, applied, [[round(float(v), 8) for v in row] for row in H]

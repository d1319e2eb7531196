"""The corner editor: a photo with the page outline and four corners to drag (mouse or touch).

A Gradio 6 HTML component (``gr.HTML`` with a template and ``js_on_load``): the photo is drawn
in an SVG whose user units are the photo's own pixels, so the corners need no conversion. The
component's value is the four corners (top-left, top-right, bottom-right, bottom-left, in
original pixels, possibly outside the photo); dragging one with pointer events (mouse, pen or
touch) moves it and the outline, and on release writes the corners into the value, which the
handler of the Straighten button reads. The photo travels inline as a ``data:`` URL in a prop
(never a file in Gradio's cache, like :class:`pulse_app.ui.components.PrivateImage`) and is
never sent back: only the corners are.

>>> corner_view_box((1000, 500), [[-100, 0], [999, 0], [999, 499], [0, 600]])
[-140, -40, 1180, 680]
"""

from __future__ import annotations

import gradio as gr
from PIL import Image

from pulse_app.ui.components import data_url

#: Longest side of the photo drawn under the corners, in pixels (enough to place a corner on a
#: phone or a desktop screen; the corners themselves are in the original's pixels).
EDITOR_SIDE = 1280
#: Margin around the photo and the corners, as a share of the photo's longer side.
MARGIN_SHARE = 0.04
#: A corner's dot radius before the script sizes it on screen, as a share of the drawing's
#: longer side (about 10 px on a phone).
DOT_SHARE = 0.03

TEMPLATE = """<div class="pulse-corners">${src ? `<svg viewBox="${box.join(' ')}"
 preserveAspectRatio="xMidYMid meet" role="img"
 aria-label="The photo with the page outline found; drag the orange corners onto the page's corners">
<image href="${src}" x="0" y="0" width="${size[0]}" height="${size[1]}" preserveAspectRatio="none"/>
${value ? `<polygon class="page" points="${value.map(p => p.join(',')).join(' ')}"/>
${value.map((p, i) => `<g class="corner" data-i="${i}" data-x="${p[0]}" data-y="${p[1]}"
 transform="translate(${p[0]} ${p[1]})"><circle class="hit" r="${2.4 * dot}"/>
<circle class="dot" r="${dot}"/>
</g>`).join('')}` : ''}</svg>` : ''}</div>"""

CSS = """
.pulse-corners svg { display: block; width: 100%; height: auto; max-height: 70vh;
  user-select: none; -webkit-user-select: none; background: #f4f4f5; }
.pulse-corners .page { fill: rgba(10, 102, 255, 0.08); stroke: #0a66ff; stroke-width: 3px;
  vector-effect: non-scaling-stroke; }
.pulse-corners .corner { cursor: grab; touch-action: none; }
.pulse-corners .hit { fill: transparent; }
.pulse-corners .dot { fill: #ff7a00; stroke: #ffffff; stroke-width: 2px;
  vector-effect: non-scaling-stroke; }
.pulse-corners .corner.dragging .dot { fill: #ffb000; }
"""

#: Pointer events: drag a corner (clamped to the drawing), update the outline, and on release
#: write the corners into the component's value. Handles are sized in screen pixels (a 48 px
#: touch target around a 20 px dot) whatever the photo's size, once it is on screen (until
#: then, :data:`DOT_SHARE` of the drawing).
JS = """
const DOT_PX = 10, HIT_PX = 24;
let drag = null;
const svg = () => element.querySelector('svg');
function corners() {
  return [...element.querySelectorAll('.corner')].map(g => [+g.dataset.x, +g.dataset.y]);
}
function size() {
  const s = svg(), m = s && s.getScreenCTM();
  if (!m || !m.a) return;
  element.querySelectorAll('.corner .dot').forEach(c => c.setAttribute('r', DOT_PX / m.a));
  element.querySelectorAll('.corner .hit').forEach(c => c.setAttribute('r', HIT_PX / m.a));
}
element.addEventListener('pointerdown', e => {
  const g = e.target.closest('.corner');
  if (!g) return;
  drag = {g, id: e.pointerId};
  g.setPointerCapture(e.pointerId);
  g.classList.add('dragging');
  e.preventDefault();
});
element.addEventListener('pointermove', e => {
  if (!drag || e.pointerId !== drag.id) return;
  const s = svg(), b = s.viewBox.baseVal;
  const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(s.getScreenCTM().inverse());
  const x = Math.min(Math.max(p.x, b.x), b.x + b.width);
  const y = Math.min(Math.max(p.y, b.y), b.y + b.height);
  drag.g.dataset.x = x;
  drag.g.dataset.y = y;
  drag.g.setAttribute('transform', `translate(${x} ${y})`);
  element.querySelector('.page').setAttribute(
    'points', corners().map(c => c.join(',')).join(' '));
});
function drop(e) {
  if (!drag || e.pointerId !== drag.id) return;
  drag.g.classList.remove('dragging');
  drag = null;
  props.value = corners().map(c => c.map(v => Math.round(v * 100) / 100));
}
element.addEventListener('pointerup', drop);
element.addEventListener('pointercancel', drop);
element.addEventListener('touchstart', e => {
  if (e.target.closest('.corner')) e.preventDefault();          // a drag, not a scroll
}, {passive: false});
const soon = () => requestAnimationFrame(size);
new ResizeObserver(soon).observe(element);
new MutationObserver(soon).observe(element, {childList: true, subtree: true});
soon();
"""


def corner_editor(**kwargs) -> gr.HTML:
    """The (empty) editor; fill it with :func:`corner_update`."""
    return gr.HTML(value=None, html_template=TEMPLATE, css_template=CSS, js_on_load=JS,
                   src="", size=[1, 1], box=[0, 0, 1, 1], dot=1, **kwargs)


def corner_view_box(size: tuple[int, int], corners) -> list[int]:
    """The SVG's view box ``[x, y, width, height]``: the photo and the corners, with a margin."""
    width, height = size
    xs = [0, width, *(c[0] for c in corners)]
    ys = [0, height, *(c[1] for c in corners)]
    margin = MARGIN_SHARE * max(width, height)
    left, top = int(min(xs) - margin), int(min(ys) - margin)
    return [left, top, int(max(xs) + margin) - left, int(max(ys) + margin) - top]


def corner_update(image: Image.Image, corners) -> dict:
    """The editor showing ``image`` (the original) with ``corners`` (TL, TR, BR, BL in its
    pixels) to drag."""
    shown = image
    if max(image.size) > EDITOR_SIDE:
        shown = image.copy()
        shown.thumbnail((EDITOR_SIDE, EDITOR_SIDE), Image.Resampling.LANCZOS)
    corners = [[round(float(x), 2), round(float(y), 2)] for x, y in corners]
    box = corner_view_box(image.size, corners)
    return gr.update(value=corners, src=data_url(shown), size=list(image.size), box=box,
                     dot=round(DOT_SHARE * max(box[2:]), 1))


def whole_picture(size: tuple[int, int]) -> list[list[float]]:
    """The corners of the whole picture (a start for dragging when no page was found)."""
    width, height = size
    return [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]

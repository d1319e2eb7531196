"""The web app's layout for phones, tablets and desktops: CSS and one small script (``launch()``'s
``css`` and ``head``, Gradio 6).

- **Desktop** (1024 px and wider): the sessions sidebar open, the picture beside the chat.
- **Tablet and phone** (narrower): one column in reading order — take or upload the photo, the
  picture (or the straightening card), then the chat; the sessions sidebar starts closed (a
  drawer behind its toggle, at most 86 % of the screen wide); buttons and inputs are at least
  :data:`TOUCH_PX` tall; the chat and picture fit the screen's height.
- The script closes the sidebar once at page load on narrow screens (the sidebar's own toggle,
  so Gradio's state follows), and asks phones for the rear camera on the Take-a-photo input
  (``capture="environment"``; desktop browsers ignore it and open the file chooser).

>>> NARROW_PX, TOUCH_PX
(1023, 44)
"""

from __future__ import annotations

#: Widest screen (CSS px) laid out as a phone or tablet: one column, the sidebar closed.
NARROW_PX = 1023
#: Smallest height of a control on a narrow screen (CSS px; the usual touch target).
TOUCH_PX = 44
#: The sidebar's width: its usual 320 px, at most 86 % of a phone's screen.
SIDEBAR_WIDTH = "min(320px, 86vw)"

CSS = f"""
#notice p {{ margin: 0.2em 0; }}
#picture-check p {{ margin: 0.3em 0; }}
#answer-disclaimer p {{ margin: 0; font-size: 0.85em; opacity: 0.8; }}
#straighten-buttons button, #edit-buttons button {{ min-width: 0; }}
#chat .bubble-wrap {{ padding-top: 40px; }}     /* the first message clear of the toolbar */

@media (max-width: {NARROW_PX}px) {{
  #main-row {{ flex-direction: column; flex-wrap: nowrap; }}
  #main-row > #picture-column, #main-row > #chat-column {{
    width: 100%; min-width: 0; max-width: 100%; flex: 1 1 auto; }}
  #picture {{ height: auto !important; max-height: 62vh; }}
  #picture img {{ max-height: 60vh; }}
  #chat {{ height: min(560px, 62vh) !important; }}
  button, #question textarea, #page input, #session-search textarea,
  #main-row input[type=number], #main-row input[type=range] {{ min-height: {TOUCH_PX}px; }}
  #main-row .head:has(input[type=number]) {{ min-height: {TOUCH_PX + 2}px; }}  /* a slider's */
  #upload {{ height: auto !important; }}
  #notice {{ padding-left: 24px; }}             /* clear of the sidebar's toggle */
  #chat-column .row > button {{ flex: 1 1 40%; min-width: 40%; }}   /* two a line */
}}
.pulse-settling #sidebar {{ visibility: hidden; }}
@media (pointer: fine) and (min-width: {NARROW_PX + 1}px) {{
  #capture {{ display: none; }}   /* a mouse and a big screen: the file box is the way */
}}
"""

HEAD = f"""<script>
(() => {{
  const narrow = window.matchMedia('(max-width: {NARROW_PX}px)').matches;
  const root = document.documentElement;
  let sidebar = narrow ? 'closing' : 'done';
  if (narrow) {{
    root.classList.add('pulse-settling');         // the open sidebar is not shown meanwhile
    setTimeout(() => root.classList.remove('pulse-settling'), 8000);
  }}
  function closeSidebar(bar, tries) {{              // its own toggle, once Gradio listens
    if (!bar.classList.contains('open') || tries <= 0) {{
      sidebar = 'done';
      root.classList.remove('pulse-settling');
      return;
    }}
    bar.querySelector('.toggle-button')?.click();
    setTimeout(() => closeSidebar(bar, tries - 1), 250);
  }}
  function tune() {{
    const capture = document.getElementById('capture')?.previousElementSibling;
    if (capture && capture.matches('input[type=file]:not([capture])')) {{
      capture.setAttribute('capture', 'environment');
    }}
    const bar = document.getElementById('sidebar');
    if (sidebar === 'closing' && bar && bar.classList.contains('open')) {{
      sidebar = 'waiting';
      closeSidebar(bar, 40);
    }}
  }}
  new MutationObserver(tune).observe(root, {{
    childList: true, subtree: true, attributes: true, attributeFilter: ['class']}});
}})();
</script>"""

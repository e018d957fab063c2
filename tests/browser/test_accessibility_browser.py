"""Accessibility basics on Generate, the gallery, an image's detail view and the jobs page: every
control has an accessible name, targets are at least 24×24 px (links inside running text excepted, as
WCAG 2.5.8 allows), and the keyboard focus is visible on everything Tab reaches."""
from __future__ import annotations

from tests.gallery_helpers import generate_through_the_form

CONTROLS = """() => {
  const visible = el => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && !el.closest('details:not([open]) > :not(summary)'); };
  const named = el => (el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby')
    || (el.labels && el.labels.length && [...el.labels].some(l => l.textContent.trim()))
    || (el.matches('button, a, summary') && (el.textContent.trim() || el.querySelector('img[alt]:not([alt=""])')))
    || (el.getAttribute('title') || '').trim();
  const inText = el => el.matches('a:not(.button):not(.thumb)') && !el.closest('nav, .actions, .gallery-actions, .pager');
  const out = [];
  for (const el of document.querySelectorAll('button, select, textarea, input:not([type=hidden]), a[href], summary')) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    out.push({what: el.outerHTML.slice(0, 120), named: !!named(el), small: !inText(el) && (r.width < 24 || r.height < 24),
              w: r.width, h: r.height});
  }
  return out;
}"""

FOCUS_SHOWN = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  return {what: el.outerHTML.slice(0, 120),
          shown: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 1) || (s.boxShadow && s.boxShadow !== 'none')};
}"""


def check_page(page) -> list[str]:
    problems = []
    for control in page.evaluate(CONTROLS):
        if not control["named"]:
            problems.append(f"no accessible name: {control['what']}")
        if control["small"]:
            problems.append(f"smaller than 24 px ({control['w']:.0f}×{control['h']:.0f}): {control['what']}")
    page.locator("body").focus()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(40):
        page.keyboard.press("Tab")
        focus = page.evaluate(FOCUS_SHOWN)
        if focus is not None and not focus["shown"]:
            problems.append(f"focus not visible: {focus['what']}")
    return [f"{page.url}: {problem}" for problem in problems]


def test_generate_gallery_detail_and_jobs_are_accessible(logged_in, live_server):
    page = logged_in
    generate_through_the_form(page, "a lighthouse at dusk", outputs=2)
    problems = check_page(page)
    page.goto(f"{live_server}/gallery")
    problems += check_page(page)
    page.locator(".gallery-grid a.thumb").first.click()
    page.wait_for_url("**/gallery/*")
    problems += check_page(page)
    page.goto(f"{live_server}/jobs/")
    problems += check_page(page)
    assert problems == []

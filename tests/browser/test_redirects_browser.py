"""Chromium's own URL parser agrees with app.redirects: every target it refuses leaves the site (or is
not a plain path) in a real browser, and every target it keeps stays on the site."""
from tests.redirect_helpers import HOSTILE, LOCAL

BASE = "http://tessera.test/datasets/1"


def _resolved_hosts(page, targets):
    page.set_content("<!doctype html><title>urls</title>")
    return page.evaluate("""([targets, base]) => targets.map(t => {
        try { const u = new URL(t, base); return [u.protocol, u.host, u.pathname]; }
        catch (e) { return ["invalid", "", ""]; } })""", [targets, BASE])


def test_the_browser_reads_the_hostile_targets_as_off_site_or_not_a_plain_path(page):
    resolved = _resolved_hosts(page, HOSTILE)
    off_site = [t for t, (protocol, host, _path) in zip(HOSTILE, resolved)
                if protocol != "http:" or host != "tessera.test"]
    # The ones that stay on the host are still not what they look like (a relative path, a mangled
    # path, or an absurd length): the helper refuses them because it only keeps plain absolute paths.
    assert {"//evil.example/x", "/\\evil.example/x", "/\t/evil.example/x", "https:evil.example",
            "\x00//evil.example", " //evil.example", "/\n/evil.example"} <= set(off_site)


def test_the_browser_keeps_every_accepted_target_on_the_site(page):
    for target, (protocol, host, path) in zip(LOCAL, _resolved_hosts(page, LOCAL)):
        assert (protocol, host) == ("http:", "tessera.test"), target
        assert path.startswith("/") and not path.startswith("//"), target

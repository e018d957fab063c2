"""Redirect targets shared by the unit, route and browser tests of app.redirects."""

# Each of these leaves the site in a browser (or is not a plain same-site path at all).
HOSTILE = [
    "//evil.example/x", "///evil.example/x", "////evil.example", "/\\evil.example/x", "\\\\evil.example/x",
    "\\/evil.example", "/\t/evil.example/x", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example",
    " //evil.example", "\x00//evil.example", "/\x00/evil.example", "/\x0b/evil.example", "/\x7f/evil.example",
    "/\u0085/evil.example", "https:evil.example", "http:evil.example", "https:/evil.example",
    "https://evil.example/x", "HTTPS://evil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>", "evil.example", "./x", "", "/" + "a" * 3000,
]
# Same-site paths that must survive unchanged.
LOCAL = ["/", "/gallery?page=2", "/datasets/3?tags=a%20b&sort=name#top", "/datasets/3/editor/7?next=//x",
         "/canvas/1", "/%2F%2Fevil.example", "/a b", "/caf\u00e9"]

"""Every redirect target that comes from a user stays on this site, read as a browser reads it."""
import pytest

from app.redirects import local_target, safe_redirect_target
from tests.redirect_targets import HOSTILE, LOCAL


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_are_refused(target):
    assert local_target(target) is None
    assert safe_redirect_target(target, "/home") == "/home"


@pytest.mark.parametrize("target", LOCAL)
def test_same_site_paths_are_kept(target):
    assert local_target(target) == target


def test_non_strings_are_refused():
    assert local_target(None) is None and local_target(["/x"]) is None and local_target(b"/x") is None


@pytest.mark.parametrize("target", HOSTILE)
def test_login_never_sends_anyone_off_site(app, user, target):
    from tests.conftest import TEST_PASSWORD

    client = app.test_client()
    response = client.post("/login", query_string={"next": target},
                           data={"username": "ada", "password": TEST_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    # Already logged in: /login?next=… redirects at once, through the same check.
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302 and again.headers["Location"] == "/"


def test_login_follows_a_same_site_next(app, user):
    from tests.conftest import TEST_PASSWORD

    response = app.test_client().post("/login", query_string={"next": "/datasets/3?tags=a%20b"},
                                      data={"username": "ada", "password": TEST_PASSWORD})
    assert response.headers["Location"] == "/datasets/3?tags=a%20b"

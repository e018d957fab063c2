"""Friendly error pages: a whole page for a browser, a small partial for HTMX, no stack traces."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError


HTMX = {"HX-Request": "true"}


@pytest.fixture
def failing_app(app):
    """The app as in production, where an unexpected exception becomes the 500 page."""
    def broken_view():
        raise OperationalError("SELECT 1", {}, Exception("the database went away"))

    app.add_url_rule("/broken", view_func=broken_view)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@pytest.mark.parametrize("url,status,text", [
    ("/no/such/page", 404, "There is nothing here"),
    ("/?model=nobody/nothing", 404, "Unknown model nobody/nothing: add it first."),  # abort()'s own words
])
def test_not_found_is_a_page_for_browsers_and_a_partial_for_htmx(client, url, status, text):
    page = client.get(url)
    assert page.status_code == status and text in page.get_data(as_text=True)
    assert "<html" in page.get_data(as_text=True) and 'action="/logout"' in page.get_data(as_text=True)
    partial = client.get(url, headers=HTMX)
    body = partial.get_data(as_text=True)
    assert partial.status_code == status and text in body and "<html" not in body and 'role="alert"' in body


def test_a_wrong_method_says_so_and_names_the_allowed_ones(client):
    response = client.get("/generate")
    assert response.status_code == 405 and "not possible at this address" in response.get_data(as_text=True)
    assert "POST" in response.headers["Allow"]


def test_an_unexpected_error_shows_a_friendly_500_without_details(failing_app, client):
    page = client.get("/broken")
    body = page.get_data(as_text=True)
    assert page.status_code == 500 and "Tessera hit an unexpected error" in body and "<html" in body
    assert "Traceback" not in body and "database went away" not in body
    partial = client.get("/broken", headers=HTMX)
    assert partial.status_code == 500 and "<html" not in partial.get_data(as_text=True)
    assert client.get("/gallery").status_code == 200  # the session was rolled back, the app goes on


def test_when_even_the_error_page_fails_a_plain_message_is_sent(failing_app, client):
    def unusable(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, Exception("down"))

    failing_app.jinja_env.globals["url_for"] = unusable  # the error page cannot be rendered either
    response = client.get("/broken")
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "Tessera hit an unexpected error" in response.get_data(as_text=True)


def test_the_page_nginx_shows_for_a_refused_upload_needs_no_login(app):
    for headers, whole_page in (({}, True), (HTMX, False)):
        response = app.test_client().get("/errors/too-large", headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code == 413 and "larger than this server accepts" in body
        assert ("<html" in body) is whole_page

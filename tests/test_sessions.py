"""Server-side session revocation: a per-user session generation, bumped on logout, password change and
"log out everywhere", checked on every request for both the session and the "keep me logged in" cookie."""
from app.extensions import db
from app.models import User
from tests.app_helpers import TEST_PASSWORD

REMEMBER = "remember_token"


def log_in(client, username="ada", password=TEST_PASSWORD, remember=True):
    return client.post("/login", data={"username": username, "password": password,
                                       **({"remember": "on"} if remember else {})})


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def cookies_of(client) -> dict:
    return {name: client.get_cookie(name).value for name in ("session", REMEMBER) if client.get_cookie(name)}


def with_cookies(app, cookies: dict):
    """A new browser holding copies of `cookies` (what a thief would hold)."""
    thief = app.test_client()
    for name, value in cookies.items():
        thief.set_cookie(name, value)
    return thief


def remember_only(app, cookies):
    return with_cookies(app, {REMEMBER: cookies[REMEMBER]})


def test_copies_of_the_cookies_stop_working_after_logout(app, user):
    client = app.test_client()
    assert log_in(client).status_code == 302
    stolen = cookies_of(client)
    assert set(stolen) == {"session", REMEMBER}
    assert is_logged_in(with_cookies(app, stolen)) and is_logged_in(remember_only(app, stolen))
    client.post("/logout")
    assert not is_logged_in(client)
    assert not is_logged_in(with_cookies(app, stolen))
    assert not is_logged_in(remember_only(app, stolen))


def test_the_remember_token_differs_after_a_logout(app, user):
    client = app.test_client()
    log_in(client)
    first = cookies_of(client)[REMEMBER]
    client.post("/logout")
    log_in(client)
    assert cookies_of(client)[REMEMBER] != first


def test_changing_the_password_ends_every_other_session_and_keeps_this_one(app, user):
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    phone_cookies = cookies_of(phone)
    page = laptop.get("/account").get_data(as_text=True)
    assert "Current password" in page and "New password" in page and "Confirm new password" in page
    assert "At least 8 characters" in page
    wrong = laptop.post("/account/password", data={"current_password": "nope", "new_password": "a new passphrase",
                                                   "new_confirm": "a new passphrase"})
    assert wrong.status_code == 403 and "current password is wrong" in wrong.get_data(as_text=True)
    mismatch = laptop.post("/account/password", data={"current_password": TEST_PASSWORD,
                                                      "new_password": "a new passphrase", "new_confirm": "a new passphrasf"})
    assert mismatch.status_code == 422
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(TEST_PASSWORD)
    done = laptop.post("/account/password", data={"current_password": TEST_PASSWORD,
                                                  "new_password": "a new passphrase", "new_confirm": "a new passphrase"})
    assert done.status_code == 303
    assert "Your password is changed" in laptop.get("/account").get_data(as_text=True)
    assert is_logged_in(laptop)  # this browser carries on, under the new generation
    assert not is_logged_in(phone) and not is_logged_in(remember_only(app, phone_cookies))
    assert log_in(app.test_client(), password=TEST_PASSWORD).status_code == 401
    assert log_in(app.test_client(), password="a new passphrase").status_code == 302


def test_log_out_everywhere_ends_every_session(app, user):
    laptop, phone = app.test_client(), app.test_client()
    log_in(laptop)
    log_in(phone)
    kept = cookies_of(phone)
    response = laptop.post("/account/logout-everywhere")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    for browser in (laptop, phone, with_cookies(app, kept), remember_only(app, kept)):
        assert not is_logged_in(browser)


def test_tessera_user_passwd_ends_the_sessions_too(app, user):
    from app.auth.accounts import set_password

    client = app.test_client()
    log_in(client)
    kept = cookies_of(client)
    set_password(db.session.get(User, user.id), "set from the shell")
    assert not is_logged_in(client) and not is_logged_in(remember_only(app, kept))


def test_the_job_status_poll_checks_the_generation_too(app, user):
    """The hot status poll authorises in its own query; a revoked session gets nothing from it either."""
    from app.models import Job

    db.session.add(Job(id="job-1", user_id=user.id, kind="generate.image", task="t", title="A lighthouse"))
    db.session.commit()
    client = app.test_client()
    log_in(client, remember=False)
    assert client.get("/jobs/job-1/status").status_code == 200
    stolen = cookies_of(client)
    client.post("/logout")
    thief = with_cookies(app, stolen)
    response = thief.get("/jobs/job-1/status", headers={"HX-Request": "true"})
    assert response.status_code == 401 and "A lighthouse" not in response.get_data(as_text=True)

"""The first visit: the welcome page creates the first account with the rules shown up front, a
confirmation field, and no stray "Please log in" message."""
from app.extensions import db
from app.models import User

RULES = "At least 8 characters."


def test_the_first_visit_shows_the_welcome_without_a_stray_message(app):
    client = app.test_client()
    response = client.get("/", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Welcome to Tessera" in page and "Create account" in page
    assert "Please log in" not in page
    # The rules are on the page before anything is typed, tied to the field for screen readers.
    assert RULES in page and 'aria-describedby="password-rules"' in page
    assert 'minlength="8"' in page
    assert '<label for="confirm">Confirm password</label>' in page and 'name="confirm"' in page
    # A deep link before any account exists: still the welcome, still no stray message.
    deep = client.get("/gallery", follow_redirects=True).get_data(as_text=True)
    assert "Welcome to Tessera" in deep and "Please log in" not in deep


def test_the_first_account_needs_the_password_twice(app):
    client = app.test_client()
    response = client.post("/setup", data={"username": "ada", "password": "long enough pw",
                                           "confirm": "long enough pv"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "The two passwords are not the same" in page
    assert 'value="ada"' in page  # what was typed stays
    assert db.session.scalar(db.select(db.func.count(User.id))) == 0
    short = client.post("/setup", data={"username": "ada", "password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 8 characters" in short.get_data(as_text=True)
    made = client.post("/setup", data={"username": "ada", "password": "long enough pw", "confirm": "long enough pw"})
    assert made.status_code == 302 and made.headers["Location"] == "/"
    assert "Welcome, ada. Your account is ready." in client.get("/").get_data(as_text=True)


def test_after_the_first_account_a_deep_link_says_why_it_shows_the_login(app, user):
    client = app.test_client()
    page = client.get("/gallery", follow_redirects=True).get_data(as_text=True)
    assert "Please log in to continue." in page and "Welcome to Tessera" not in page
    # Opening Tessera itself needs no such message: the page is the login.
    home = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Please log in" not in home and "<h1>Log in</h1>" in home


def test_tessera_user_passwd_sets_a_new_password(app_env, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    env = {**os.environ}

    def tessera(*args, stdin):
        return subprocess.run([sys.executable, "-m", "app.cli", *args], input=stdin + "\n", text=True, env=env,
                              capture_output=True)

    assert tessera("user", "create", "grace", stdin="the first passphrase").returncode == 0
    changed = tessera("user", "passwd", "grace", stdin="the second passphrase")
    assert changed.returncode == 0 and "Changed the password of grace" in changed.stdout
    short = tessera("user", "passwd", "grace", stdin="short")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    missing = tessera("user", "passwd", "nobody", stdin="a long passphrase")
    assert missing.returncode != 0 and "There is no user named nobody" in missing.stderr
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == "grace"))
        assert user.check_password("the second passphrase") and not user.check_password("the first passphrase")
        db.session.remove()
        db.engine.dispose()

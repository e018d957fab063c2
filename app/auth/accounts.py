"""Accounts, shared by the CLI and the pages: creating one, changing a password, the rules for both."""
import re

from app.extensions import db
from app.models import User

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
# Hashing is the slow part of a login; a megabyte "password" must not make it slower still.
MAX_PASSWORD = 1024


class AccountError(ValueError):
    pass


def check_new_password(password: str, confirm: str | None = None) -> None:
    """Raise AccountError (a message for the user) unless `password` may be set; `confirm`, when
    given, must repeat it."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"The password needs at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"The password may have at most {MAX_PASSWORD} characters.")
    if confirm is not None and confirm != password:
        raise AccountError("The two passwords are not the same; type the new one twice.")


def create_user(username: str, password: str, confirm: str | None = None) -> User:
    username = username.strip()
    if not USERNAME.match(username):
        raise AccountError("A username is 1–64 letters, digits, '.', '_' or '-'.")
    check_new_password(password, confirm)
    if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"There is already a user named {username}.")
    user = User(username=username)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def set_password(user: User, password: str, confirm: str | None = None) -> None:
    """Give `user` a new password and end every session it has (other browsers, "keep me logged in"
    cookies), so that whoever knew the old password is logged out too."""
    check_new_password(password, confirm)
    user.set_password(password)
    end_all_sessions(user)
    db.session.commit()


def end_all_sessions(user: User) -> None:
    """Revoke every session and remember-me cookie of `user` (the caller commits)."""
    if hasattr(user, "session_generation"):
        user.session_generation = (user.session_generation or 0) + 1


def user_named(username: str) -> User:
    user = db.session.scalar(db.select(User).where(User.username == username.strip()))
    if user is None:
        raise AccountError(f"There is no user named {username.strip()}.")
    return user

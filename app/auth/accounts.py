"""Account creation shared by the CLI and the first-run page."""
import re

from app.extensions import db
from app.models import User

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8


class AccountError(ValueError):
    pass


def create_user(username: str, password: str) -> User:
    username = username.strip()
    if not USERNAME.match(username):
        raise AccountError("A username is 1–64 letters, digits, '.', '_' or '-'.")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"The password needs at least {MIN_PASSWORD} characters.")
    if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
        raise AccountError(f"There is already a user named {username}.")
    user = User(username=username)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user

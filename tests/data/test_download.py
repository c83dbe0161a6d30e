import logging
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adaptls.data import download
from adaptls.data.download import ChecksumError, DownloadError, RemoteFile, fetch, md5_of


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _forbid_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_fetch_downloads_verifies_and_names_the_file_after_the_url(tmp_path, cifar10_remote):
    path = fetch(cifar10_remote, tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "cifar-10-python.tar.gz"
    assert md5_of(path) == cifar10_remote.md5
    assert _listing(tmp_path / "cache") == ["cifar-10-python.tar.gz"]


def test_a_verified_cached_file_is_not_downloaded_again(tmp_path, cifar10_remote, monkeypatch):
    path = fetch(cifar10_remote, tmp_path, progress=False)
    _forbid_network(monkeypatch)
    assert fetch(cifar10_remote, tmp_path, progress=False) == path
    assert fetch(cifar10_remote, tmp_path, download=False) == path


def test_a_corrupt_download_raises_and_leaves_no_file(tmp_path, cifar10_remote):
    source = Path(cifar10_remote.url.removeprefix("file://"))
    source.write_bytes(source.read_bytes()[:-100] + b"x" * 100)  # same size, other bytes
    actual = md5_of(source)
    with pytest.raises(ChecksumError, match=f"expected md5 {cifar10_remote.md5}, got {actual}"):
        fetch(cifar10_remote, tmp_path / "cache", progress=False)
    assert _listing(tmp_path / "cache") == []


def test_an_interrupted_download_leaves_no_file(tmp_path, cifar10_remote):
    missing = RemoteFile(cifar10_remote.url + ".gone", cifar10_remote.md5)
    with pytest.raises(DownloadError, match="could not download"):
        fetch(missing, tmp_path / "cache", progress=False, retries=0)
    assert _listing(tmp_path / "cache") == []


def _closed_port() -> int:
    """A localhost port nobody listens on: bound by the OS, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_is_one_line_with_no_retries(tmp_path, monkeypatch, caplog):
    """No network (here: a refused localhost port): no "interrupted, retry n of 3" lines
    for a connection that never came up, and one message naming the URL, the error and
    where to put the file by hand."""
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    remote = RemoteFile(url, md5="c58f30108f718f92721af3b95e74349a")
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(DownloadError) as error:
        fetch(remote, tmp_path / "cache", progress=False, retries=3)
    expected = tmp_path / "cache" / "cifar-10-python.tar.gz"
    assert re.fullmatch(
        re.escape(f"could not download {url}: cannot connect (ConnectionRefusedError: ")
        + r"\[Errno \d+\] Connection refused"
        + re.escape(f"). To go on without downloading, put that file at {expected} ")
        + re.escape(f"(md5 {remote.md5})"),
        str(error.value),
    ), str(error.value)
    assert sleeps == []
    assert caplog.records == []
    assert _listing(tmp_path / "cache") == []


def test_a_corrupt_cached_file_is_replaced_when_downloading_is_allowed(tmp_path, cifar10_remote):
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "cifar-10-python.tar.gz"
    cached.write_bytes(b"truncated")
    with pytest.raises(ChecksumError, match=r"is corrupt: expected md5 .*\(download=true\)"):
        fetch(cifar10_remote, cache, download=False)
    assert cached.read_bytes() == b"truncated"  # not ours to delete without permission
    fetch(cifar10_remote, cache, progress=False)
    assert md5_of(cached) == cifar10_remote.md5
    assert _listing(cache) == ["cifar-10-python.tar.gz"]


def test_a_missing_file_without_download_says_how_to_get_it(tmp_path, cifar10_remote):
    with pytest.raises(
        FileNotFoundError, match=r"download=false.*download=true.*" + cifar10_remote.md5
    ):
        fetch(cifar10_remote, tmp_path, download=False)


class _Response:
    """A urlopen answer that honours Range and can drop the connection after some bytes."""

    def __init__(self, body: bytes, start: int, cut_after: int | None) -> None:
        self.body, self.position, self.cut_after = body[start:], 0, cut_after
        self.status = 206 if start else 200
        self.headers = {"Content-Length": str(len(self.body))}

    def read(self, size: int) -> bytes:
        if self.cut_after is not None and self.position >= self.cut_after:
            raise ConnectionResetError("connection dropped")
        end = self.position + min(size, 1000)
        chunk, self.position = self.body[self.position : end], end
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_dropped_connection_resumes_where_it_stopped(tmp_path, cifar10_remote, monkeypatch):
    body = Path(cifar10_remote.url.removeprefix("file://")).read_bytes()
    ranges = []

    def urlopen(request, timeout):
        header = request.get_header("Range")
        start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
        ranges.append(start)
        return _Response(body, start, cut_after=3000 if len(ranges) == 1 else None)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    path = fetch(cifar10_remote, tmp_path, progress=False, retry_delay_s=0)
    assert ranges == [0, 3000]
    assert path.read_bytes() == body


def test_retries_are_bounded_and_leave_no_file(tmp_path, cifar10_remote, monkeypatch):
    body = Path(cifar10_remote.url.removeprefix("file://")).read_bytes()
    calls = []

    def urlopen(request, timeout):
        calls.append(request)
        return _Response(body, 0, cut_after=0)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    message = (
        f"could not download {cifar10_remote.url}: ConnectionResetError: connection dropped, "
        "after 2 resumed attempts. To go on without downloading, put that file at "
    )
    with pytest.raises(DownloadError, match="^" + re.escape(message)):
        fetch(cifar10_remote, tmp_path / "cache", progress=False, retries=2)
    assert len(calls) == 3
    assert _listing(tmp_path / "cache") == []


def test_a_dropped_transfer_whose_server_then_vanishes_is_retried(
    tmp_path, cifar10_remote, monkeypatch, caplog
):
    """Only the very first connection is final: after bytes have come, a failed reconnect
    is one more interrupted attempt."""
    body = Path(cifar10_remote.url.removeprefix("file://")).read_bytes()
    calls = []

    def urlopen(request, timeout):
        calls.append(request)
        if len(calls) == 1:
            return _Response(body, 0, cut_after=2000)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with caplog.at_level(logging.WARNING), pytest.raises(DownloadError, match="could not recon"):
        fetch(cifar10_remote, tmp_path / "cache", progress=False, retries=2)
    assert len(calls) == 3
    said = f"download of {cifar10_remote.url} interrupted after 2000 bytes"
    assert [r.getMessage() for r in caplog.records] == [
        f"{said} (ConnectionResetError: connection dropped), retry 1 of 2",
        f"{said} (could not reconnect), retry 2 of 2",
    ]


def test_a_sha256_is_checked_when_given(tmp_path, cifar10_remote):
    sha256 = download.digest_of(Path(cifar10_remote.url.removeprefix("file://")), "sha256")
    remote = RemoteFile(cifar10_remote.url, sha256=sha256)
    assert remote.checksum == ("sha256", sha256)
    path = fetch(remote, tmp_path / "cache", progress=False)
    assert download.digest_of(path, "sha256") == sha256
    wrong = RemoteFile(cifar10_remote.url, md5=cifar10_remote.md5, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=f"expected sha256 {'0' * 64}, got {sha256}"):
        fetch(wrong, tmp_path / "other", progress=False)
    assert _listing(tmp_path / "other") == []


def test_a_remote_file_needs_a_checksum():
    with pytest.raises(ValueError, match="needs an md5 or a sha256"):
        RemoteFile("https://example.org/file.zip")

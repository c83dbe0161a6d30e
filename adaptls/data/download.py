"""Checksum-verified, cached downloads that never leave a partial file behind.

A file is streamed into a temporary file in the destination directory (resuming with an
HTTP Range request if the connection drops), its md5 is checked, and only then is it
renamed into place: ``os.replace`` within one directory is atomic, so the destination
either does not exist or is complete and verified, even with several processes fetching
at once. On any failure, a checksum mismatch included, the temporary file is removed.

A file is identified by its md5 (what CIFAR's authors publish) or its SHA-256 (what other
sources publish, e.g. the Hugging Face dataset cards for WikiText); given both, the
SHA-256 is checked.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from tqdm.auto import tqdm

from adaptls.checks import atomic_write

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class ChecksumError(RuntimeError):
    """A file's checksum (md5 or SHA-256) is not the expected one."""


class DownloadError(OSError):
    """A file could not be fetched; the message is one line naming the URL, the error and
    where to put the file by hand."""


class _Described(OSError):
    """An error whose message already says what happened, in words for the user."""


class _NotConnected(_Described):
    """No connection to the server was made (unreachable host, no network, refused): a
    retry a few seconds later would fail the same way."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: where from and its md5 and/or SHA-256 (hex)."""

    url: str
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"RemoteFile({self.url!r}) needs an md5 or a sha256 to verify it")

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, expected hex digest) that verifies the file: SHA-256 when known."""
        return ("sha256", self.sha256) if self.sha256 is not None else ("md5", self.md5)


def digest_of(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest (``md5`` or ``sha256``) of a file, read in chunks."""
    with open(path, "rb") as file:
        return _digest_of_file(file, algorithm)


def _digest_of_file(file: BinaryIO, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def md5_of(path: str | os.PathLike[str]) -> str:
    """Hex md5 digest of a file, read in chunks."""
    return digest_of(path, "md5")


def fetch(
    remote: RemoteFile,
    data_dir: str | os.PathLike[str],
    *,
    download: bool = True,
    progress: bool = True,
    retries: int = 3,
    retry_delay_s: float = 2.0,
) -> Path:
    """Path of ``remote`` in ``data_dir``, verified; downloaded first if needed and allowed.

    A cached file with the right checksum is used as it is. A cached file with the wrong
    checksum is replaced when ``download`` is true and is an error otherwise.
    """
    path = Path(data_dir).expanduser() / remote.filename
    algorithm, expected = remote.checksum
    if path.is_file():
        actual = digest_of(path, algorithm)
        if actual == expected:
            return path
        if not download:
            raise ChecksumError(
                f"{path} is corrupt: expected {algorithm} {expected}, got {actual}; delete it, "
                f"or allow downloading (download=true) to fetch it again from {remote.url}"
            )
        log.warning(
            "%s has %s %s, expected %s: downloading it again", path, algorithm, actual, expected
        )
    elif not download:
        raise FileNotFoundError(
            f"{path} does not exist and download=false: allow downloading (download=true), "
            f"or fetch {remote.url} ({algorithm} {expected}) into {path.parent} yourself"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    download_verified(
        remote.url,
        path,
        expected,
        algorithm=algorithm,
        progress=progress,
        retries=retries,
        retry_delay_s=retry_delay_s,
    )
    return path


def download_verified(
    url: str,
    path: str | os.PathLike[str],
    expected: str,
    *,
    algorithm: str = "md5",
    progress: bool = True,
    retries: int = 3,
    retry_delay_s: float = 2.0,
) -> None:
    """Download ``url`` to ``path`` if and only if its ``algorithm`` digest is ``expected``
    (see the module doc).

    Raises DownloadError (one line: the URL, the error, where to put the file by hand)
    when the server cannot be reached, answers with an HTTP error, or the transfer keeps
    dropping after ``retries`` resumed attempts; ChecksumError when the bytes are wrong.
    """
    path = Path(path)
    with atomic_write(path, "w+b") as out:
        try:
            _stream(
                url, out, desc=path.name, progress=progress, retries=retries, delay=retry_delay_s
            )
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(
                f"could not download {url}: {_describe(error)}. To go on without "
                f"downloading, put that file at {path} ({algorithm} {expected})"
            ) from error
        out.seek(0)
        actual = _digest_of_file(out, algorithm)
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {url}: expected {algorithm} {expected}, got {actual}; "
                f"the download is corrupt or the server sent another file (nothing was "
                f"written to {path})"
            )


def _stream(
    url: str, out: BinaryIO, *, desc: str, progress: bool, retries: int, delay: float
) -> None:
    """Write the body of ``url`` to ``out``, resuming after a dropped connection.

    Only a transfer that was under way is retried: an HTTP error (the server answered, a
    404 will not get better) and a first connection that never came up (no network, an
    unknown host, a refused port) are raised at once.
    """
    for attempt in range(retries + 1):
        try:
            _stream_rest(url, out, desc=desc, progress=progress)
            return
        except urllib.error.HTTPError:
            raise
        except _NotConnected:
            if attempt == 0:
                raise
            error_now = "could not reconnect"
        except (OSError, http.client.HTTPException) as error:
            error_now = _describe(error)
        if attempt == retries:
            raise _Described(f"{error_now}, after {retries} resumed attempts")
        log.warning(
            "download of %s interrupted after %d bytes (%s), retry %d of %d",
            url,
            out.tell(),
            error_now,
            attempt + 1,
            retries,
        )
        time.sleep(delay * 2**attempt)


def _describe(error: BaseException) -> str:
    """What went wrong, in one line: ``<type>: <reason>`` without urllib's
    ``<urlopen error ...>`` wrapping."""
    if isinstance(error, _Described):
        return str(error)
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason
    return f"{type(error).__name__}: {error}"


def _stream_rest(url: str, out: BinaryIO, *, desc: str, progress: bool) -> None:
    """Append to ``out`` the part of ``url`` after the ``out.tell()`` bytes it holds."""
    done = out.tell()
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError:
        raise
    except (OSError, http.client.HTTPException) as error:
        raise _NotConnected(f"cannot connect ({_describe(error)})") from error
    with response:
        if done and getattr(response, "status", None) != 206:
            # The server ignored the Range header: it is sending everything again.
            out.seek(0)
            out.truncate()
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        bar = tqdm(
            total=total,
            initial=done,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not progress,
        )
        with bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))

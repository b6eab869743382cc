"""Locate, download and verify raw dataset files.

Resolution order for a file ``<file>`` of source ``<source>``:

1. the mirror: ``<dataset.mirror>/<source>/<file>`` (or ``$PMTREC_MIRROR`` when
   ``dataset.mirror`` is null) - a read-only shared folder, never modified;
2. the cache: ``<dataset.cache>/<source>/<file>``;
3. a download of ``dataset.<source>.url`` into the cache: a zip archive, from which the
   needed files are extracted, or, when the URL ends with ``/``, a folder from which each
   file is downloaded as ``<url><file>`` (sources published as loose files).

Every file is checked against its SHA-256 from ``dataset.<source>.files`` (a null
checksum skips the check). A cached or downloaded file with a wrong checksum is
deleted; a mirror file with a wrong checksum is an error (the mirror is not ours).

Downloads use only :mod:`urllib` (http, https and file URLs), write to a temporary
``.part`` file that is renamed when complete, resume with an HTTP Range request
when the server supports it, detect truncated transfers from Content-Length, and
retry with exponential backoff (``dataset.download.retries`` / ``backoff_s`` /
``timeout_s``).
"""

from __future__ import annotations

import hashlib
import http.client
import math
import json
import os
import logging
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable

from pmtrec.errors import ConfigError, DataError
from pmtrec.io import atomic_path

_LOG = logging.getLogger(__name__)
MIRROR_ENV = "PMTREC_MIRROR"
_CHUNK = 1 << 20
DEFAULT_DOWNLOAD = {"retries": 4, "backoff_s": 1.0, "timeout_s": 60.0}


# ----------------------------------------------------------------------------- helpers
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def mirror_dir(cfg: dict[str, Any]) -> Path | None:
    """The mirror folder: ``dataset.mirror``, else ``$PMTREC_MIRROR``, else None."""
    ds = cfg.get("dataset", {})
    value = ds.get("mirror")
    if value in (None, ""):
        value = os.environ.get(MIRROR_ENV) or None
    return Path(value).expanduser() if value else None


def cache_dir(cfg: dict[str, Any]) -> Path:
    value = cfg.get("dataset", {}).get("cache") or "resources/raw"
    return Path(value).expanduser()


def download_options(cfg: dict[str, Any]) -> dict[str, float]:
    """``dataset.download`` merged over the defaults and checked (a one-line ConfigError)."""
    given = cfg.get("dataset", {}).get("download") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"dataset.download: expected a mapping, got {given!r}")
    opts = dict(DEFAULT_DOWNLOAD)
    opts.update({k: v for k, v in given.items() if v is not None})
    for key, value in opts.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if key == "retries" and not (number and value == int(value) and value >= 0):
            raise ConfigError(f"dataset.download.retries: expected a non-negative integer, got {value!r}")
        if key == "backoff_s" and not (number and value >= 0):
            raise ConfigError(f"dataset.download.backoff_s: expected a non-negative number, got {value!r}")
        if key == "timeout_s" and not (number and value > 0):
            raise ConfigError(f"dataset.download.timeout_s: expected a positive number, got {value!r}")
    return opts


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https", "file", "ftp")


def verify(path: Path, expected: str | None, *, delete: bool) -> None:
    """Raise DataError when ``path``'s SHA-256 differs from ``expected`` (deleting it if asked)."""
    if not expected:
        return
    found = sha256_file(path)
    if found != expected.lower():
        if delete:
            path.unlink(missing_ok=True)
        extra = " (deleted)" if delete else ""
        raise DataError(f"{path}: SHA-256 mismatch{extra}: expected {expected}, found {found}")


# ----------------------------------------------------------------------------- download
class _Truncated(Exception):
    pass


def _progress(url: str, total: int | None, start: int):
    """A byte progress bar on a terminal (none in log files, or when the pmtrec logger is quieter
    than INFO, as with ``-q``)."""
    from tqdm.auto import tqdm

    from pmtrec.logs import console_quiet

    quiet = console_quiet()
    name = Path(urllib.parse.urlparse(url).path).name or url
    return tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                leave=False, file=sys.stderr, disable=True if quiet else None)  # None: off when not a TTY


def _permanent(exc: BaseException, url: str) -> str | None:
    """Why a failed attempt cannot succeed on retry (None: it might): an unknown host, a missing
    local file, an unsupported URL."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, socket.gaierror) or isinstance(exc, socket.gaierror):
        host = urllib.parse.urlparse(url).hostname
        return f"cannot resolve the host name{f' {host!r}' if host else ''} ({reason or exc})"
    if isinstance(reason, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return f"no such file ({reason.strerror or reason})"
    if isinstance(exc, ValueError):
        return f"not a URL pmtrec can download ({exc})"
    return None


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One attempt: append to ``part`` (resuming via Range when it has bytes)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pmtrec"})
    if have and urllib.parse.urlparse(url).scheme in ("http", "https"):
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        status = getattr(resp, "status", None) or resp.getcode() or 200
        mode = "wb"
        start = 0
        if have and status == 206:
            content_range = resp.headers.get("Content-Range", "")
            try:
                start = int(content_range.split()[1].split("-")[0])
            except (IndexError, ValueError):
                start = -1
            if start == have:
                mode = "ab"
            else:  # server answered a range we did not ask for: start over
                raise _Truncated(f"unexpected Content-Range '{content_range}'")
        else:
            start = 0
        length = resp.headers.get("Content-Length")
        expected_total = start + int(length) if length is not None and length.isdigit() else None
        with open(part, mode) as fh, _progress(url, expected_total, start) as bar:
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                fh.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if expected_total is not None and size != expected_total:
        raise _Truncated(f"got {size} of {expected_total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``, renamed when complete).

    Retries ``retries`` times after the first attempt, waiting ``backoff_s * 2**k``
    between attempts. HTTP 4xx errors other than 408/429 are not retried. Only a complete
    transfer is renamed to ``dest``; the ``.part`` file is removed when the download fails
    or is interrupted (Ctrl-C, or SIGTERM raised as an exception by the CLI).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    attempts = int(retries) + 1
    try:
        return _download_loop(url, dest, part, attempts, float(backoff_s), float(timeout_s), sleep)
    except BaseException:  # a failure, Ctrl-C or SIGTERM: no partial file is left behind
        part.unlink(missing_ok=True)
        raise


def _download_loop(url: str, dest: Path, part: Path, attempts: int, backoff_s: float, timeout_s: float,
                   sleep: Callable[[float], None]) -> Path:
    last = ""
    for attempt in range(attempts):
        try:
            _fetch_once(url, part, timeout_s)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 416:  # range not satisfiable: restart from zero
                part.unlink(missing_ok=True)
            elif 400 <= exc.code < 500 and exc.code not in (408, 429):
                last += "; not retried"
                break
        except _Truncated as exc:
            last = f"truncated transfer ({exc})"
            if "Content-Range" in str(exc):
                part.unlink(missing_ok=True)
        except http.client.IncompleteRead as exc:
            last = f"truncated transfer ({exc!r})"
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            permanent = _permanent(exc, url)
            if permanent:
                last = f"{permanent}; not retried"
                break
            reason = getattr(exc, "reason", None) or exc
            last = f"{type(exc).__name__}: {reason}"
        if attempt + 1 < attempts:
            sleep(backoff_s * (2**attempt))
    raise DataError(f"{url}: download failed after {attempt + 1} attempt(s): {last}")


def _extract(zip_path: Path, wanted: list[str], out_dir: Path) -> None:
    """Extract the members whose base name is in ``wanted`` to ``out_dir`` (atomically)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {}
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in wanted and not info.is_dir() and "__MACOSX" not in info.filename:
                    members.setdefault(base, info)
            missing = [w for w in wanted if w not in members]
            if missing:
                raise DataError(f"{zip_path}: archive lacks {', '.join(missing)}")
            for base, info in members.items():
                with atomic_path(out_dir / base) as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{zip_path}: not a valid zip archive ({exc}); deleted") from None


# ----------------------------------------------------------------------------- resolve
def from_manifest(cfg: dict[str, Any], source: str, name: str) -> Path | None:
    """The path a download manifest (``dataset.manifest``) gives for file or key ``name``, or None
    without a manifest. The download step located and checksummed the file; only its size is
    checked again here (a manifest whose file changed since is an error, not a silent reuse)."""
    manifest = (cfg.get("dataset") or {}).get("manifest")
    if not manifest:
        return None
    path = Path(manifest)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the download manifest ({exc})") from None
    if record.get("source") != source:
        raise DataError(f"{path}: a manifest of source '{record.get('source')}', not '{source}'")
    entry = (record.get("files") or {}).get(name)
    if not isinstance(entry, dict) or "path" not in entry:
        raise DataError(f"{path}: no file '{name}' in the manifest (rerun the download step)")
    found = Path(entry["path"])
    if not found.is_file() or found.stat().st_size != entry.get("bytes"):
        raise DataError(f"{path}: {found} is missing or changed since it was downloaded (rerun the download step)")
    return found


def _download_from(url: str, dest: Path, opts: dict, names: list[str], mirror: Path | None, cache: Path) -> Path:
    """:func:`download` whose failure also says where the files were looked for first."""
    _LOG.info("downloading %s -> %s", url, dest)
    try:
        return download(url, dest, retries=int(opts["retries"]), backoff_s=float(opts["backoff_s"]),
                        timeout_s=float(opts["timeout_s"]))
    except DataError as exc:
        where = (f"the mirror {mirror} or the cache {cache}" if mirror is not None
                 else f"the cache {cache} (no mirror: dataset.mirror or ${MIRROR_ENV})")
        raise DataError(f"{exc}; {', '.join(names)} not found in {where} either") from None


def resolve_files(cfg: dict[str, Any], source: str, files: dict[str, str | None] | None = None) -> dict[str, Path]:
    """Return verified local paths of every file of ``source`` (see module doc)."""
    ds = cfg.get("dataset", {})
    scfg = ds.get(source) or {}
    if files is None:
        files = scfg.get("files")
    if not isinstance(files, dict) or not files:
        raise DataError(f"dataset.{source}.files: expected a mapping file name -> sha256, got {files!r}")
    if ds.get("manifest"):  # located and checked by the download step already
        return {name: from_manifest(cfg, source, name) for name in files}
    mirror = mirror_dir(cfg)
    cache = cache_dir(cfg) / source
    out: dict[str, Path] = {}
    need: list[str] = []
    for name, digest in files.items():
        if mirror is not None and (mirror / source / name).is_file():
            path = mirror / source / name
            verify(path, digest, delete=False)
            _LOG.debug("%s: from the mirror, %s", name, path)
            out[name] = path
            continue
        path = cache / name
        if path.is_file():
            try:
                verify(path, digest, delete=True)
                _LOG.debug("%s: from the cache, %s", name, path)
                out[name] = path
                continue
            except DataError:
                pass  # corrupt cache entry was deleted: download again
        need.append(name)
    if need:
        url = scfg.get("url")
        if not url:
            where = f"{mirror / source} or {cache}" if mirror is not None else str(cache)
            raise DataError(f"{source}: {need[0]} not found in {where} and dataset.{source}.url is not set")
        opts = download_options(cfg)
        if str(url).endswith("/"):  # a folder of loose files
            for name in need:
                _download_from(f"{url}{name}", cache / name, opts, [name], mirror and mirror / source, cache)
                verify(cache / name, files[name], delete=True)
                out[name] = cache / name
            return {name: out[name] for name in files}
        archive = cache / (Path(urllib.parse.urlparse(url).path).name or f"{source}.zip")
        if not archive.name.endswith(".zip"):
            archive = archive.with_name(archive.name + ".zip")
        _download_from(url, archive, opts, need, mirror and mirror / source, cache)
        try:
            _extract(archive, need, cache)
        finally:
            archive.unlink(missing_ok=True)
        for name in need:
            verify(cache / name, files[name], delete=True)
            out[name] = cache / name
    return {name: out[name] for name in files}


def resolve_path_or_url(cfg: dict[str, Any], source: str, value: str, key: str) -> Path:
    """A local path, or a URL downloaded once into ``<cache>/<source>/``."""
    known = from_manifest(cfg, source, key)
    if known is not None:
        return known
    if is_url(value):
        name = Path(urllib.parse.urlparse(value).path).name
        if not name:
            raise DataError(f"dataset.{source}.{key}: URL '{value}' has no file name")
        mirror = mirror_dir(cfg)
        if mirror is not None and (mirror / source / name).is_file():
            return mirror / source / name
        dest = cache_dir(cfg) / source / name
        if not dest.is_file():
            _download_from(value, dest, download_options(cfg), [name], mirror and mirror / source, dest.parent)
        return dest
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(f"dataset.{source}.{key}: file not found: {path}")
    return path

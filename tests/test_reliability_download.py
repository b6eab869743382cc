"""Download faults against a local HTTP server: retries with backoff, dropped connections,
checksum mismatches, interrupted downloads, and the CLI's one-line errors.

(tests/test_data_fetch.py covers Range resumption, 503/404 handling, non-zip payloads and the
mirror/cache order; this file adds a server that drops the connection and ignores Range,
checks that no partial file ever sits under a final name, and goes through `pmtrec prepare`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from pmtrec.cli import main
from pmtrec.data.fetch import download, download_options, resolve_files
from local_http import LocalServer
from pmtrec.errors import ConfigError, DataError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mat_bytes(**variables) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables)
    return buf.getvalue()


def tang_files(seed: int = 0) -> dict[str, bytes]:
    """Real-format Ciao files large enough to survive the default k-core (5 per user, 3 per item)."""
    rng = np.random.default_rng(seed)
    rows = [[u, i, 1 + i % 4, 1 + (u + i) % 5, 1] for u in range(1, 41)
            for i in rng.choice(np.arange(1, 31), size=8, replace=False)]
    trust = [[u, 1 + u % 40] for u in range(1, 41)]
    return {"rating.mat": mat_bytes(rating=np.array(rows, dtype=np.float64)),
            "trustnetwork.mat": mat_bytes(trustnetwork=np.array(trust, dtype=np.float64)),
            "category.txt": b"1 A\n2 B\n3 C\n4 D\n"}


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"ciao/{name}", data)
    return buf.getvalue()


class Server(LocalServer):
    """Serves ``payload`` at every path. The first ``drop_first`` requests announce the full
    Content-Length, send ``drop_after`` bytes and close the connection. Range headers are ignored
    (a plain 200 each time). ``watch``: a path whose existence is recorded at every request."""

    def __init__(self, payload: bytes, drop_first: int = 0, drop_after: int = 100, watch: Path | None = None):
        self.payload, self.drop_first, self.drop_after, self.watch = payload, drop_first, drop_after, watch
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                n = len(outer.requests) + 1
                outer.requests.append({"time": time.monotonic(), "range": self.headers.get("Range"),
                                       "final_exists": outer.watch.exists() if outer.watch else None})
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(outer.payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                if n <= outer.drop_first:
                    self.wfile.write(outer.payload[:outer.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                self.wfile.write(outer.payload)
                self.close_connection = True

        self._serve(Handler)


def cfg_for(tmp_path: Path, url: str, files: dict[str, str | None], retries: int = 3, backoff: float = 0.01) -> dict:
    return {"dataset": {"source": "ciao", "mirror": None, "cache": str(tmp_path / "cache"),
                        "download": {"retries": retries, "backoff_s": backoff, "timeout_s": 5},
                        "ciao": {"url": url, "files": files}}}


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files left in a folder."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")) or p.name.startswith("."))


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch):
    monkeypatch.delenv("PMTREC_MIRROR", raising=False)


FILES = tang_files()
SUMS = {name: sha(data) for name, data in FILES.items()}


# ------------------------------------------------------------------------------ (a) good archive
def test_good_archive_is_downloaded_extracted_and_verified(tmp_path):
    with Server(make_zip(FILES)) as srv:
        paths = resolve_files(cfg_for(tmp_path, srv.url, SUMS), "ciao")
        assert len(srv.requests) == 1
    cache = tmp_path / "cache" / "ciao"
    assert {n: p.read_bytes() for n, p in paths.items()} == FILES
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # archive and temp files gone
    assert leftovers(tmp_path / "cache") == []


# ----------------------------------------------------------------------- (b) checksum mismatch
def test_corrupted_file_is_deleted_and_the_error_says_expected_and_found(tmp_path):
    corrupted = dict(FILES, **{"rating.mat": FILES["rating.mat"][:-7] + b"garbage"})
    with Server(make_zip(corrupted)) as srv:
        with pytest.raises(DataError) as err:
            resolve_files(cfg_for(tmp_path, srv.url, SUMS), "ciao")
    msg = str(err.value)
    assert "\n" not in msg
    assert "rating.mat: SHA-256 mismatch (deleted)" in msg
    assert f"expected {SUMS['rating.mat']}" in msg and f"found {sha(corrupted['rating.mat'])}" in msg
    cache = tmp_path / "cache" / "ciao"
    assert not (cache / "rating.mat").exists()
    assert leftovers(tmp_path / "cache") == []


# ------------------------------------------------------------------ (c) dropped connection, retries
def test_connection_dropped_mid_file_is_retried_with_backoff_then_succeeds(tmp_path):
    payload = make_zip(FILES)
    dest = tmp_path / "dl" / "ciao.zip"
    waits: list[float] = []
    with Server(payload, drop_first=2, drop_after=len(payload) // 3, watch=dest) as srv:
        out = download(srv.url, dest, retries=3, backoff_s=0.25, timeout_s=5, sleep=waits.append)
        requests = list(srv.requests)
    assert out == dest and dest.read_bytes() == payload
    assert len(requests) == 3                     # two dropped transfers, then the good one
    assert waits == [0.25, 0.5]                   # exponential backoff between attempts
    assert not any(r["final_exists"] for r in requests)  # never a partial file under the final name
    assert leftovers(dest.parent) == []


def test_backoff_from_the_config_is_slept_for_real(tmp_path):
    payload = make_zip(FILES)
    with Server(payload, drop_first=2, drop_after=50) as srv:
        t0 = time.monotonic()
        paths = resolve_files(cfg_for(tmp_path, srv.url, SUMS, retries=2, backoff=0.05), "ciao")
        elapsed = time.monotonic() - t0
        times = [r["time"] for r in srv.requests]
    assert paths["rating.mat"].read_bytes() == FILES["rating.mat"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    assert elapsed < 30


def test_a_connection_that_always_drops_gives_up_after_a_bounded_number_of_attempts(tmp_path):
    payload = make_zip(FILES)
    dest = tmp_path / "dl" / "ciao.zip"
    with Server(payload, drop_first=10**6, drop_after=10) as srv:
        with pytest.raises(DataError) as err:
            download(srv.url, dest, retries=2, backoff_s=0, timeout_s=5, sleep=lambda s: None)
        assert len(srv.requests) == 3
    msg = str(err.value)
    assert msg.startswith(srv.url) and "download failed after 3 attempt(s): truncated transfer" in msg
    assert "\n" not in msg
    assert not dest.exists() and leftovers(dest.parent) == []


def test_an_interrupted_download_leaves_no_partial_file(tmp_path):
    payload = make_zip(FILES)
    dest = tmp_path / "dl" / "ciao.zip"

    def interrupt(_seconds):  # Ctrl-C (or the CLI's SIGTERM exception) during the backoff
        assert (dest.parent / "ciao.zip.part").exists()  # the partial bytes of the dropped attempt
        raise KeyboardInterrupt

    with Server(payload, drop_first=1, drop_after=len(payload) // 2) as srv:
        with pytest.raises(KeyboardInterrupt):
            download(srv.url, dest, retries=3, backoff_s=1, timeout_s=5, sleep=interrupt)
    assert not dest.exists() and leftovers(dest.parent) == []


def test_unreachable_server_is_retried_then_a_one_line_error(tmp_path):
    with Server(b"") as srv:  # take a free port, then close it
        url = srv.url
    with pytest.raises(DataError, match=r"download failed after 2 attempt\(s\): URLError"):
        download(url, tmp_path / "x.zip", retries=1, backoff_s=0, timeout_s=2, sleep=lambda s: None)


@pytest.mark.parametrize("key, value, words", [
    ("retries", "x", "dataset.download.retries: expected a non-negative integer, got 'x'"),
    ("retries", -1, "dataset.download.retries: expected a non-negative integer, got -1"),
    ("backoff_s", "soon", "dataset.download.backoff_s: expected a non-negative number, got 'soon'"),
    ("timeout_s", 0, "dataset.download.timeout_s: expected a positive number, got 0"),
])
def test_bad_download_options_are_config_errors(key, value, words):
    with pytest.raises(ConfigError) as err:
        download_options({"dataset": {"download": {key: value}}})
    assert str(err.value) == words


# ------------------------------------------------------------------------------ through the CLI
def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def cli_args(tmp_path: Path, url: str, sums: dict[str, str], backoff: float = 0.01) -> list[str]:
    files = "{" + ", ".join(f"{k}: '{v}'" for k, v in sums.items()) + "}"
    return ["prepare", "--dataset", "ciao", "--set", f"dataset.cache={tmp_path / 'cache'}",
            "--set", f"dataset.mirror={tmp_path / 'empty-mirror'}", "--set", f"dataset.ciao.url={url}",
            "--set", f"dataset.ciao.files={files}", "--set", "dataset.download.retries=3",
            "--set", f"dataset.download.backoff_s={backoff}", "--out", str(tmp_path / "prepared")]


def test_prepare_downloads_through_dropped_connections(tmp_path):
    payload = make_zip(FILES)
    with Server(payload, drop_first=2, drop_after=len(payload) // 2) as srv:
        rc, out, err = run_cli(*cli_args(tmp_path, srv.url, SUMS))
        assert len(srv.requests) == 3
    assert rc == 0, err
    assert (tmp_path / "prepared" / "meta.json").is_file()
    assert leftovers(tmp_path / "cache") == [] and leftovers(tmp_path / "prepared") == []


def test_prepare_with_a_checksum_mismatch_is_one_line_and_exit_2(tmp_path):
    wrong = dict(SUMS, **{"trustnetwork.mat": "0" * 64})
    with Server(make_zip(FILES)) as srv:
        rc, out, err = run_cli(*cli_args(tmp_path, srv.url, wrong))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("pmtrec: error: ") and "trustnetwork.mat: SHA-256 mismatch (deleted)" in lines[0]
    assert f"expected {'0' * 64}, found {SUMS['trustnetwork.mat']}" in lines[0]
    assert not (tmp_path / "cache" / "ciao" / "trustnetwork.mat").exists()
    assert not (tmp_path / "prepared").exists()


def test_prepare_that_cannot_download_is_one_line_and_exit_2(tmp_path):
    with Server(make_zip(FILES), drop_first=10**6, drop_after=10) as srv:
        rc, out, err = run_cli(*cli_args(tmp_path, srv.url, SUMS, backoff=0))
        assert len(srv.requests) == 4  # retries=3
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "download failed after 4 attempt(s)" in err
    assert not (tmp_path / "prepared").exists() and leftovers(tmp_path / "cache") == []

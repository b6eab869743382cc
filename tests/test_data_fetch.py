"""Mirror / cache / download resolution and checksums, against a local http.server."""

from __future__ import annotations

import hashlib
import http.server
import io
import zipfile
from pathlib import Path

import pytest

from pmtrec.data.fetch import download, resolve_files, resolve_path_or_url, sha256_file
from local_http import LocalServer
from pmtrec.errors import DataError

FILES = {"rating.mat": b"R" * 5000 + b"end", "trustnetwork.mat": b"T" * 3000}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(files: dict[str, bytes], prefix: str = "ciao/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
        zf.writestr(prefix + "readme.txt", b"unrelated")
    return buf.getvalue()


class Server(LocalServer):
    """A local HTTP server with scripted failures; records every request."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.fail_first = 0        # answer 503 to the first N requests
        self.truncate_first = 0    # send half the body (with the full length) to the first N requests
        self.status = 200          # fixed status for every request (e.g. 404)
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests.append({"path": self.path, "range": self.headers.get("Range")})
                n = len(outer.requests)
                if outer.status != 200:
                    self.send_error(outer.status)
                    return
                if n <= outer.fail_first:
                    self.send_error(503)
                    return
                body, start = outer.payload, 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    body = outer.payload[start:]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if n <= outer.fail_first + outer.truncate_first:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._serve(Handler)


def cfg_for(tmp_path: Path, url: str | None, files: dict[str, str], mirror: Path | None = None) -> dict:
    return {"dataset": {"source": "ciao", "mirror": str(mirror) if mirror else None, "cache": str(tmp_path / "cache"),
                        "download": {"retries": 3, "backoff_s": 0.01, "timeout_s": 5},
                        "ciao": {"url": url, "files": files}}}


@pytest.fixture(autouse=True)
def no_env_mirror(monkeypatch):
    monkeypatch.delenv("PMTREC_MIRROR", raising=False)


def test_download_extracts_verifies_and_then_uses_the_cache(tmp_path):
    files = {name: digest(data) for name, data in FILES.items()}
    with Server(make_zip(FILES)) as srv:
        paths = resolve_files(cfg_for(tmp_path, srv.url, files), "ciao")
        assert len(srv.requests) == 1 and srv.requests[0]["path"] == "/datasets/ciao.zip"
    cache = tmp_path / "cache" / "ciao"
    assert paths == {name: cache / name for name in FILES}
    assert {name: p.read_bytes() for name, p in paths.items()} == FILES
    assert sorted(p.name for p in cache.iterdir()) == ["rating.mat", "trustnetwork.mat"]  # zip and temp files gone
    # server gone: the cache answers
    again = resolve_files(cfg_for(tmp_path, "http://127.0.0.1:9/unreachable.zip", files), "ciao")
    assert again == paths


def test_mirror_takes_precedence_and_is_verified_but_never_deleted(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "ciao").mkdir(parents=True)
    for name, data in FILES.items():
        (mirror / "ciao" / name).write_bytes(data)
    files = {name: digest(data) for name, data in FILES.items()}
    paths = resolve_files(cfg_for(tmp_path, None, files, mirror), "ciao")
    assert paths["rating.mat"] == mirror / "ciao" / "rating.mat"
    files["rating.mat"] = "0" * 64
    with pytest.raises(DataError, match=r"rating\.mat: SHA-256 mismatch: expected 0{64}, found " + digest(FILES["rating.mat"])):
        resolve_files(cfg_for(tmp_path, None, files, mirror), "ciao")
    assert (mirror / "ciao" / "rating.mat").exists()


def test_checksum_mismatch_of_a_download_deletes_it(tmp_path):
    files = {name: digest(data) for name, data in FILES.items()}
    files["trustnetwork.mat"] = "f" * 64
    with Server(make_zip(FILES)) as srv:
        with pytest.raises(DataError) as err:
            resolve_files(cfg_for(tmp_path, srv.url, files), "ciao")
    msg = str(err.value)
    assert "trustnetwork.mat: SHA-256 mismatch (deleted): expected " + "f" * 64 in msg
    assert "found " + digest(FILES["trustnetwork.mat"]) in msg and "\n" not in msg
    assert not (tmp_path / "cache" / "ciao" / "trustnetwork.mat").exists()


def test_corrupt_cache_file_is_replaced_by_a_fresh_download(tmp_path):
    files = {name: digest(data) for name, data in FILES.items()}
    cache = tmp_path / "cache" / "ciao"
    cache.mkdir(parents=True)
    (cache / "rating.mat").write_bytes(b"stale")
    (cache / "trustnetwork.mat").write_bytes(FILES["trustnetwork.mat"])
    with Server(make_zip(FILES)) as srv:
        paths = resolve_files(cfg_for(tmp_path, srv.url, files), "ciao")
        assert len(srv.requests) == 1
    assert paths["rating.mat"].read_bytes() == FILES["rating.mat"]


def test_retries_with_exponential_backoff_after_server_errors(tmp_path):
    waits: list[float] = []
    payload = b"x" * 10_000
    with Server(payload) as srv:
        srv.fail_first = 2
        out = download(srv.url, tmp_path / "f.zip", retries=3, backoff_s=0.5, sleep=waits.append)
        assert len(srv.requests) == 3
    assert out.read_bytes() == payload
    assert waits == [0.5, 1.0]
    assert not (tmp_path / "f.zip.part").exists()


def test_truncated_transfer_is_resumed_with_a_range_request(tmp_path):
    payload = bytes(range(256)) * 400
    with Server(payload) as srv:
        srv.truncate_first = 1
        out = download(srv.url, tmp_path / "f.zip", retries=2, backoff_s=0, sleep=lambda s: None)
        ranges = [r["range"] for r in srv.requests]
    assert out.read_bytes() == payload
    assert ranges == [None, f"bytes={len(payload) // 2}-"]


def test_download_gives_up_with_a_one_line_error(tmp_path):
    with Server(b"abc") as srv:
        srv.fail_first = 99
        with pytest.raises(DataError, match=r"ciao\.zip: download failed after 3 attempt\(s\): HTTP 503"):
            download(srv.url, tmp_path / "f.zip", retries=2, backoff_s=0, sleep=lambda s: None)
    assert not (tmp_path / "f.zip").exists() and not (tmp_path / "f.zip.part").exists()


def test_http_404_is_not_retried(tmp_path):
    with Server(b"abc") as srv:
        srv.status = 404
        with pytest.raises(DataError, match=r"download failed after 1 attempt\(s\): HTTP 404"):
            download(srv.url, tmp_path / "f.zip", retries=5, backoff_s=0, sleep=lambda s: None)
        assert len(srv.requests) == 1


def test_a_download_that_is_not_a_zip_is_a_data_error(tmp_path):
    files = {name: digest(data) for name, data in FILES.items()}
    with Server(b"<html>not found</html>") as srv:
        with pytest.raises(DataError, match=r"ciao\.zip: not a valid zip archive"):
            resolve_files(cfg_for(tmp_path, srv.url, files), "ciao")
    assert not (tmp_path / "cache" / "ciao" / "ciao.zip").exists()


def test_archive_missing_a_listed_file_names_it(tmp_path):
    files = {name: digest(data) for name, data in FILES.items()}
    files["category.txt"] = None
    with Server(make_zip(FILES)) as srv:
        with pytest.raises(DataError, match=r"ciao\.zip: archive lacks category\.txt"):
            resolve_files(cfg_for(tmp_path, srv.url, files), "ciao")


def test_path_or_url_downloads_once_into_the_cache(tmp_path):
    cfg = cfg_for(tmp_path, None, {})
    with Server(b"line\n") as srv:
        url = srv.url.replace("ciao.zip", "reviews.json")
        p1 = resolve_path_or_url(cfg, "amazon", url, "reviews")
        p2 = resolve_path_or_url(cfg, "amazon", url, "reviews")
        assert len(srv.requests) == 1
    assert p1 == p2 == tmp_path / "cache" / "amazon" / "reviews.json"
    assert sha256_file(p1) == digest(b"line\n")


def test_a_download_manifest_is_used_as_located_and_checked(tmp_path, monkeypatch):
    """prepare reads the files the download step recorded, without locating or hashing them again."""
    import json as _json

    from pmtrec.data import fetch

    raw = tmp_path / "a.dat"
    raw.write_bytes(b"12345")
    manifest = tmp_path / "m.json"
    manifest.write_text(_json.dumps({"dataset": "x", "source": "ciao", "files": {
        "a.dat": {"path": str(raw), "sha256": "not-checked-again", "bytes": 5}}}))
    cfg = {"dataset": {"manifest": str(manifest), "mirror": None, "cache": str(tmp_path / "cache"),
                       "ciao": {"files": {"a.dat": "0" * 64}}}}
    monkeypatch.setattr(fetch, "sha256_file", lambda p: pytest.fail("hashed again"))
    assert fetch.resolve_files(cfg, "ciao") == {"a.dat": raw}
    with pytest.raises(fetch.DataError, match="not 'epinions'"):
        fetch.resolve_files(cfg, "epinions", {"a.dat": None})
    with pytest.raises(fetch.DataError, match="no file 'b.dat'"):
        fetch.resolve_files(cfg, "ciao", {"b.dat": None})
    raw.write_bytes(b"123456")  # changed since the download step
    with pytest.raises(fetch.DataError, match="changed since it was downloaded"):
        fetch.resolve_files(cfg, "ciao")

"""common.data.download against a local HTTP server on 127.0.0.1: Range resume, md5 checks, tar extraction."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.data import download as D

pytestmark = pytest.mark.network


class Mirror:
    """A tiny Zenodo look-alike: /record/<id>/files/<name>, /api/records/<id>; Range support; can cut a transfer."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.api: dict[str, dict] = {}
        self.cut_after: dict[str, int] = {}  # name -> bytes sent before dropping the connection (once)
        self.requests: list[tuple[str, str | None]] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                mirror.requests.append((self.path, rng))
                if self.path.startswith("/api/records/"):
                    body = json.dumps(mirror.api[self.path.rsplit("/", 1)[1]]).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self.path.rsplit("/", 1)[1]
                if name not in mirror.files:
                    self.send_error(404)
                    return
                data = mirror.files[name]
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = mirror.cut_after.pop(name, None)
                self.wfile.write(data[start:cut] if cut is not None else data[start:])
                if cut is not None:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(monkeypatch):
    monkeypatch.setattr(D, "RETRY_BACKOFF_S", 0.0)
    m = Mirror()
    yield m
    m.close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_fetch_resumes_an_interrupted_transfer_with_range(mirror, tmp_path):
    data = bytes(range(256)) * 4000  # ~1 MB
    mirror.files["a.bin"] = data
    mirror.cut_after["a.bin"] = 300_000  # the first transfer stops early
    dest = D.fetch(f"{mirror.base}/record/1/files/a.bin", tmp_path / "a.bin", _md5(data), progress=False)
    assert dest.read_bytes() == data and not (tmp_path / "a.bin.part").exists()
    ranges = [r for p, r in mirror.requests if p.endswith("a.bin")]
    assert ranges == [None, "bytes=300000-"]  # second request continues at the byte where the first stopped


def test_fetch_resumes_a_part_file_left_by_an_earlier_run(mirror, tmp_path):
    data = b"x" * 5000 + b"y" * 5000
    mirror.files["b.bin"] = data
    (tmp_path / "b.bin.part").write_bytes(data[:4096])
    D.fetch(f"{mirror.base}/record/1/files/b.bin", tmp_path / "b.bin", _md5(data), progress=False)
    assert (tmp_path / "b.bin").read_bytes() == data
    assert mirror.requests == [("/record/1/files/b.bin", "bytes=4096-")]
    # a complete file with the right md5 is not downloaded again
    D.fetch(f"{mirror.base}/record/1/files/b.bin", tmp_path / "b.bin", _md5(data), progress=False)
    assert len(mirror.requests) == 1


def test_fetch_rejects_a_wrong_md5_and_keeps_no_file(mirror, tmp_path):
    mirror.files["c.bin"] = b"payload"
    with pytest.raises(RuntimeError, match="md5"):
        D.fetch(f"{mirror.base}/record/1/files/c.bin", tmp_path / "c.bin", "0" * 32, retries=2, progress=False)
    assert not (tmp_path / "c.bin").exists() and not (tmp_path / "c.bin.part").exists()
    assert len(mirror.requests) == 2  # retried from scratch once


def test_jetclass_tar_is_verified_extracted_and_skipped_on_rerun(mirror, tmp_path):
    tar = _tar({"val_5M/HToBB_120.root": b"root-bytes", "val_5M/TTBar_120.root": b"more"})
    mirror.files["JetClass_Pythia_val_5M.tar"] = tar
    md5 = {"JetClass_Pythia_val_5M.tar": _md5(tar)}  # the published md5 belongs to the real tar
    D.download("jetclass", tmp_path, parts=["val"], base=mirror.base, progress=False, md5_override=md5)
    root = tmp_path / "JetClass" / "Pythia"
    assert (root / "val_5M" / "HToBB_120.root").read_bytes() == b"root-bytes"
    assert not (root / "JetClass_Pythia_val_5M.tar").exists()  # archive removed after extraction
    n = len(mirror.requests)
    D.download("jetclass", tmp_path, parts=["val"], base=mirror.base, progress=False, md5_override=md5)
    assert len(mirror.requests) == n  # marker: nothing fetched again
    # without the override the published md5 applies, and the local tar does not match it
    with pytest.raises(RuntimeError, match="7235ccb577ed85023ea3ab4d5e6160cf"):
        D.download("jetclass", tmp_path / "other", parts=["val"], base=mirror.base, progress=False, retries=1)


def test_toptagging_md5_comes_from_the_zenodo_record(mirror, tmp_path):
    body = b"h5-bytes" * 100
    mirror.files["train.h5"] = body
    mirror.api["2603256"] = {"files": [{"key": "train.h5", "checksum": f"md5:{_md5(body)}"},
                                       {"key": "val.h5", "checksum": "md5:" + "1" * 32}]}
    (path,) = D.download("toptagging", tmp_path, parts=["train"], base=mirror.base, progress=False)
    assert path == tmp_path / "toptagging" / "train.h5" and path.read_bytes() == body
    mirror.api["2603256"]["files"][0]["checksum"] = "md5:" + "2" * 32
    path.unlink()
    with pytest.raises(RuntimeError, match="md5"):
        D.download("toptagging", tmp_path, parts=["train"], base=mirror.base, progress=False, retries=1)


def test_qg_file_list_and_unknown_parts():
    names = [f.name for f in D.dataset_spec("qg").files]
    assert names[0] == "QG_jets.npz" and names[-1] == "QG_jets_19.npz" and len(names) == 20
    bc = [f.name for f in D.dataset_spec("qg", withbc=True).files]
    assert bc[0] == "QG_jets_withbc_0.npz" and len(set(bc)) == 20  # no repeated _3, no missing _11
    with pytest.raises(ValueError, match="--parts"):
        D.download("jetclass", "/nonexistent", parts=["part42"], progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.dataset_spec("jetnet")


def test_extract_refuses_members_outside_the_target(tmp_path):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar({"../escape.txt": b"no"}))
    with pytest.raises(RuntimeError, match="unsafe"):
        D.extract(evil, tmp_path / "into")
    assert not (tmp_path / "escape.txt").exists()


def test_btag_files_come_from_the_record_metadata(mirror, tmp_path):
    bodies = {"train_1.root": b"t1" * 50, "validate.root": b"v" * 50, "test.root": b"t" * 50,
              "train_1_small.root": b"s" * 10, "README.md": b"r"}
    mirror.files.update(bodies)
    mirror.api["13350327"] = {"files": [{"key": k, "checksum": f"md5:{_md5(v)}"} for k, v in bodies.items()]}
    paths = D.download("btag", tmp_path, base=mirror.base, progress=False)
    assert sorted(p.name for p in paths) == ["test.root", "train_1.root", "validate.root"]  # no _small, no README
    assert all(p.parent == tmp_path / "btag" and p.read_bytes() == bodies[p.name] for p in paths)
    (path,) = D.download("btag", tmp_path / "one", parts=["validate"], base=mirror.base, progress=False)
    assert path.name == "validate.root"

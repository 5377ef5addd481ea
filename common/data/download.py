"""Download the real datasets from Zenodo, resuming partial downloads and checking the published md5 sums.

    python -m common.data.download jetclass   --out data/real [--parts part0,val,test]   # JetClass (Zenodo 6619768)
    python -m common.data.download toptagging --out data/real                            # Top tagging (Zenodo 2603256)
    python -m common.data.download qg         --out data/real [--withbc]                 # quark-gluon (Zenodo 3164691)
    python -m common.data.download btag       --out data/real                            # BTag (Zenodo 13350327)

Layout under --out (what `run_all.sh --profile paper` and the paper configs expect):
    JetClass/Pythia/{train_100M,val_5M,test_20M}/<proc>_NNN.root
    toptagging/{train,val,test}.h5
    qg/QG_jets.npz, QG_jets_1.npz, ... QG_jets_19.npz
    btag/train_*.root, validate.root, test.root   (the ROOT files of the record; its *_small* copies are skipped;
                                                   common/data/btag.py reads them as it reads jetssl's HDF5)

Each file is fetched to `<name>.part` with HTTP Range requests, so an interrupted download continues where it stopped;
it is renamed to its final name only after its md5 matches. JetClass md5 sums are the ones published with the
dataset (particle_transformer get_datasets.py); for the two other records the md5 sums are read
from the Zenodo record's metadata (Zenodo publishes an md5 per file). Tar archives are extracted and then deleted
unless --keep-archives; an `.extracted_<tar>` marker makes reruns skip them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import cli

ZENODO = "https://zenodo.org"
CHUNK = 1 << 20
RETRY_BACKOFF_S = 2.0  # first wait before resuming after a network error; doubles per attempt, capped at 30 s

# JetClass: (tar name, md5, directory under <out> to extract into); md5 sums as published (particle_transformer
# get_datasets.py).
_JETCLASS_TRAIN_MD5 = [
    "de4fd2dca2e68ab3c85d5cfd3bcc65c3", "9722a359c5ef697bea0fbf79bf50f003", "1e9f66cd1f915f9d10e90ae1d7761720",
    "47348fc8985319fa4806da87500482fa", "6b0ce16bd93b442a8d51914466990279", "416e347512e716de51d392bee327b8e9",
    "e9b9c1557b1b39bf0a16e4ab631ae451", "5bfc6cb285ccb7680cefa9ac82ad1a2e", "540c1a0d66dfad78d2b363c5740ccf86",
    "668f40b3275167ff7104c48317c0ae2a",
]


@dataclass
class RemoteFile:
    name: str             # file name in the Zenodo record
    md5: str | None       # None: read from the record's metadata
    subdir: str           # directory under --out where the file (or the tar's content) goes
    extract: bool = False
    part: str = ""        # selector for --parts


@dataclass
class Dataset:
    record: str
    files: list[RemoteFile] = field(default_factory=list)
    listed: tuple[str, str] | None = None  # (subdir, suffix): every file of the record with this suffix, from its
                                          # metadata (names not fixed in advance; names with "_small" skipped)


def dataset_spec(name: str, withbc: bool = False) -> Dataset:
    if name == "jetclass":
        files = [RemoteFile(f"JetClass_Pythia_train_100M_part{i}.tar", md5, "JetClass/Pythia/train_100M", True,
                            f"part{i}") for i, md5 in enumerate(_JETCLASS_TRAIN_MD5)]
        # the val / test tars hold the val_5M/ and test_20M/ directories themselves
        files.append(RemoteFile("JetClass_Pythia_val_5M.tar", "7235ccb577ed85023ea3ab4d5e6160cf", "JetClass/Pythia",
                                True, "val"))
        files.append(RemoteFile("JetClass_Pythia_test_20M.tar", "64e5156d26d101adeb43b8388207d767", "JetClass/Pythia",
                                True, "test"))
        return Dataset("6619768", files)
    if name == "toptagging":
        return Dataset("2603256", [RemoteFile(f"{s}.h5", None, "toptagging", False, s) for s in ("train", "val", "test")])
    if name == "qg":
        # 20 files per variant; do not mix the bc and no-bc variants (EnergyFlow energyflow/datasets/qg_jets.py)
        names = ([f"QG_jets_withbc_{i}.npz" for i in range(20)] if withbc
                 else ["QG_jets.npz"] + [f"QG_jets_{i}.npz" for i in range(1, 20)])
        return Dataset("3164691", [RemoteFile(n, None, "qg", False, n.removesuffix(".npz")) for n in names])
    if name == "btag":
        return Dataset("13350327", listed=("btag", ".root"))
    raise ValueError(f"unknown dataset '{name}': expected jetclass, toptagging, qg or btag")


def file_url(record: str, name: str, base: str = ZENODO) -> str:
    return f"{base.rstrip('/')}/record/{record}/files/{name}"


def zenodo_md5s(record: str, base: str = ZENODO, timeout: float = 60.0) -> dict[str, str]:
    """{file name: md5} from the Zenodo record metadata (files[].checksum = "md5:<hex>")."""
    url = f"{base.rstrip('/')}/api/records/{record}"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        meta = json.load(r)
    out = {}
    for f in meta.get("files", []):
        name = f.get("key") or f.get("filename")
        checksum = f.get("checksum", "")
        if name and checksum.startswith("md5:"):
            out[name] = checksum[4:]
    if not out:
        raise RuntimeError(f"{url}: no md5 checksums in the record metadata")
    return out


def md5sum(path, chunk: int = CHUNK) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest, md5: str | None, *, retries: int = 3, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download url to dest, resuming dest.part with an HTTP Range request; verify md5; atomic rename.

    A final file that already exists is only re-checked (md5) and kept when it matches.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if md5 is None or md5sum(dest) == md5:
            return dest
        print(f"{dest}: md5 mismatch, downloading again", file=sys.stderr)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _download_resume(url, part, timeout, progress)
        except (urllib.error.URLError, OSError, TimeoutError) as e:  # network drop: keep .part, retry from there
            last_error = e
            print(f"{url}: {e} (attempt {attempt}/{retries}); resuming", file=sys.stderr)
            time.sleep(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 30) if attempt < retries else 0)
            continue
        got = md5sum(part)
        if md5 is None or got == md5:
            os.replace(part, dest)
            return dest
        last_error = RuntimeError(f"{dest.name}: md5 {got} does not match the published {md5}")
        print(f"{last_error} (attempt {attempt}/{retries}); starting over", file=sys.stderr)
        part.unlink()
    raise RuntimeError(f"could not download {url} to {dest}: {last_error}")


def _download_resume(url: str, part: Path, timeout: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is complete (the md5 check decides)
            return
        raise
    with resp:
        if have and resp.status != 206:  # the server ignored the Range header: start from zero
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = _bar(total, have, part.name) if progress else None
        with open(part, "ab" if have else "wb") as f:
            while block := resp.read(CHUNK):
                f.write(block)
                if bar is not None:
                    bar.update(len(block))
        if bar is not None:
            bar.close()
    if total is not None and part.stat().st_size < total:
        raise OSError(f"connection closed early: {part.stat().st_size} of {total} bytes")


def _bar(total, initial, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=desc, mininterval=1.0)


def extract(archive, into) -> None:
    """Extract a tar archive into `into`, refusing members that would land outside it."""
    into = Path(into).resolve()
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = (into / m.name).resolve()
            if not (target == into or into in target.parents) or m.issym() or m.islnk():
                raise RuntimeError(f"{archive}: refusing unsafe member '{m.name}'")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and security backports): strict member filter
            tar.extractall(into, members=members, filter="data")
        else:
            tar.extractall(into, members=members)


def download(name: str, out, *, parts: list[str] | None = None, withbc: bool = False, base: str = ZENODO,
             keep_archives: bool = False, retries: int = 3, progress: bool = True,
             md5_override: dict[str, str] | None = None) -> list[Path]:
    """Download (and extract) one dataset under `out`; returns the final paths (directories for tars)."""
    spec = dataset_spec(name, withbc)
    md5s = dict(md5_override or {})
    if spec.listed is not None:  # the record's file list is its metadata
        md5s.update(zenodo_md5s(spec.record, base))
        subdir, suffix = spec.listed
        spec.files = [RemoteFile(n, md5s[n], subdir, False, n.removesuffix(suffix)) for n in sorted(md5s)
                      if n.endswith(suffix) and "_small" not in n]
    files = [f for f in spec.files if not parts or f.part in parts or f.name in parts]
    if parts and not files:
        raise ValueError(f"--parts {parts}: none of {[f.part for f in spec.files]}")
    if any(f.md5 is None and f.name not in md5s for f in files):
        md5s.update(zenodo_md5s(spec.record, base))
    out = Path(out)
    done = []
    for f in files:
        target_dir = out / f.subdir
        marker = target_dir / f".extracted_{f.name}"
        if f.extract and marker.exists():
            print(f"{f.name}: already extracted into {target_dir}")
            done.append(target_dir)
            continue
        md5 = md5s.get(f.name, f.md5)
        if md5 is None:
            raise RuntimeError(f"{f.name}: no md5 sum published in Zenodo record {spec.record}; refusing to download "
                               "unverified data")
        dest = fetch(file_url(spec.record, f.name, base), target_dir / f.name, md5, retries=retries, progress=progress)
        if f.extract:
            print(f"{f.name}: extracting into {target_dir}")
            extract(dest, target_dir)
            marker.write_text(md5 + "\n")
            if not keep_archives:
                dest.unlink()
            done.append(target_dir)
        else:
            done.append(dest)
        print(f"{f.name}: ok (md5 {md5})")
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["jetclass", "toptagging", "qg", "btag"])
    ap.add_argument("--out", default="data/real", help="data root (default data/real)")
    ap.add_argument("--parts", default=None,
                    help="comma-separated subset: jetclass part0..part9,val,test; toptagging train,val,test; "
                         "qg file stems (e.g. QG_jets,QG_jets_1); btag file stems (e.g. train_1,validate,test)")
    ap.add_argument("--withbc", action="store_true", help="qg: the udscb variant (QG_jets_withbc_*.npz)")
    ap.add_argument("--keep-archives", action="store_true", help="keep the tar files after extraction")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--base-url", default=ZENODO, help=argparse.SUPPRESS)  # tests: a local mirror
    args = ap.parse_args(argv)
    parts = args.parts.split(",") if args.parts else None
    try:
        download(args.dataset, args.out, parts=parts, withbc=args.withbc, base=args.base_url,
                 keep_archives=args.keep_archives, retries=args.retries)
    except (RuntimeError, ValueError, urllib.error.URLError) as e:
        print(f"common.data.download: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli(main)

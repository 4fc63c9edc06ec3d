#!/usr/bin/env python3
"""Fetch single members of a PyPI wheel without downloading the wheel.

vLLM wheels are 250-340 MB; the few .py files a replay needs are a few hundred KB. PyPI's file host
(files.pythonhosted.org) answers HTTP range requests, so this reads the zip's end-of-central-directory
record and central directory from the end of the file, then fetches and inflates only the members
asked for. Pure standard library (urllib, zlib, struct, json).

Layout of the cache (ROOT: $WHEELSRC_ROOT, else the harness's cache, $HARNESS_CACHE or .harness/cache):
    ROOT/src/<version>/<member path>          the member's bytes (CRC-checked)
    ROOT/src/<version>/.wheel.json            the chosen wheel (filename, url, sha256, size,
                                              alternates such as build-tag re-uploads) and the
                                              central directory: {name: [offset, csize, usize, method, crc]}

Usage:
    python -m harness.wheelsrc info VERSION                      which wheel, and its re-uploads
    python -m harness.wheelsrc list VERSION [SUBSTRING]          member names from the central directory
    python -m harness.wheelsrc fetch VERSION MEMBER|GLOB ...     fetch members (fnmatch globs allowed) into the cache
    python -m harness.wheelsrc fetch-all VERSIONS_CSV MEMBER...  the same over several versions
Options: --project NAME (default vllm), --platform-tag SUBSTR (default manylinux ... x86_64).

The pure parts (parse_eocd, parse_central_directory, parse_local_header, inflate, pick_wheel)
take bytes / dicts and are tested without the network (tests/test_harness.py).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from harness.paths import default_cache

ROOT = Path(os.environ.get("WHEELSRC_ROOT", default_cache()))
SIMPLE = "https://pypi.org/simple/{project}/"
ACCEPT = "application/vnd.pypi.simple.v1+json"
UA = "wheelsrc/0.1 (nemoverify harness)"

# ---------------------------------------------------------------- pure: choosing a wheel

_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def parse_wheel_filename(filename: str) -> dict | None:
    m = _WHEEL_RE.match(filename)
    return m.groupdict() if m else None


def pick_wheel(files: list[dict], version: str, platform: str = "manylinux*x86_64") -> tuple[dict, list[dict]]:
    """From a PEP 691 `files` list, the wheel of `version` whose platform tag matches the fnmatch
    pattern `platform`, preferring the one without a build tag (a `-1`/`-2` re-upload) and, among
    several, the newest platform tag. Returns (chosen, alternates): alternates are the other matching
    wheels of that version (the re-uploads), reported so that a caller can say which one it read."""
    cands = []
    for f in files:
        p = parse_wheel_filename(f["filename"])
        if not p or p["version"] != version or f.get("yanked"):
            continue
        if not any(fnmatch.fnmatch(t, platform) for t in p["plat"].split(".")):
            continue
        cands.append((p, f))
    if not cands:
        raise LookupError(f"no {platform} wheel for version {version}")
    # plain (no build tag) first; then build tag ascending
    cands.sort(key=lambda pf: (pf[0]["build"] is not None, int(re.match(r"\d+", pf[0]["build"] or "0").group())))
    chosen = cands[0][1]
    return chosen, [f for _, f in cands[1:]]


# ---------------------------------------------------------------- pure: zip structures

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOC_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CDH_SIG = b"PK\x01\x02"
LFH_SIG = b"PK\x03\x04"


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of the local file header
    csize: int
    usize: int
    method: int  # 0 stored, 8 deflate
    crc: int

    def as_list(self) -> list:
        return [self.offset, self.csize, self.usize, self.method, self.crc]


def parse_eocd(tail: bytes, tail_start: int) -> tuple[int, int, int | None]:
    """From the last bytes of a zip (`tail`, starting at absolute offset `tail_start`): the central
    directory's (offset, size) and, for zip64, None in place of an offset that must be read from the
    zip64 record, whose absolute offset is then returned third. Returns (cd_offset, cd_size, zip64_eocd_offset)."""
    i = tail.rfind(EOCD_SIG)
    if i < 0:
        raise ValueError("no end-of-central-directory record in the tail")
    (_, _, _, _, n_total, cd_size, cd_offset, _) = struct.unpack("<4sHHHHIIH", tail[i : i + 22])
    loc = i - 20
    if loc >= 0 and tail[loc : loc + 4] == ZIP64_LOC_SIG:
        (_, _, z64_off, _) = struct.unpack("<4sIQI", tail[loc : loc + 20])
        return cd_offset, cd_size, z64_off
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF or n_total == 0xFFFF:
        raise ValueError("zip64 markers without a zip64 locator")
    return cd_offset, cd_size, None


def parse_zip64_eocd(rec: bytes) -> tuple[int, int]:
    if rec[:4] != ZIP64_EOCD_SIG:
        raise ValueError("bad zip64 end-of-central-directory record")
    (_, _, _, _, _, _, _, _, cd_size, cd_offset) = struct.unpack("<4sQHHIIQQQQ", rec[:56])
    return cd_offset, cd_size


def parse_central_directory(cd: bytes) -> dict[str, Member]:
    out: dict[str, Member] = {}
    i = 0
    while i + 46 <= len(cd) and cd[i : i + 4] == CDH_SIG:
        (_, _, _, _, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _, off) = struct.unpack(
            "<4sHHHHHHIIIHHHHHII", cd[i : i + 46]
        )
        name = cd[i + 46 : i + 46 + nlen].decode("utf-8")
        extra = cd[i + 46 + nlen : i + 46 + nlen + xlen]
        if 0xFFFFFFFF in (csize, usize, off):  # zip64 extended information extra field
            j = 0
            while j + 4 <= len(extra):
                hid, hlen = struct.unpack("<HH", extra[j : j + 4])
                if hid == 1:
                    vals = iter(struct.unpack("<" + "Q" * (hlen // 8), extra[j + 4 : j + 4 + (hlen // 8) * 8]))
                    if usize == 0xFFFFFFFF:
                        usize = next(vals)
                    if csize == 0xFFFFFFFF:
                        csize = next(vals)
                    if off == 0xFFFFFFFF:
                        off = next(vals)
                    break
                j += 4 + hlen
        out[name] = Member(name, off, csize, usize, method, crc)
        i += 46 + nlen + xlen + clen
    return out


def parse_local_header(buf: bytes) -> int:
    """Length of a local file header (30 + name + extra) from its first 30 bytes."""
    if buf[:4] != LFH_SIG:
        raise ValueError("bad local file header signature")
    nlen, xlen = struct.unpack("<HH", buf[26:30])
    return 30 + nlen + xlen


def inflate(member: Member, data: bytes) -> bytes:
    if member.method == 0:
        out = data
    elif member.method == 8:
        d = zlib.decompressobj(-15)
        out = d.decompress(data) + d.flush()
    else:
        raise ValueError(f"{member.name}: unsupported compression method {member.method}")
    if len(out) != member.usize or zlib.crc32(out) & 0xFFFFFFFF != member.crc:
        raise ValueError(f"{member.name}: size/CRC mismatch after inflating")
    return out


# ---------------------------------------------------------------- network

def _open(req: urllib.request.Request, tries: int = 4):
    for attempt in range(tries):
        try:
            return urllib.request.urlopen(req, timeout=60)
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            if attempt == tries - 1:
                raise
            time.sleep(1.5 * (attempt + 1))


def http_range(url: str, start: int, end_inclusive: int | None = None, suffix: int | None = None) -> bytes:
    rng = f"bytes=-{suffix}" if suffix is not None else f"bytes={start}-{end_inclusive}"
    req = urllib.request.Request(url, headers={"Range": rng, "User-Agent": UA})
    with _open(req) as r:
        if r.status != 206:
            raise RuntimeError(f"{url}: range request answered {r.status}, not 206 (no range support?)")
        return r.read()


def simple_index(project: str) -> dict:
    req = urllib.request.Request(SIMPLE.format(project=project), headers={"Accept": ACCEPT, "User-Agent": UA})
    with _open(req) as r:
        return json.load(r)


class RemoteWheel:
    """One wheel on PyPI, read by range requests, its central directory cached on disk."""

    def __init__(self, project: str, version: str, platform: str = "manylinux*x86_64", root: Path = ROOT):
        self.project, self.version = project, version
        self.dir = root / "src" / (version if project == "vllm" else f"{project}-{version}")
        meta_path = self.dir / ".wheel.json"
        if meta_path.exists():
            self.meta = json.loads(meta_path.read_text())
        else:
            idx = simple_index(project)
            chosen, alternates = pick_wheel(idx["files"], version, platform)
            self.meta = {
                "project": project,
                "version": version,
                "filename": chosen["filename"],
                "url": chosen["url"].split("#")[0],
                "sha256": chosen.get("hashes", {}).get("sha256"),
                "size": chosen.get("size"),
                "alternates": [
                    {"filename": a["filename"], "url": a["url"].split("#")[0], "sha256": a.get("hashes", {}).get("sha256")}
                    for a in alternates
                ],
                "members": {n: m.as_list() for n, m in self._read_cd(chosen["url"].split("#")[0]).items()},
            }
            self.dir.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps(self.meta, indent=0, sort_keys=True))
        self.members = {n: Member(n, *v) for n, v in self.meta["members"].items()}

    @staticmethod
    def _read_cd(url: str) -> dict[str, Member]:
        tail_len = 65536 + 22
        tail = http_range(url, 0, suffix=tail_len)
        # total size from a 1-byte probe is not needed: a suffix range returns the last bytes
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": UA})
        with _open(req) as r:
            total = int(r.headers["Content-Length"])
        tail_start = total - len(tail)
        cd_off, cd_size, z64 = parse_eocd(tail, tail_start)
        if z64 is not None:
            rec = http_range(url, z64, z64 + 55) if z64 < tail_start else tail[z64 - tail_start : z64 - tail_start + 56]
            cd_off, cd_size = parse_zip64_eocd(rec)
        if cd_off >= tail_start:
            cd = tail[cd_off - tail_start : cd_off - tail_start + cd_size]
        else:
            cd = http_range(url, cd_off, cd_off + cd_size - 1)
        return parse_central_directory(cd)

    def names(self, pattern: str | None = None) -> list[str]:
        if pattern is None:
            return sorted(self.members)
        if any(c in pattern for c in "*?["):
            return sorted(n for n in self.members if fnmatch.fnmatch(n, pattern))
        return [pattern] if pattern in self.members else []

    def path(self, name: str) -> Path:
        return self.dir / name

    def fetch(self, name: str) -> Path:
        dest = self.path(name)
        if dest.exists():
            return dest
        m = self.members[name]
        url = self.meta["url"]
        slack = 30 + len(name.encode()) + 256  # the local extra field may differ from the central one
        buf = http_range(url, m.offset, m.offset + slack + m.csize - 1)
        hdr = parse_local_header(buf)
        if hdr + m.csize > len(buf):
            buf = http_range(url, m.offset, m.offset + hdr + m.csize - 1)
        data = inflate(m, buf[hdr : hdr + m.csize])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
        return dest


def fetch(version: str, patterns: list[str], project: str = "vllm", platform: str = "manylinux*x86_64") -> list[Path]:
    w = RemoteWheel(project, version, platform)
    out = []
    for p in patterns:
        names = w.names(p)
        if not names:
            print(f"{project} {version}: no member {p}", file=sys.stderr)
        for n in names:
            out.append(w.fetch(n))
    return out


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default="vllm")
    ap.add_argument("--platform-tag", default="manylinux*x86_64")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info")
    s.add_argument("version")
    s = sub.add_parser("list")
    s.add_argument("version")
    s.add_argument("substring", nargs="?")
    s = sub.add_parser("fetch")
    s.add_argument("version")
    s.add_argument("members", nargs="+")
    s = sub.add_parser("fetch-all")
    s.add_argument("versions")
    s.add_argument("members", nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "info":
        w = RemoteWheel(a.project, a.version, a.platform_tag)
        print(json.dumps({k: v for k, v in w.meta.items() if k != "members"}, indent=1))
    elif a.cmd == "list":
        w = RemoteWheel(a.project, a.version, a.platform_tag)
        for n in w.names():
            if a.substring is None or a.substring in n:
                print(n)
    elif a.cmd == "fetch":
        for p in fetch(a.version, a.members, a.project, a.platform_tag):
            print(p)
    else:
        for v in a.versions.split(","):
            for p in fetch(v, a.members, a.project, a.platform_tag):
                print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

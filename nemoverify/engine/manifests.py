"""Manifests: one digest per tensor, recorded once when a checkpoint is produced, checked on every copy.

Digests are the tensor digests of `hashing` (the hash of the tensor's stored bytes), computed by the
reference reader (`loaders.reference`): as fast as the disk allows, one read buffer per worker.

The `resources` list holds `{name, algorithm, digest}` entries, the shape of the OpenSSF
model-signing in-toto predicate's resources, so a manifest's entries can be carried and signed there.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from nemoverify import _version
from nemoverify.checkpoint.header import DTYPE_BITS
from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.checkpoint.problems import CONTROL_CHARACTER, has_control_character
from nemoverify.checkpoint.storage import UnsafeName, read_bounded
from nemoverify.errors import ManifestError
from nemoverify.hashing import ALGORITHMS, root_digest, root_digest_v1
from nemoverify.observations import Observation
from nemoverify.progress import Progress
from nemoverify.readers.stored_bytes import hash_checkpoint
from nemoverify.report import Finding

FORMAT = "nemoverify.manifests/v2"
FORMAT_V1 = "nemoverify.manifests/v1"  # read, never written: its root is checked under its own definition
DIGEST_DEFINITION = (
    "digest: <algorithm> over the tensor's stored bytes, file[8 + header_len + begin : 8 + header_len + end]; "
    "root: <algorithm> over b'nemoverify.root/v2\\n' then, per tensor sorted by name: name, dtype, shape, "
    "digest, each framed by a little-endian u64 (a text: its UTF-8 length, then its UTF-8 bytes; a shape: "
    "its number of dimensions, then each dimension as a u64)"
)
DIGEST_DEFINITION_V1 = (
    "digest: <algorithm> over the tensor's stored bytes, file[8 + header_len + begin : 8 + header_len + end]; "
    "root: <algorithm> over 'name\\tdtype\\t[shape]\\tdigest\\n' lines sorted by name"
)
MAX_MANIFEST_BYTES = 256 << 20  # about 300 bytes a tensor: 800,000 tensors; parsed whole, ~10x in memory
DIGEST_HEX_DIGITS = {"xxh3-128": 32, "blake3": 64, "sha256": 64, "lin128": 32}
U64_MAX = (1 << 64) - 1


@dataclass(frozen=True)
class Manifest:
    algorithm: str
    tensors: dict[str, Observation]  # what a checkpoint must deliver to match, tensor by tensor
    shard_of: dict[str, str]  # tensor name -> the shard file that held it
    shards: dict[str, int]  # shard file name -> size in bytes
    format: str = FORMAT  # FORMAT_V1 for a manifest an older nemoverify recorded

    def root(self, component: str | None = None) -> str:
        chosen = (t for t in self.tensors.values() if component is None or t.component == component)
        if self.format == FORMAT_V1:
            return root_digest_v1(self.algorithm, chosen)
        return root_digest(self.algorithm, chosen)

    def to_dict(self) -> dict[str, object]:

        components = sorted({t.component for t in self.tensors.values()})
        return {
            "format": self.format,
            "created_by": f"nemoverify {_version.__version__}",
            "algorithm": self.algorithm,
            "digest_definition": DIGEST_DEFINITION_V1 if self.format == FORMAT_V1 else DIGEST_DEFINITION,
            "root": self.root(),
            "components": {c: self.root(c) for c in components},
            "shards": [{"name": n, "size": s} for n, s in sorted(self.shards.items())],
            "resources": [
                {
                    "name": t.name,
                    "algorithm": self.algorithm,
                    "digest": t.digest,
                    "component": t.component,
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "bytes": t.nbytes,
                    "shard": self.shard_of[t.name],
                }
                for t in sorted(self.tensors.values(), key=lambda t: t.name)
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def load_manifest(path: str) -> Manifest:
    """Read a manifest and check it whole: every field of every entry, and the root over them all.
    A v1 manifest (recorded before roots were framed) is checked under its own root definition,
    which is unambiguous once every name is known to hold no control character."""
    try:
        raw = _decompressed(read_bounded(path, MAX_MANIFEST_BYTES))
        data = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except RecursionError:
        raise ManifestError(f"{path}: cannot read the manifest: its JSON nests too deeply to parse") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt not in (FORMAT, FORMAT_V1):
        if isinstance(fmt, str) and fmt.startswith("nemoverify.manifests/"):
            raise ManifestError(
                f"{path}: manifest format {fmt!r} is not one this nemoverify reads ({FORMAT}, {FORMAT_V1})"
            )
        raise ManifestError(f"{path}: not a nemoverify manifest (expected format {FORMAT!r})")
    assert isinstance(data, dict)
    algorithm = data.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ManifestError(f"{path}: unknown digest algorithm {algorithm!r}")
    resources, shard_list = data.get("resources"), data.get("shards")
    if not isinstance(resources, list) or not isinstance(shard_list, list):
        raise ManifestError(f"{path}: malformed manifest: 'resources' and 'shards' must be lists")
    tensors: dict[str, Observation] = {}
    shard_of: dict[str, str] = {}
    hex_digest = re.compile(f"[0-9a-f]{{{DIGEST_HEX_DIGITS[algorithm]}}}").fullmatch
    for i, entry in enumerate(resources):
        # The well-formed entry in few operations (25,000-tensor manifests are real); any other
        # is checked field by field, which says what is wrong.
        read = _well_formed_resource(entry, hex_digest)
        obs, shard = read if read is not None else _resource(entry, algorithm, f"{path}: resources[{i}]")
        if obs.name in tensors:
            raise ManifestError(f"{path}: resources[{i}]: tensor {obs.name!r} is listed twice")
        tensors[obs.name], shard_of[obs.name] = obs, shard
    shards: dict[str, int] = {}
    for i, entry in enumerate(shard_list):
        where = f"{path}: shards[{i}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: not an object")
        name = _name(entry, "name", where)
        if name in shards:
            raise ManifestError(f"{where}: shard {name!r} is listed twice")
        shards[name] = _count(entry, "size", where)
    manifest = Manifest(algorithm, tensors, shard_of, shards, fmt)
    if data.get("root") != manifest.root():
        raise ManifestError(
            f"{path}: the manifest's root digest does not match its entries (under the {fmt} definition): it was edited"
        )
    # The per-component roots are what a person compares by eye: they must say what the entries say.
    recorded = data.get("components")
    expected = manifest.to_dict()["components"]
    if recorded != expected:
        raise ManifestError(
            f"{path}: the manifest's component roots do not match its entries (under the {fmt} definition): it was edited"
        )
    return manifest


GZIP_MAGIC = b"\x1f\x8b"


def _decompressed(data: bytes) -> bytes:
    """A gzip manifest (`manifest -o m.json.gz`, or `-o - | gzip`), known by its magic bytes whatever
    its name, decompressed within the same bound as a plain one."""
    if not data.startswith(GZIP_MAGIC):
        return data
    reader = zlib.decompressobj(wbits=31)  # gzip framing; one member
    try:
        out = reader.decompress(data, MAX_MANIFEST_BYTES + 1)
    except zlib.error as exc:
        raise ValueError(f"a damaged gzip file ({exc})") from None
    if len(out) > MAX_MANIFEST_BYTES or reader.unconsumed_tail:
        raise ValueError(f"it decompresses to more than {MAX_MANIFEST_BYTES:,} bytes; refused")
    if not reader.eof:
        raise ValueError("a gzip file cut short")
    if reader.unused_data:  # a second member, or bytes appended: not one manifest
        raise ValueError("a gzip file with more after its first member")
    return out


def compressed_if_named(path: str, text: str) -> str | bytes:
    """A manifest written to a path ending .gz is gzip (reproducible: no name, no time)."""
    if not path.endswith(".gz"):
        return text
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def _not_json(literal: str) -> object:
    raise ValueError(f"{literal} is not a JSON value")


def _well_formed_resource(entry: object, hex_digest: Callable[[str], object]) -> tuple[Observation, str] | None:
    """A `resources` entry that passes every check of `_resource`, or None (then `_resource` says
    which fails). JSON gives exact types: `type(x) is int` rules out bool, as `_count` does."""
    if type(entry) is not dict:
        return None
    name, component, shard = entry.get("name"), entry.get("component"), entry.get("shard")
    dtype, shape, digest, nbytes = entry.get("dtype"), entry.get("shape"), entry.get("digest"), entry.get("bytes")
    if (
        type(name) is str
        and name
        and type(component) is str
        and type(shard) is str
        and shard
        and type(dtype) is str
        and dtype in DTYPE_BITS
        and type(shape) is list
        and all(type(d) is int and 0 <= d <= U64_MAX for d in shape)
        and type(digest) is str
        and hex_digest(digest)
        and type(nbytes) is int
        and 0 <= nbytes <= U64_MAX
        and not has_control_character(name + component + shard)
    ):
        return Observation(name, component, dtype, tuple(shape), nbytes, digest), shard
    return None


def _resource(entry: object, algorithm: str, where: str) -> tuple[Observation, str]:
    """One `resources` entry, every field checked: a manifest is input like any other."""
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: not an object")
    name = _name(entry, "name", where)
    where = f"{where} ({name!r})"
    component = entry.get("component")
    if not isinstance(component, str) or CONTROL_CHARACTER.search(component):
        raise ManifestError(f"{where}: 'component' is not a plain string")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise ManifestError(f"{where}: 'dtype' {dtype!r} is not a safetensors dtype")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= U64_MAX for d in shape):
        raise ManifestError(f"{where}: 'shape' is not a list of integers from 0 to 2**64-1")
    digest = entry.get("digest")
    digits = DIGEST_HEX_DIGITS[algorithm]
    if not isinstance(digest, str) or not re.fullmatch(f"[0-9a-f]{{{digits}}}", digest):
        raise ManifestError(f"{where}: 'digest' is not {digits} lowercase hex digits ({algorithm})")
    shard = _name(entry, "shard", where)
    return Observation(name, component, dtype, tuple(shape), _count(entry, "bytes", where), digest), shard


def _name(entry: dict[str, object], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: {key!r} is not a non-empty string (got {type(value).__name__})")
    if CONTROL_CHARACTER.search(value):
        raise ManifestError(f"{where}: {key!r} {value!r} holds a control character; refused")
    return value


def _count(entry: dict[str, object], key: str, where: str) -> int:
    value = entry.get(key)
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise ManifestError(f"{where}: {key!r} is not an integer from 0 to 2**64-1 (got {repr(value)[:40]})")
    return value


def build_manifest(checkpoint: Checkpoint, algorithm: str, progress: Progress) -> Manifest:
    """The manifest of an admitted checkpoint (`api.manifest`)."""
    delivered = hash_checkpoint(checkpoint, algorithm, progress)
    shard_of = {info.name: shard.name for shard, info in checkpoint.tensors()}
    return Manifest(algorithm, delivered.observations, shard_of, {s.name: s.size for s in checkpoint.shards})


def shard_findings(manifest: Manifest, checkpoint: Checkpoint) -> list[Finding]:
    """Shard files the manifest records that are missing, of another size, or new. A recorded shard
    is `missing` whether the index names it (a `shard-missing` problem) or not (never listed)."""
    findings: list[Finding] = []
    present = {s.name: s.size for s in checkpoint.shards}
    files = _recorded_shard_files(manifest, checkpoint)
    broken = {files[p.file] for p in checkpoint.errors() if p.file in files}

    def missing(name: str, size: int) -> Finding:
        return Finding(name, "shard", "missing", f"{size:,} bytes", None, "manifest")

    for name, size in sorted(manifest.shards.items()):
        actual = present.get(name)
        if actual is None and name not in broken:
            findings.append(missing(name, size))
        elif actual is None or actual != size:
            try:
                actual = checkpoint.storage.size(name)
            except FileNotFoundError:  # named by the index, absent: the same finding as unlisted
                findings.append(missing(name, size))
                continue
            except (OSError, UnsafeName):
                actual = None
            if actual != size:
                findings.append(
                    Finding(
                        name,
                        "shard",
                        "size",
                        f"{size:,} bytes",
                        f"{actual:,} bytes" if actual is not None else None,
                        "manifest",
                    )
                )
    for name in sorted(set(present) - set(manifest.shards)):
        findings.append(Finding(name, "shard", "unexpected", None, f"{present[name]:,} bytes", "manifest"))
    return findings


def _recorded_shard_files(manifest: Manifest, checkpoint: Checkpoint) -> dict[str, str]:
    """Where a problem in each shard the manifest records would say it is (the file a problem
    names: the checkpoint root joined with the name, or where storage locates it) -> the shard."""
    root = checkpoint.root.rstrip("/")
    files: dict[str, str] = {}
    for name in manifest.shards:
        files[f"{root}/{name}"] = name
        with contextlib.suppress(UnsafeName):  # a name that escapes the checkpoint names no file
            files[checkpoint.storage.locate(name)] = name
    return files


# Structural errors that only say a recorded shard is absent or of the wrong length (a copy cut
# short, grown, or never made), which the manifest's shard records already report by name, each
# with the finding that explains it. Any other (a header the crate refuses, say) is exit 3.
EXPLAINED_BY = {
    "shard-missing": "missing",
    "file-truncated": "size",
    "file-trailing-bytes": "size",
    "header-length": "size",
}


def explained_by_manifest(
    manifest: Manifest, checkpoint: Checkpoint, findings: list[Finding], strict: bool = False
) -> bool:
    """Every structural error (under `strict`, every warning too) is a shard the manifest records
    that is missing, or whose size the manifest shows is wrong, each in a shard with that finding."""
    files = _recorded_shard_files(manifest, checkpoint)
    found = {(f.name, f.kind) for f in findings if f.component == "shard" and f.against == "manifest"}
    return all(
        p.rule in EXPLAINED_BY and p.file in files and (files[p.file], EXPLAINED_BY[p.rule]) in found
        for p in checkpoint.errors(strict)
    )

"""Manifests: one digest per tensor, recorded once when a checkpoint is produced, checked on every copy.

Digests are the tensor digests of `hashing` (the hash of the tensor's stored bytes), computed by the
reference reader (`loaders.reference`): as fast as the disk allows, one read buffer per worker.

The `resources` list holds `{name, algorithm, digest}` entries, the shape of the OpenSSF
model-signing in-toto predicate's resources, so a manifest's entries can be carried and signed there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.errors import ManifestError
from nemoverify.hashing import ALGORITHMS, root_digest
from nemoverify.loaders.reference import Progress, hash_checkpoint
from nemoverify.report import Finding, Observation

FORMAT = "nemoverify.manifest/v1"
DIGEST_DEFINITION = (
    "digest: <algorithm> over the tensor's stored bytes, file[8 + header_len + begin : 8 + header_len + end]; "
    "root: <algorithm> over 'name\\tdtype\\t[shape]\\tdigest\\n' lines sorted by name"
)


@dataclass(frozen=True)
class Manifest:
    algorithm: str
    tensors: dict[str, Observation]  # what a checkpoint must deliver to match, tensor by tensor
    shard_of: dict[str, str]  # tensor name -> the shard file that held it
    shards: dict[str, int]  # shard file name -> size in bytes

    def root(self, component: str | None = None) -> str:
        chosen = (t for t in self.tensors.values() if component is None or t.component == component)
        return root_digest(self.algorithm, chosen)

    def to_dict(self) -> dict[str, object]:
        from nemoverify import __version__

        components = sorted({t.component for t in self.tensors.values()})
        return {
            "format": FORMAT,
            "created_by": f"nemoverify {__version__}",
            "algorithm": self.algorithm,
            "digest_definition": DIGEST_DEFINITION,
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
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a nemoverify manifest (expected format {FORMAT!r})")
    algorithm = data.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ManifestError(f"{path}: unknown digest algorithm {algorithm!r}")
    try:
        tensors = {
            r["name"]: Observation(
                r["name"], r["component"], r["dtype"], tuple(r["shape"]), int(r["bytes"]), r["digest"]
            )
            for r in data["resources"]
        }
        shard_of = {r["name"]: r["shard"] for r in data["resources"]}
        shards = {s["name"]: int(s["size"]) for s in data["shards"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{path}: malformed manifest entry: {exc!r}") from None
    manifest = Manifest(algorithm, tensors, shard_of, shards)
    if data.get("root") != manifest.root():
        raise ManifestError(f"{path}: the manifest's root digest does not match its entries: it was edited")
    return manifest


def build_manifest(checkpoint: Checkpoint, algorithm: str, progress: Progress) -> Manifest:
    checkpoint.require_valid()
    delivered = hash_checkpoint(checkpoint, algorithm, progress)
    shard_of = {info.name: shard.name for shard, info in checkpoint.tensors()}
    return Manifest(algorithm, delivered.observations, shard_of, {s.name: s.size for s in checkpoint.shards})


def shard_findings(manifest: Manifest, checkpoint: Checkpoint) -> list[Finding]:
    """Shard files the manifest records that are missing, of another size, or new."""
    findings: list[Finding] = []
    present = {s.name: s.size for s in checkpoint.shards}
    broken = {p.file.rsplit("/", 1)[-1] for p in checkpoint.errors()}
    for name, size in sorted(manifest.shards.items()):
        actual = present.get(name)
        if actual is None and name not in broken:
            findings.append(Finding(name, "shard", "missing", f"{size:,} bytes", None, "manifest"))
        elif actual is None or actual != size:
            try:
                actual = checkpoint.storage.size(name)
            except OSError:
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


def explained_by_manifest(manifest: Manifest, checkpoint: Checkpoint, findings: list[Finding]) -> bool:
    """Every structural error sits in a shard whose size the manifest already shows is wrong."""
    damaged = {f.name for f in findings if f.component == "shard"}
    return all(p.file.rsplit("/", 1)[-1] in damaged for p in checkpoint.errors())

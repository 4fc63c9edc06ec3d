"""A checkpoint as the loaders will see it: its shards, their headers, the index and the config.

`open_checkpoint` never raises on bad content: it reads everything it can and collects every
problem, so one run reports them all. Callers decide what is fatal (`Checkpoint.require_valid`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property

from nemoverify.checkpoint import hfcache
from nemoverify.checkpoint.config import CONFIG_NAME, ModelConfig, read_config
from nemoverify.checkpoint.header import Header, TensorInfo, read_header
from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem, Severity
from nemoverify.checkpoint.storage import Fingerprint, LocalStorage, Storage, UnsafeName, is_object_url, sparse_shards

Locate = Callable[[str], str]  # a file's name -> where a problem says it is (a path or an object URL)

INDEX_NAME = "model.safetensors.index.json"

# No loader reads metadata.total_size (vLLM, transformers and the safetensors library ignore it) and
# published repositories carry wrong ones; damage it would hint at has rules of its own (a shard
# missing or truncated, a tensor unmapped): a warning, an error under --strict.
TOTAL_SIZE_SEVERITY: Severity = "warning"


@dataclass(frozen=True)
class Shard:
    """One safetensors file of the checkpoint, its header, and its fingerprint when opened."""

    name: str  # as the index (or the directory) names it
    location: str  # what a loader opens: a local path or an object URL
    size: int
    fingerprint: Fingerprint  # (size, ...) when opened, to notice a file changing under us
    header: Header


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint opened and checked: its shards and config, what vLLM's loader streams, and
    what was read to decide that (read again when the run ends)."""

    root: str
    storage: Storage
    shards: tuple[Shard, ...]  # the checkpoint as its index describes it: the reference
    config: ModelConfig
    indexed: bool
    problems: tuple[Problem, ...]
    # What vLLM's Run:ai loader streams: every *.safetensors in the directory (or under the object
    # prefix), in listing order, index or not. Empty means the same as `shards`.
    extra_streamed: tuple[Shard, ...] = ()
    stream_order: tuple[str, ...] = ()
    # What was read to decide the file set, to be read again at the end of the run: the names the
    # listing gave (None for a single file), and a digest of each JSON file (None: absent).
    listed: tuple[str, ...] | None = None
    texts: tuple[tuple[str, str | None], ...] = ()

    @property
    def streamed(self) -> tuple[Shard, ...]:
        """The files the Run:ai candidate streams, in the order vLLM hands them to the streamer."""
        if not self.stream_order:
            return self.shards
        by_name = {s.name: s for s in (*self.shards, *self.extra_streamed)}
        return tuple(by_name[n] for n in self.stream_order if n in by_name)

    def tensors(self) -> Iterator[tuple[Shard, TensorInfo]]:
        for shard in self.shards:
            for info in shard.header.tensors:
                yield shard, info

    @cached_property  # the ring is fitted to it by the run and by each candidate pass
    def largest_streamed_tensor(self) -> int:
        return max((t.nbytes for shard in self.streamed for t in shard.header.tensors), default=0)

    @cached_property
    def streamed_bytes(self) -> int:
        return sum(shard.header.data_len for shard in self.streamed)

    @property
    def tensor_count(self) -> int:
        return sum(len(s.header.tensors) for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.header.data_len for s in self.shards)

    @property
    def is_local(self) -> bool:
        return isinstance(self.storage, LocalStorage)

    def errors(self, strict: bool = False) -> list[Problem]:
        """The problems that refuse the checkpoint; under `strict`, warnings too, reported as the
        errors they then are (a consumer filtering reports on severity must not miss them)."""
        return [
            p if p.severity == "error" else replace(p, severity="error")
            for p in self.problems
            if strict or p.severity == "error"
        ]

    def require_valid(self, strict: bool = False) -> None:
        errors = self.errors(strict)
        if errors:
            raise InvalidCheckpoint(self.root, errors)


def open_checkpoint(path: str, contain_within: str | None = None, max_tensors: int | None = None) -> Checkpoint:
    """Open a checkpoint: a local directory or `.safetensors` file, an `s3://bucket/prefix`, or a
    Hugging Face repo id already in the local cache."""

    if is_object_url(path):
        from nemoverify.checkpoint.objectstore import object_storage

        return build_checkpoint(object_storage(path), max_tensors=max_tensors)
    if hfcache.looks_like_repo_id(path):
        snapshot, repo_dir = hfcache.resolve(path)
        return open_checkpoint(snapshot, contain_within=repo_dir, max_tensors=max_tensors)
    if not os.path.exists(path):
        return _broken(path, Problem("path-missing", path, "no such file or directory"))
    # A snapshot of the Hugging Face cache links its files into its repository's blobs: links that
    # stay within that repository are its normal shape; one that leaves it is still refused.
    directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
    contain_within = contain_within or hfcache.snapshot_repo(directory)
    if os.path.isfile(path):
        if not path.endswith(".safetensors"):
            return _broken(
                path, Problem("path-kind", path, "is a file but not a .safetensors file or a checkpoint directory")
            )
        storage = LocalStorage(os.path.dirname(path) or ".", contain_within)
        return build_checkpoint(storage, only=os.path.basename(path), max_tensors=max_tensors)
    if not os.path.isdir(path):
        return _broken(path, Problem("path-kind", path, "is neither a directory nor a .safetensors file"))
    if not os.access(path, os.R_OK | os.X_OK):
        return _broken(path, Problem("unreadable", path, "permission denied: cannot list the directory"))
    return build_checkpoint(LocalStorage(path, contain_within), max_tensors=max_tensors)


def one_file_of_many(path: str) -> Problem | None:
    """A path to one .safetensors file of a directory that holds others: vLLM is given the
    directory and its Run:ai loader streams every one of them, so this file alone is not what loads."""
    if is_object_url(path) or not path.endswith(".safetensors") or not os.path.isfile(path):
        return None
    directory = os.path.dirname(path) or "."
    try:
        names = LocalStorage(directory).list_safetensors()
    except OSError:
        return None
    if not [n for n in names if n != os.path.basename(path)]:
        return None
    indexed = " (and its index)" if os.path.exists(os.path.join(directory, INDEX_NAME)) else ""
    return Problem(
        "path-one-file",
        path,
        f"is one of the {len(names)} .safetensors files in {directory}{indexed}, all of which vLLM's Run:ai loader "
        f"streams: pass the directory, {directory}, or add --file-alone to judge this file alone",
    )


def _broken(path: str, problem: Problem) -> Checkpoint:
    return Checkpoint(path, LocalStorage(path), (), ModelConfig("not read"), False, (problem,))


def build_checkpoint(storage: Storage, only: str | None = None, max_tensors: int | None = None) -> Checkpoint:
    """Discover shards through `storage`, read every header, cross-check index and config. Past
    `max_tensors` tensors in all, the next header is refused before it is parsed, and no more are read."""
    problems: list[Problem] = []
    root = storage.root

    def at(name: str) -> str:
        return f"{root.rstrip('/')}/{name}"

    weight_map: dict[str, str] | None = None
    total_size: int | None = None
    texts: dict[str, str | None] = {}
    if only is None:
        index_text = texts[INDEX_NAME] = _read_text(storage, INDEX_NAME, problems, at)
        if index_text is not None:
            weight_map, total_size = _parse_index(index_text, at(INDEX_NAME), problems)

    present = [only] if only else _list(storage, problems, root)
    strays: list[str] = []
    if weight_map is not None:
        shard_names = sorted(set(weight_map.values()))
        strays = [name for name in present if name not in set(shard_names)]
    else:
        shard_names = sorted(present)
    if not shard_names and not any(p.severity == "error" for p in problems):
        problems.append(Problem("no-safetensors", root, "holds no .safetensors files (nothing to verify)"))

    shards: list[Shard] = []
    left = max_tensors
    for name in shard_names:
        shard = _open_shard(storage, name, problems, at, left)
        if problems and problems[-1].rule == "max-tensors":
            break
        if shard is not None:
            shards.append(shard)
            left = None if left is None else left - len(shard.header.tensors)

    if shards and len(shards) == len(shard_names) and not any(s.header.tensors for s in shards):
        problems.append(
            Problem("no-tensors", root, "its .safetensors files hold no tensor: nothing for vLLM to load or to verify")
        )
    if weight_map is not None:
        _cross_check_index(weight_map, total_size, shards, shard_names, problems, at)
    _check_duplicates_across_shards(shards, problems, at)
    problems.extend(sparse_shards(storage, [(s.name, at(s.name), s.header.data_len) for s in shards]))
    extra_streamed: list[Shard] = []
    for name in strays:  # vLLM's Run:ai loader streams these too: a malformed one fails its load
        if problems and problems[-1].rule == "max-tensors":
            break
        shard = _open_shard(storage, name, problems, at, left)
        if shard is not None:
            left = None if left is None else left - len(shard.header.tensors)
            extra_streamed.append(shard)
            problems.append(
                Problem(
                    "shard-not-indexed",
                    at(name),
                    f"is not in {INDEX_NAME}, but vLLM's Run:ai loader streams every *.safetensors in the "
                    f"directory: its {len(shard.header.tensors)} tensor(s) are loaded too",
                    severity="warning",
                )
            )

    # A single file is read with the config beside it, as vLLM would read the directory's.
    config_text = texts[CONFIG_NAME] = _read_text(storage, CONFIG_NAME, problems, at)
    config, config_problems = read_config(config_text, at(CONFIG_NAME))
    problems.extend(config_problems)
    return Checkpoint(
        root,
        storage,
        tuple(shards),
        config,
        weight_map is not None,
        tuple(problems),
        tuple(extra_streamed),
        tuple(present) if strays or only is None else (),
        None if only else tuple(present),
        tuple((name, _digest(text)) for name, text in texts.items()),
    )


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _list(storage: Storage, problems: list[Problem], root: str) -> list[str]:
    try:
        names = storage.list_safetensors()
    except OSError as exc:
        problems.append(Problem("unreadable", root, f"cannot be listed: {exc}"))
        return []
    if isinstance(storage, LocalStorage) and any(c in root for c in "*?["):
        problems.extend(_listed_as_a_pattern(storage, names))
    return names


def _listed_as_a_pattern(storage: LocalStorage, names: list[str]) -> list[Problem]:
    """The streamer lists `os.path.join(path, "*.safetensors")` with glob, unescaped, so a path
    holding *, ? or [ is a pattern to vLLM: it may load files of other directories, or none."""
    seen_by_vllm = sorted(glob.glob(os.path.join(storage.root, "*.safetensors")))
    ours = sorted(os.path.join(storage.root, n) for n in names)
    if seen_by_vllm == ours:
        return []
    elsewhere = [p for p in seen_by_vllm if p not in ours]
    found = ", ".join(elsewhere[:3]) + (f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else "")
    streamed = (
        f"{len(seen_by_vllm)} file(s), {len(elsewhere)} of them from elsewhere ({found})"
        if elsewhere
        else f"{len(seen_by_vllm)} of its {len(names)} file(s)"
    )
    return [
        Problem(
            "path-pattern",
            storage.root,
            "holds *, ? or [, and vLLM's Run:ai loader lists the directory as a glob pattern: it would stream "
            + (streamed if seen_by_vllm else "no file at all")
            + "; rename the directory",
        )
    ]


def _read_text(storage: Storage, name: str, problems: list[Problem], at: Locate) -> str | None:
    try:
        return storage.read_text(name)
    except (OSError, UnsafeName, UnicodeDecodeError) as exc:
        problems.append(Problem("unreadable", at(name), f"cannot be read: {exc}"))
        return None


def _json_error(exc: Exception) -> str:
    return "it nests too deeply to parse" if isinstance(exc, RecursionError) else str(exc)


def _parse_index(text: str, file: str, problems: list[Problem]) -> tuple[dict[str, str] | None, int | None]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problems.append(Problem("index-json", file, f"not valid JSON: {_json_error(exc)}"))
        return None, None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        problems.append(Problem("index-json", file, "has no 'weight_map' object of tensor name -> shard file"))
        return None, None
    total = data.get("metadata", {}).get("total_size") if isinstance(data.get("metadata"), dict) else None
    if total is not None and not (isinstance(total, int) and not isinstance(total, bool)):
        problems.append(
            Problem(
                "index-total-size",
                file,
                f"metadata.total_size {total!r} is not an integer",
                severity=TOTAL_SIZE_SEVERITY,
            )
        )
        total = None
    return weight_map, total


def _open_shard(
    storage: Storage, name: str, problems: list[Problem], at: Locate, max_tensors: int | None = None
) -> Shard | None:
    try:
        location = storage.locate(name)
        fingerprint = storage.fingerprint(name)
        size = fingerprint[0]
        header, found = read_header(location, size, lambda off, n: storage.read_at(name, off, n), max_tensors)
    except UnsafeName as exc:
        problems.append(Problem("unsafe-path", at(name), str(exc)))
        return None
    except FileNotFoundError:
        problems.append(Problem("shard-missing", at(name), "is named by the index but does not exist"))
        return None
    except IsADirectoryError:
        problems.append(Problem("path-kind", at(name), "is a directory, not a .safetensors file"))
        return None
    except OSError as exc:
        problems.append(Problem("unreadable", at(name), f"cannot be read: {exc.strerror or exc}"))
        return None
    problems.extend(found)
    if header is None:
        return None
    return Shard(name, location, size, fingerprint, header)


def _cross_check_index(
    weight_map: dict[str, str],
    total_size: int | None,
    shards: list[Shard],
    shard_names: list[str],
    problems: list[Problem],
    at: Locate,
) -> None:
    index = at(INDEX_NAME)
    held = {s.name: {t.name for t in s.header.tensors} for s in shards}
    holders: dict[str, list[str]] = {}  # built only when the index is wrong somewhere
    for tensor, mapped in weight_map.items():
        if mapped not in held or tensor in held[mapped]:
            continue  # a missing shard is reported once, as shard-missing
        if not holders:
            for s in shards:
                for t in s.header.tensors:
                    holders.setdefault(t.name, []).append(s.name)
        if tensor in holders:
            problems.append(
                Problem(
                    "index-tensor-misplaced",
                    at(holders[tensor][0]),
                    f"holds it but {INDEX_NAME} maps it to {mapped}",
                    tensor,
                )
            )
        else:
            problems.append(
                Problem("index-tensor-missing", at(mapped), f"does not hold it, but {INDEX_NAME} says it does", tensor)
            )
    for s in shards:
        if held[s.name] <= weight_map.keys():
            continue  # every tensor of this shard is listed (a set test, not a Python loop)
        for t in s.header.tensors:
            if t.name not in weight_map:
                problems.append(
                    Problem("index-tensor-unmapped", at(s.name), f"holds it but {INDEX_NAME} does not list it", t.name)
                )
    if total_size is not None and len(shards) == len(shard_names):
        actual = sum(s.header.data_len for s in shards)
        if actual != total_size:
            problems.append(
                Problem(
                    "index-total-size",
                    index,
                    f"metadata.total_size is {total_size:,} but the shards hold {actual:,} bytes of tensors",
                    severity=TOTAL_SIZE_SEVERITY,
                )
            )


def _check_duplicates_across_shards(shards: list[Shard], problems: list[Problem], at: Locate) -> None:
    first: dict[str, str] = {}
    for shard in shards:
        for info in shard.header.tensors:
            if info.name in first:
                problems.append(
                    Problem(
                        "duplicate-tensor",
                        at(shard.name),
                        f"is also in {first[info.name]}; which one loads depends on order",
                        info.name,
                    )
                )
            else:
                first[info.name] = shard.name


CHANGED = "the shard changed while it was verified"


def ensure_unchanged(checkpoint: Checkpoint, shard: Shard) -> None:
    """A shard rewritten or replaced while we read it gives a verdict about neither version: refuse
    it. Checked at the end of a run: the name still leads to the file that was read (device and
    inode), whose size, mtime and ctime are unchanged (ctime cannot be set back), and whose header
    bytes, read again, are the ones parsed (a rewrite within the clock's tick is still seen)."""
    storage = checkpoint.storage
    try:
        why = storage.changed(shard.name, shard.fingerprint)
        if why is None:
            header = shard.header
            # compared byte for byte: cheaper than hashing them (a run did, four times a shard), and exact
            if storage.read_at(shard.name, 0, header.data_start) != header.raw:
                why = "its header bytes differ from the ones parsed"
    except (OSError, UnsafeName) as exc:
        why = f"it can no longer be read ({exc})"
    if why is not None:
        raise InvalidCheckpoint(
            checkpoint.root,
            [
                Problem(
                    "file-changed", shard.location, f"{CHANGED}: {why}; verify a checkpoint that is not being written"
                )
            ],
        )


def ensure_checkpoint_unchanged(checkpoint: Checkpoint) -> None:
    """Every file either pass read (the indexed shards, and the unindexed ones the candidate
    streams), and what decided which files those are: the listing, the index and config.json, read
    again. A file that appeared meanwhile (an upload still arriving) would be loaded by vLLM."""
    for shard in {s.name: s for s in (*checkpoint.shards, *checkpoint.extra_streamed)}.values():
        ensure_unchanged(checkpoint, shard)
    why = _file_set_changed(checkpoint)
    if why is not None:
        raise InvalidCheckpoint(
            checkpoint.root,
            [
                Problem(
                    "file-changed",
                    checkpoint.root,
                    f"the checkpoint changed while it was verified: {why}; verify a checkpoint that is not being written",
                )
            ],
        )


def _file_set_changed(checkpoint: Checkpoint) -> str | None:
    storage = checkpoint.storage
    if checkpoint.listed is not None:
        try:
            now = set(storage.list_safetensors())
        except OSError as exc:
            return f"it can no longer be listed ({exc})"
        before = set(checkpoint.listed)
        if now != before:
            said = [f"{n} appeared" for n in sorted(now - before)] + [f"{n} went away" for n in sorted(before - now)]
            return ", ".join(said)
    for name, digest in checkpoint.texts:
        try:
            again = _digest(storage.read_text(name))
        except (OSError, UnsafeName, UnicodeDecodeError) as exc:
            return f"{name} can no longer be read ({exc})"
        if again != digest:
            return f"{name} " + ("appeared" if digest is None else "went away" if again is None else "was rewritten")
    return None


def refuse_beyond(checkpoint: Checkpoint, max_bytes: int | None) -> None:
    """`--max-bytes`: a checkpoint declaring more tensor data than the caller will read is refused
    from its headers alone, before a byte of data is read."""
    declared = sum(
        s.header.data_len for s in {s.name: s for s in (*checkpoint.shards, *checkpoint.extra_streamed)}.values()
    )
    if max_bytes is not None and declared > max_bytes:
        raise InvalidCheckpoint(
            checkpoint.root,
            [
                Problem(
                    "max-bytes",
                    checkpoint.root,
                    f"declares {declared:,} bytes of tensor data, beyond --max-bytes {max_bytes:,}; refused before reading",
                )
            ],
        )

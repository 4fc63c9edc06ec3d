"""Every rule nemoverify reports under, in one place: its id, what it means, how to fix it.

`inspect` (table and JSON), the JSON report's `problems` and `warnings`, and the SARIF `rules` array
all read their text from here, and a test holds every `Problem(...)` in the package and every
malformed checkpoint of the test corpus to this registry. Three kinds of rule:

- `structure`: the checkpoint breaks a rule of the format, the index, the config or nemoverify's own
  (a `Problem`, exit 3 for an error, a warning otherwise);
- `run`: the run stopped before a verdict (storage, a rank, the manifest, a loader, a crash);
- `tensor`: a tensor (or shard file) failed the comparison (a `Finding` kind, exit 1).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

RuleKind = Literal["structure", "run", "tensor"]


class Rule(NamedTuple):
    """One rule a checkpoint is held to: its id, its kind, what it means and how to repair it."""

    id: str
    kind: RuleKind
    meaning: str
    fix: str


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.id: r for r in rules}


_REPAIR = "Re-upload or re-convert the shard from its source, then check again."

RULES: dict[str, Rule] = _rules(
    # The safetensors header, as the reference Rust crate reads it.
    Rule("header-length", "structure", "The 8-byte header length is missing, beyond the format's limit, or runs past the end of the file.", _REPAIR),
    Rule("header-utf8", "structure", "The header is not valid UTF-8.", _REPAIR),
    Rule("header-json", "structure", "The header is not a JSON object the safetensors crate accepts (no NaN, Infinity, number beyond a 64-bit float, lone surrogate, or nesting of 128 levels).", "Rewrite the shard with the safetensors library (save_file), which writes a header every reader accepts."),
    Rule("metadata-type", "structure", "__metadata__ does not map strings to strings.", "Write __metadata__ as a string -> string object (safetensors' save_file(..., metadata={...}))."),
    Rule("tensor-entry", "structure", "A tensor's header entry is not an object, or names a field twice.", _REPAIR),
    Rule("tensor-name", "structure", "A tensor name holds a control character (nemoverify's own rule: such a name can pass for other entries in a listing or a digest).", "Rename the tensor without control characters."),
    Rule("duplicate-tensor", "structure", "A tensor name appears twice: in one header (JSON keeps only the last) or in two shards.", "Keep each tensor in exactly one shard, once."),
    Rule("dtype-unknown", "structure", "A tensor's dtype is not one the safetensors format defines.", "Write the tensor with a dtype safetensors knows (e.g. BF16, F32)."),
    Rule("shape-invalid", "structure", "A tensor's shape is not a list of integers from 0 to 2**64-1.", _REPAIR),
    Rule("shape-overflow", "structure", "A tensor's element count or bit size overflows 64 bits.", _REPAIR),
    Rule("offsets-invalid", "structure", "A tensor's data_offsets are not [begin, end] with 0 <= begin <= end <= 2**64-1.", _REPAIR),
    Rule("byte-length", "structure", "A tensor's byte length differs from its shape times its dtype's size.", _REPAIR),
    Rule("offsets-gap", "structure", "Tensor data leaves a gap between tensors.", _REPAIR),
    Rule("offsets-overlap", "structure", "Two tensors' data overlap.", _REPAIR),
    Rule("file-truncated", "structure", "The file is shorter than its header describes: an interrupted upload or copy.", "Copy the shard again in full and compare its size with the source."),
    Rule("file-trailing-bytes", "structure", "Bytes follow the last tensor's data.", "Copy the shard again from its source; a complete file ends with its last tensor."),
    Rule("file-changed", "structure", "A file changed while it was read.", "Verify a checkpoint that is not being written."),
    # The index.
    Rule("index-json", "structure", "model.safetensors.index.json is not valid JSON or has no weight_map of tensor name -> shard file.", "Regenerate the index (save_pretrained writes it)."),
    Rule("index-total-size", "structure", "The index's metadata.total_size is not an integer or differs from the shards' tensor bytes.", "Regenerate the index, or copy the shard whose size it misstates again."),
    Rule("index-tensor-missing", "structure", "The index maps a tensor to a shard that does not hold it.", "Regenerate the index from the shards."),
    Rule("index-tensor-unmapped", "structure", "A shard holds a tensor the index does not list.", "Regenerate the index from the shards."),
    Rule("index-tensor-misplaced", "structure", "The index maps a tensor to another shard than the one holding it.", "Regenerate the index from the shards."),
    Rule("shard-missing", "structure", "A shard named by the index does not exist.", "Upload the missing shard."),
    Rule("shard-not-indexed", "structure", "A .safetensors file the index does not name: vLLM's Run:ai loader streams it too.", "Remove the stray file, or add its tensors to the index."),
    Rule("shard-sparse", "structure", "A shard is a sparse file whose holes read as zeros: an incomplete copy.", "Copy the shard again in full."),
    # The directory and its files.
    Rule("path-missing", "structure", "The checkpoint path does not exist.", "Pass an existing directory, .safetensors file or object URL."),
    Rule("no-tensors", "structure", "The checkpoint's .safetensors files hold no tensor at all.", "Check that the export wrote the weights."),
    Rule("max-tensors", "structure", "The checkpoint declares more tensors than --max-tensors allows: refused before its headers are parsed.", "Raise --max-tensors if the checkpoint is what you expect."),
    Rule("path-pattern", "structure", "The directory's path holds *, ? or [, which vLLM's loader reads as a glob pattern: it would load other files, or none.", "Rename the directory."),
    Rule("path-one-file", "structure", "The path is one .safetensors file of a directory that holds others, all of which vLLM loads.", "Pass the directory, or --file-alone to judge the file alone."),
    Rule("path-kind", "structure", "A path is neither a checkpoint directory nor a .safetensors file.", "Pass a checkpoint directory or a .safetensors file."),
    Rule("unsafe-path", "structure", "A shard name escapes the checkpoint directory (../, absolute, a symlink out): refused, not followed.", "Keep every shard inside the checkpoint directory."),
    Rule("unreadable", "structure", "A file or directory cannot be read.", "Fix the permissions or the storage, then check again."),
    Rule("no-safetensors", "structure", "The directory holds no .safetensors files: nothing to verify.", "Pass the directory that holds the shards."),
    Rule("max-bytes", "structure", "The checkpoint declares more tensor data than --max-bytes allows: refused before reading.", "Raise --max-bytes if the size is expected."),
    Rule("hf-not-cached", "structure", "The name is no local path and not in the local Hugging Face cache; nemoverify never downloads.", "Fetch it first (hf download REPO), or pass a path."),
    # config.json.
    Rule("config-json", "structure", "config.json is not a valid JSON object.", "Rewrite config.json from the model's source."),
    Rule("config-architecture", "structure", "config.json is missing, or names no architecture vLLM sends to NemotronH_Nano_VL_V2 (in any release, or in the deployment's): a warning unless --strict.", "Set architectures to the model's Nemotron Nano VL class, or deploy a vLLM release that routes it."),
    Rule("config-sound", "structure", "config.json declares a sound encoder without sound tensors, or sound tensors without a sound_config.", "Declare sound_config exactly when the checkpoint holds sound tensors."),
    # Runs without a verdict.
    Rule("storage-error", "run", "Object storage failed: no verdict was reached.", "Check the credentials, the endpoint and the network, then run again."),
    Rule("rank-failed", "run", "A distributed rank crashed or hung: no verdict was reached.", "Read the rank's error above; raise --rank-timeout if it was only slow."),
    Rule("manifest-unreadable", "run", "The manifest could not be read or trusted: no verdict was reached.", "Pass a manifest written by nemoverify manifest, unmodified."),
    Rule("loader-error", "run", "A loader failed while reading a tensor: no verdict was reached.", "Read the loader's error; check the streamer's installation and the storage."),
    Rule("vllm-code", "run", "The installed vLLM's load-path code matches no release nemoverify knows (a patched build?): the replay may not be its load path; a warning unless --strict.", "Pass --vllm with the release the build is based on, or run the differential harness (docs/deployments.md) against the build."),
    Rule("internal-error", "run", "nemoverify failed unexpectedly: no verdict was reached (exit 4).", "Run again with NEMOVERIFY_DEBUG=1 for the traceback and report it."),
    Rule("error", "run", "The run could not reach a verdict.", "Read the message; fix what it names and run again."),
    # Tensor failures (the `kind` of a mismatch).
    Rule("bytes", "tensor", "The tensor's bytes differ from what they should be.", "Copy the shard that holds it again; if the reference agrees with the manifest, the loader path corrupts it."),
    Rule("missing", "tensor", "A tensor that should be there was not delivered.", "Check the loader's configuration and that the shard holding it is streamed."),
    Rule("unexpected", "tensor", "A tensor was delivered that should not exist.", "Remove the stray tensor or shard, or record a new manifest if it belongs."),
    Rule("dtype", "tensor", "The tensor's dtype differs.", "Convert the checkpoint again with the expected dtype."),
    Rule("shape", "tensor", "The tensor's shape differs.", "Convert the checkpoint again with the expected shapes."),
    Rule("duplicate", "tensor", "The loader delivered the tensor more than once.", "Remove the duplicate tensor or stray shard the loader streams."),
    Rule("shared-parameter", "tensor", "Two checkpoint names load into one parameter (vLLM routes on name prefixes): the parameter keeps the one loaded last.", "Remove or rename the other name (mlp1_old.* loads into mlp1.*)."),
    Rule("unclaimed", "tensor", "No parameter takes the tensor: vLLM drops it silently (a failure under --fail-on-unclaimed).", "Remove the tensor, or rename it to the parameter it is meant for."),
    Rule("stray", "tensor", "A file outside the index holds a tensor vLLM loads: its Run:ai loader streams every *.safetensors in the directory.", "Remove the stray file, or record a new manifest if it belongs."),
    Rule("size", "tensor", "A shard file's size differs from the manifest.", "Copy the shard again in full."),
    Rule("load-error", "tensor", "vLLM raises on the tensor: the load fails.", "Remove or rename the tensor (or declare what it needs, as a sound_config), or deploy a release that accepts it."),
)


def rule(rule_id: str) -> Rule:
    """The registered rule `rule_id`; a rule id nobody registered is a bug (KeyError)."""
    return RULES[rule_id]

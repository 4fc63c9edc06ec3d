"""The differential harness's pure parts (harness/, docs/harness.md): wheel members read by range
requests (zip structures), function extraction, the execution plan and its name resolution, the
registry rule, stored bytes, the ground truth, the comparison with nemoverify's report, the results
table and the fingerprints table. No torch, no network, no vLLM: tiny hand-made modules and results.

The tests at the end need what `make harness-setup` and a fetched cache provide, and skip without them.
"""

# The harness is imported after the check that it is here (an sdist carries tests/ but not harness/).
# ruff: noqa: E402

from __future__ import annotations

import ast
import importlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "harness").is_dir():  # the sdist carries tests/ but not the harness
    pytest.skip("harness/ is not here (an sdist)", allow_module_level=True)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import paths, wheelsrc
from harness.compare import compare, nemoverify_states
from harness.extract import free_names, locate, node_of
from harness.fingerprints import FUNCTIONS, architectures, build, digest_in, ranges
from harness.program import plan
from harness.registry import resolve
from harness.stored import StoredTensor, digest_bytes, stored_tensors, tensor_ids
from harness.table import _no_machine_paths
from harness.truth import ground_truth
from nemoverify.deployment import installed
from nemoverify.deployment.releases import KNOWN_VLLM


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


# ---------------------------------------------------------------- where things are

def test_defaults_are_under_dot_harness_and_the_releases_are_nemoverifys() -> None:
    assert paths.NEMOVERIFY_SRC == ROOT or "NEMOVERIFY_SRC" in os.environ
    for p in (paths.WORK, paths.CELLS, paths.VENV, paths.VENV16, paths.RESULTS_JSON):
        assert p.relative_to(ROOT / ".harness")
    if "HARNESS_CACHE" not in os.environ:
        assert paths.default_cache() == ROOT / ".harness" / "cache"
    assert paths.known_releases() == list(KNOWN_VLLM)
    assert "/.harness/" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------- extraction

MODULE_A = '''
class Loader:
    """Doc."""
    mapper = {"backbone": "model"}

    def load_weights(self, weights):
        """Docstring that must not matter."""
        for name, w in weights:  # a comment that must not matter
            if name.startswith("language_model"):
                yield name.split(".", 1)[1], w

def helper(x):
    return x + 1
'''
# The same code: other formatting, comments and docstrings.
MODULE_B = '''
class Loader:
    mapper = {"backbone":   "model"}
    def load_weights(self, weights):
        """Another docstring."""
        for name, w in weights:
            if name.startswith( "language_model" ):
                yield name.split(".", 1)[1], w
def helper(x):
    # changed comment
    return x + 1
'''
MODULE_C = MODULE_A.replace('"language_model"', '"language_model."')


def test_locate_finds_methods_attributes_and_functions() -> None:
    f = locate(MODULE_A, "Loader.load_weights")
    assert f is not None and f.lineno == 6 and f.source.startswith("def load_weights")
    assert locate(MODULE_A, "Loader.mapper") is not None
    assert locate(MODULE_A, "Loader.missing") is None
    assert locate(MODULE_A, "helper") is not None


def test_extracted_source_execs() -> None:
    ns: dict = {}
    found = locate(MODULE_A, "Loader.load_weights")
    assert found is not None
    exec(found.source, ns)
    assert list(ns["load_weights"](None, [("language_model.a.b", 1), ("mlp1.x", 2)])) == [("a.b", 1)]


def test_fingerprints_are_nemoverifys_ignore_format_and_see_code(tmp_path: Path) -> None:
    for name, text in (("a", MODULE_A), ("b", MODULE_B), ("c", MODULE_C)):
        _tree(tmp_path / name, {"vllm/m.py": text})
    for q in ("Loader.load_weights", "Loader.mapper", "helper", "Loader"):
        a = digest_in(tmp_path / "a", q, ["vllm/m.py"])
        assert a is not None and a == digest_in(tmp_path / "b", q, ["vllm/m.py"]), q
        # what nemoverify computes when it reads an installed vllm
        assert a == installed._fingerprint_in(tmp_path / "a", q, ["vllm/m.py"]), q
    assert digest_in(tmp_path / "a", "Loader.load_weights", ["vllm/m.py"]) != digest_in(tmp_path / "c", "Loader.load_weights", ["vllm/m.py"])
    assert digest_in(tmp_path / "a", "helper", ["vllm/m.py"]) == digest_in(tmp_path / "c", "helper", ["vllm/m.py"])
    assert digest_in(tmp_path / "a", "Gone", ["vllm/none.py", "vllm/m.py"]) is None


REGISTRY = '''
_TEXT_GENERATION_MODELS = {"NemotronHForCausalLM": ("nemotron_h", "NemotronHForCausalLM")}
_MULTIMODAL_MODELS = {
    "NemotronH_Nano_VL_V2": ("nano_nemotron_vl", "NemotronH_Nano_VL_V2"),
    "NemotronH_Nano_Omni_Reasoning_V3": ("nano_nemotron_vl", "NemotronH_Nano_VL_V2"),
}
_VLLM_MODELS = {**_TEXT_GENERATION_MODELS, **_MULTIMODAL_MODELS}
'''


def test_the_fingerprints_table_has_the_format_nemoverify_reads(tmp_path: Path) -> None:
    sources = {}
    for release, text in (("1.0", MODULE_A), ("1.1", MODULE_C)):
        sources[release] = _tree(tmp_path / release, {"vllm/model_executor/models/registry.py": REGISTRY, "vllm/m.py": text})
    table = build(sources)
    committed = json.loads((ROOT / "nemoverify" / "deployment" / "fingerprints.json").read_text())
    assert sorted(table) == sorted(committed)
    assert sorted(table["functions"]) == sorted(committed["functions"]) == sorted(q for q, _ in FUNCTIONS)
    entry = table["functions"]["NemotronH_Nano_VL_V2.load_weights"]
    assert sorted(entry) == ["modules", "sha256"] and entry["sha256"] == {"1.0": None, "1.1": None}
    assert table["architectures"]["1.0"] == ["NemotronH_Nano_Omni_Reasoning_V3", "NemotronH_Nano_VL_V2"]
    assert ranges({"1": "a", "2": "a", "3": "b", "4": None}) == "1-2 / 3 / 4 (absent)"
    assert architectures(sources["1.0"]) == table["architectures"]["1.0"]


# ---------------------------------------------------------------- wheel members by range requests

def _zip_bytes(members: dict[str, bytes], prefix: bytes = b"x" * 1000) -> bytes:
    buf = io.BytesIO()
    buf.write(prefix)  # members do not start at 0, as in a real wheel after earlier members
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def test_central_directory_and_members() -> None:
    members = {"vllm/a.py": b"print('a')\n" * 50, "vllm/b/c.py": b"x = 1\n", "empty.py": b""}
    blob = _zip_bytes(members)
    tail_start = max(0, len(blob) - 4096)
    cd_off, cd_size, z64 = wheelsrc.parse_eocd(blob[tail_start:], tail_start)
    assert z64 is None
    cd = wheelsrc.parse_central_directory(blob[cd_off : cd_off + cd_size])
    assert set(cd) == set(members)
    for n, m in cd.items():
        hdr = wheelsrc.parse_local_header(blob[m.offset : m.offset + 30])
        data = blob[m.offset + hdr : m.offset + hdr + m.csize]
        assert wheelsrc.inflate(m, data) == members[n]


def test_a_crc_mismatch_is_detected() -> None:
    blob = _zip_bytes({"a.py": b"hello" * 100})
    cd_off, cd_size, _ = wheelsrc.parse_eocd(blob, 0)
    m = wheelsrc.parse_central_directory(blob[cd_off : cd_off + cd_size])["a.py"]
    data = zlib.compress(b"hellO" * 100)[2:-4]
    with pytest.raises(ValueError):
        wheelsrc.inflate(m, data)


def test_the_plain_wheel_is_preferred_over_a_build_tag_reupload() -> None:
    files = [
        {"filename": "vllm-0.20.1-1-cp38-abi3-manylinux_2_35_x86_64.whl", "url": "u1"},
        {"filename": "vllm-0.20.1-cp38-abi3-manylinux_2_35_aarch64.whl", "url": "u2"},
        {"filename": "vllm-0.20.1-cp38-abi3-manylinux_2_35_x86_64.whl", "url": "u3"},
        {"filename": "vllm-0.20.1.tar.gz", "url": "u4"},
    ]
    chosen, alts = wheelsrc.pick_wheel(files, "0.20.1")
    assert chosen["url"] == "u3" and [a["url"] for a in alts] == ["u1"]
    chosen, _ = wheelsrc.pick_wheel([files[0]], "0.20.1")
    assert chosen["url"] == "u1"
    with pytest.raises(LookupError):
        wheelsrc.pick_wheel(files, "9.9.9")


# ---------------------------------------------------------------- the execution plan

UTILS = '''
import itertools
from dataclasses import dataclass
from vllm.logger import init_logger

logger = init_logger(__name__)
PREFIX = "model"

def helper(x):
    return PREFIX + x

@dataclass
class Mapper:
    prefix: str = "backbone"

    def apply(self, names):
        return [helper(n[len(self.prefix):]) for n in names if n.startswith(self.prefix)]

def unrelated():
    return missing_thing()
'''
MODEL = '''
import torch
from vllm.model_executor.utils_mod import Mapper, helper
from vllm.distributed import get_pp_group

class Model:
    mapper = Mapper(prefix="backbone")

    def load_weights(self, weights):
        for name, w in weights:
            logger.info("x")
            yield self.mapper.apply([name])[0], torch.as_tensor(w)
'''
PROGRAM = [("vllm/model_executor/utils_mod.py", ["Mapper"]), ("vllm/model_executor/model_mod.py", ["Model.mapper", "Model.load_weights"])]
SOURCES = {"vllm/model_executor/utils_mod.py": UTILS, "vllm/model_executor/model_mod.py": MODEL}


def test_free_names_ignore_annotations_and_locals() -> None:
    n = node_of("def f(a: Foo, b) -> Bar:\n    c = a + b\n    return g(c, torch)\n", "f")
    assert free_names(n) == {"g", "torch"}


def test_units_closure_and_resolution(tmp_path: Path) -> None:
    p = plan(_tree(tmp_path, SOURCES), PROGRAM, frozenset({"logger", "get_pp_group"}))
    utils, model = p.modules
    # helper and PREFIX are pulled in because Mapper reads them; unrelated is not
    assert [u.qualname for u in utils.units] == ["PREFIX", "helper", "Mapper"]
    assert utils.resolve["dataclass"] == ("import", ("dataclasses", "dataclass"))
    assert {u.qualname: u.kind for u in model.units} == {"Model.mapper": "attr", "Model.load_weights": "method"}
    assert model.resolve["Mapper"] == ("unit", ("vllm/model_executor/utils_mod.py", "Mapper"))
    assert model.resolve["logger"] == ("stub", "logger")
    assert model.resolve["torch"] == ("import", ("torch", None))
    assert p.unresolved == {}


def test_unresolved_names_are_reported(tmp_path: Path) -> None:
    p = plan(_tree(tmp_path, SOURCES), PROGRAM, frozenset({"get_pp_group"}))  # no stand-in for logger
    assert p.unresolved == {"vllm/model_executor/model_mod.py": ["logger"]}


def test_optional_units(tmp_path: Path) -> None:
    d = _tree(tmp_path, SOURCES)
    p = plan(d, [("vllm/model_executor/utils_mod.py", ["Mapper", "Gone?"])], frozenset({"logger"}))
    assert p.modules[0].missing_units == ["Gone"]
    with pytest.raises(LookupError):
        plan(d, [("vllm/model_executor/utils_mod.py", ["Gone"])], frozenset())


def test_planned_units_exec_without_torch(tmp_path: Path) -> None:
    p = plan(_tree(tmp_path, SOURCES), [("vllm/model_executor/utils_mod.py", ["Mapper"])], frozenset({"logger"}))
    ns: dict = {"logger": None}
    for name, (how, detail) in p.modules[0].resolve.items():
        if how == "import":
            m = importlib.import_module(detail[0])
            ns[name] = m if detail[1] is None else getattr(m, detail[1])
    for u in p.modules[0].units:
        exec(compile(ast.Module(body=[u.node], type_ignores=[]), "x", "exec"), ns)
    assert ns["Mapper"]().apply(["backbone.a", "other.b"]) == ["model.a"]


def test_the_first_registered_architecture_wins(tmp_path: Path) -> None:
    d = _tree(tmp_path, {"vllm/model_executor/models/registry.py": REGISTRY})
    assert resolve(d, ["NemotronHForCausalLM", "NemotronH_Nano_VL_V2"])["class"] == "NemotronHForCausalLM"
    assert resolve(d, ["Other", "NemotronH_Nano_VL_V2"])["class"] == "NemotronH_Nano_VL_V2"
    assert "Transformers" in resolve(d, ["Other"])["class"]


# ---------------------------------------------------------------- stored bytes, truth, comparison

def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header, blob = {}, b""
    for n, (dt, shape, data) in tensors.items():
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + blob)


def test_stored_tensors_and_their_ids(tmp_path: Path) -> None:
    _safetensors(tmp_path / "a.safetensors", {"x": ("U8", [2], b"\x01\x02"), "y": ("U8", [1], b"\x03")})
    _safetensors(tmp_path / "b.safetensors", {"x": ("U8", [2], b"\x09\x09")})
    (tmp_path / ".hidden.safetensors").write_bytes(b"")  # not listed by the Run:ai glob
    st = stored_tensors(str(tmp_path))
    assert [(t.file, t.name) for t in st] == [("a.safetensors", "x"), ("a.safetensors", "y"), ("b.safetensors", "x")]
    assert st[0].digest == digest_bytes(b"\x01\x02")
    ids = tensor_ids(st)
    assert ids[("a.safetensors", "y")] == "y"
    assert ids[("b.safetensors", "x")] == "x@b.safetensors"


def _copy(seq: int, dest: str, src: tuple[str, str], digest: str, shard: str | None = None) -> dict:
    return {"seq": seq, "dest": dest, "shard": shard, "expert": None, "src": list(src), "digest": digest, "how": "weight_loader"}


STORED = [StoredTensor("f", n, "BF16", (1,), "d" + n) for n in ("a", "b", "c", "d", "e", "q", "k")]


def _raw() -> dict:
    safe = [
        _copy(0, "P", ("a", "da"), "da"),
        _copy(1, "P", ("b", "db"), "db"),
        _copy(2, "R", ("c", "dc"), "dc"),
        _copy(3, "QKV", ("q", "dq"), "dq", "q"),
        _copy(4, "QKV", ("k", "dk"), "dk", "k"),
    ]
    deployed = [dict(c) for c in safe]
    deployed[2]["digest"] = "stale"
    return {
        "outcome": "completed",
        "safe": {"copies": safe, "removed": []},
        "deployed": {"copies": deployed, "removed": [{"name": "e", "digest": "de", "error": "KeyError: 'e'", "found": "frame"}]},
    }


def test_ground_truth_states() -> None:
    gt = ground_truth(_raw(), STORED)
    states = {i: t["state"] for i, t in gt["tensors"].items()}
    assert states == {"a": "overwritten", "b": "intact", "c": "corrupted", "d": "dropped", "e": "load-error", "q": "intact", "k": "intact"}
    assert gt["tensors"]["q"]["destinations"] == [["QKV", "q", None]]
    assert "holds b" in gt["tensors"]["a"]["detail"]
    assert gt["checks"] == []


def test_run_level_outcomes() -> None:
    gt = ground_truth({"outcome": "rejected: ValueError: x"}, STORED)
    assert {t["state"] for t in gt["tensors"].values()} == {"rejected"}


def test_compare_reads_nemoverifys_report() -> None:
    gt = ground_truth(_raw(), STORED)
    # nemoverify reports shared-parameter on every name of the group (engine/compare.py's wording)
    report = {
        "ok": False,
        "status": "failed",
        "skipped": [{"name": "d", "reason": "unclaimed"}],
        "failures": [
            {"name": "c", "kinds": ["bytes"], "message": "bytes differ"},
            {"name": "a", "kinds": ["shared-parameter"], "message": "loads into language_model parameter P, where b is loaded later: the model holds b, not this one"},
            {"name": "b", "kinds": ["shared-parameter"], "message": "loads into language_model parameter P after a: the model holds this one"},
        ],
    }
    cmp = compare(gt, {"rc": 1, "report": report, "stderr": ""})
    assert sorted(cmp["disagreements"]) == ["e"]  # nemoverify: intact, truth: load-error
    assert cmp["rows"]["a"]["nemoverify"] == "overwritten" and cmp["rows"]["b"]["nemoverify"] == "intact"
    assert cmp["truth_verdict"] == "load-error"
    assert cmp["nemoverify_verdict"] == "corrupted"


def test_a_duplicate_names_the_copy_the_model_holds() -> None:
    report = {"ok": False, "status": "failed", "failures": [{"name": "x", "kinds": ["duplicate"], "message": "delivered 2 times (from a.safetensors, b.safetensors); the model ends up holding the indexed copy from a.safetensors"}]}
    states, _ = nemoverify_states({"rc": 1, "report": report, "stderr": ""}, ["x"])
    assert states["x"]["held_file"] == "a.safetensors"


def test_a_refusal_rejects_every_tensor() -> None:
    states, run = nemoverify_states({"rc": 2, "report": None, "stderr": "error: rejects unknown keys"}, ["a"])
    assert states["a"]["state"] == "rejected"
    assert run.startswith("rejected")


def test_an_architecture_warning_answers_other_model() -> None:
    gt = ground_truth({"outcome": "other-model: NemotronHForCausalLM (first registered entry)"}, STORED)
    warning = {"rule": "config-architecture", "severity": "warning", "message": "vLLM builds NemotronHForCausalLM ...: this load path does not run"}
    report = {"ok": True, "status": "verified", "failures": [], "skipped": [], "warnings": [warning]}
    assert compare(gt, {"rc": 0, "report": report, "stderr": ""})["agree"]
    report["warnings"] = []
    assert not compare(gt, {"rc": 0, "report": report, "stderr": ""})["agree"]


def test_a_crash_is_no_answer_not_a_refusal() -> None:
    crash = {"rc": 1, "report": None, "stderr": "Traceback ...\nImportError: cannot import name 'X'"}
    states, run = nemoverify_states(crash, ["a"])
    assert states["a"]["state"] == "nemoverify-error" and "ImportError" in run


def test_the_results_table_shows_no_machine_path() -> None:
    text = f"File \"{paths.default_cache()}/src/0.33.0/vllm/x.py\", line 3; {paths.WORK}/vl; {ROOT}/docs; /tmp/tmpab12/report.json"
    shown = _no_machine_paths(text, paths.CELLS)
    assert str(ROOT) not in shown and "/tmp/" not in shown
    assert "<cache>/src/0.33.0/vllm/x.py" in shown and "<work>/vl" in shown


# ---------------------------------------------------------------- with the harness's venvs and cache

def _cached(members: list[str]) -> bool:
    src = paths.default_cache() / "src"
    return all((src / r / ".wheel.json").exists() for r in KNOWN_VLLM) and all(
        (src / r / m).exists() or m not in json.loads((src / r / ".wheel.json").read_text())["members"] for r in KNOWN_VLLM for m in members
    )


def test_the_committed_fingerprints_are_what_the_wheels_give(tmp_path: Path) -> None:
    from harness.fingerprints import MEMBERS

    if not _cached(MEMBERS):
        pytest.skip("no fetched wheel members in the harness cache (python -m harness fetch --release all fetches them)")
    out = tmp_path / "fingerprints.json"
    subprocess.run([sys.executable, "-m", "harness", "fingerprints", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    assert out.read_text() == (ROOT / "nemoverify" / "deployment" / "fingerprints.json").read_text()


@pytest.mark.slow
def test_one_cell_end_to_end(tmp_path: Path) -> None:
    from harness.fetch import MEMBERS

    if not (paths.VENV / "bin" / "python").exists() or not (paths.VENV16 / "bin" / "python").exists():
        pytest.skip("no harness venvs (make harness-setup)")
    if not all((paths.default_cache() / "src" / "0.33.0" / m).exists() for m in MEMBERS):
        pytest.skip("0.33.0's sources are not in the harness cache (python -m harness fetch --release 0.33.0)")
    python = str(paths.VENV / "bin" / "python")
    args = ["--release", "0.33.0", "--layout", "vl", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "cells")]
    subprocess.run([python, "-m", "harness", "run", *args], cwd=ROOT, check=True, capture_output=True, timeout=280)
    cell = json.loads((tmp_path / "cells" / "0.33.0" / "vl.json").read_text())
    assert cell["truth"]["outcome"] == "completed" and cell["truth"]["checks"] == []
    assert cell["compare"]["agree"], cell["compare"]["disagreements"]

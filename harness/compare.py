"""Pure: map nemoverify's answer and the ground truth to one vocabulary and compare per tensor.

nemoverify's report -> per tensor name:
  a name in `failures`: kinds load-error -> load-error; bytes / mismatch -> corrupted;
    duplicate -> the copy its message says the model holds is intact, the others overwritten;
    shared-parameter (reported on every name of the group) -> the one whose message says "the model
      holds this one" intact, the others overwritten; where the message says the survivor "depends on
      stream order" (names in different files, which the streamer completes in any order), either:
      it agrees with intact or overwritten, and counts as overwritten in the run's verdict (a group
      always loses all but one);
    anything else -> failed:<kinds>
  a name in `skipped` -> dropped;  every other tensor -> intact
  exit code 2/3 with no verdict (a usage error or `problems`) -> rejected (every tensor)
  no report and another exit code (nemoverify crashed) -> nemoverify-error (every tensor)
A name nemoverify reports applies to every copy of it (a stray file's duplicate has two ids).
The ground truth's run-level outcomes compare as: rejected <-> rejected; other-model <-> a report
whose `config-architecture` warning says vLLM builds another class or refuses the architecture
(this load path does not run): every tensor other-model. Verified without that warning, every
tensor disagrees.
"""

from __future__ import annotations

import re

_KIND = (("load-error", "load-error"), ("bytes", "corrupted"), ("mismatch", "corrupted"), ("shared-parameter", "overwritten"), ("duplicate", "overwritten"))


def nemoverify_states(nv: dict, names: list[str]) -> tuple[dict[str, dict], str]:
    """{name: {state, detail}} and the run-level answer ('verified' | 'failed' | 'rejected: ...')."""
    rep = nv.get("report")
    if rep is None and nv["rc"] not in (2, 3):  # a crash (a traceback, exit 1): no answer, not a refusal
        why = "; ".join((nv.get("stderr") or "").strip().splitlines()[-3:])[-300:]
        return {n: {"state": "nemoverify-error", "detail": why} for n in names}, f"error (exit {nv['rc']}): {why}"
    if rep is None or rep.get("status") in ("invalid", "error") or (nv["rc"] in (2, 3) and not rep.get("failures")):
        why = (nv.get("stderr") or "").strip().splitlines()
        if rep and rep.get("problems"):
            why = [p.get("message", "") for p in rep["problems"]]
        msg = "; ".join(why)[-300:]
        return {n: {"state": "rejected", "detail": msg} for n in names}, f"rejected (exit {nv['rc']}): {msg}"
    other = [w["message"] for w in rep.get("warnings") or [] if w.get("rule") == "config-architecture"]
    if other:
        return {n: {"state": "other-model", "detail": other[0]} for n in names}, f"other-model (warned, exit {nv['rc']}): {other[0][:200]}"
    out = {n: {"state": "intact"} for n in names}
    for s in rep.get("skipped", []):
        out[s["name"]] = {"state": "dropped", "detail": s.get("reason", "")}
    for f in rep.get("failures", []):
        kinds = f.get("kinds", [])
        msg = f.get("message", "")
        detail = f"{','.join(kinds)}: {msg}"[:300]
        if kinds == ["shared-parameter"]:
            if "depends on stream order" in msg:  # the survivor is the streamer's completion order's
                out[f["name"]] = {"state": "either", "detail": detail}
                continue
            # every name loading into the parameter is reported; the one loaded last says the model holds it
            held = "the model holds this one" in msg
            out[f["name"]] = {"state": "intact" if held else "overwritten", "detail": detail}
            continue
        if kinds == ["duplicate"] and "depends on stream order" in msg:
            out[f["name"]] = {"state": "either", "detail": detail}
            continue
        if kinds == ["duplicate"]:
            m = re.search(r"ends up holding the (?:indexed )?copy from (\S+?)(?:[,;]| \(|$)", msg)
            out[f["name"]] = {"state": "overwritten", "detail": detail, "held_file": m.group(1) if m else None}
            continue
        state = next((st for k, st in _KIND if k in kinds), "failed:" + ",".join(kinds))
        out[f["name"]] = {"state": state, "detail": detail}
    run = "verified" if rep.get("ok") else "failed"
    return out, f"{run} (exit {nv['rc']})"


def run_verdict(states: dict[str, str]) -> str:
    """A run-level verdict from per-tensor states: the worst thing that happens to any tensor."""
    vals = {"overwritten" if v == "either" else v for v in states.values()}
    for v in ("nemoverify-error", "rejected", "stream-fails", "other-model", "not-modelled", "load-error", "corrupted", "overwritten"):
        if v in vals:
            return v
    return "clean"


def compare(truth: dict, nv: dict) -> dict:
    """Per tensor id: truth state, nemoverify state, agree?"""
    ids = list(truth["tensors"])
    name_of = {i: i.split("@", 1)[0] for i in ids}
    nvs, nv_run = nemoverify_states(nv, sorted(set(name_of.values())))
    rows = {}
    for i in ids:
        t = truth["tensors"][i]
        n = dict(nvs.get(name_of[i], {"state": "absent"}))
        if "held_file" in n and "@" in i:  # a duplicate name: the copy nemoverify says the model holds is intact
            n["state"] = "intact" if i.split("@", 1)[1] == n["held_file"] else "overwritten"
        agree = t["state"] == n["state"] or (n["state"] == "either" and t["state"] in ("intact", "overwritten"))
        rows[i] = {"truth": t["state"], "nemoverify": n["state"], "agree": agree, "truth_detail": t.get("detail", ""), "nemoverify_detail": n.get("detail", ""), "destinations": t.get("destinations", [])}
    truth_run = run_verdict({i: r["truth"] for i, r in rows.items()})
    nv_verdict = run_verdict({i: r["nemoverify"] for i, r in rows.items()})
    return {
        "agree": all(r["agree"] for r in rows.values()),
        "disagreements": {i: r for i, r in rows.items() if not r["agree"]},
        "rows": rows,
        "truth_outcome": truth["outcome"],
        "truth_verdict": truth_run,
        "nemoverify_run": nv_run,
        "nemoverify_verdict": nv_verdict,
        "verdict_agree": truth_run == nv_verdict or (truth_run == "clean" and nv_verdict == "clean"),
    }

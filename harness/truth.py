"""Pure: the ground truth per checkpoint tensor, from a raw run (runner.run) and what the
checkpoint stores (stored.stored_tensors).

States:
  intact       copied into its destination(s) with its stored bytes, and not overwritten later
  corrupted    copied, but the bytes at the copy were not its stored bytes (stale buffer)
  overwritten  copied intact, but another checkpoint tensor was copied later into the same
               (parameter, shard, expert): the model holds the other
  dropped      never copied into any parameter
  load-error   the release raises on it (found by removing it and running again until the load completes)
Run-level outcomes that replace every tensor's state:
  rejected     the loader's constructor raised (extra config), nothing is loaded
  other-model  the registry builds another class from config.json's architectures
  stream-fails the load fails before the streamer yields a tensor (e.g. the streamer refuses its settings)
"""

from __future__ import annotations

from collections import defaultdict

from harness.stored import StoredTensor, tensor_ids


def ground_truth(raw: dict, stored: list[StoredTensor]) -> dict:
    ids = tensor_ids(stored)
    by_src = {(t.name, t.digest): t for t in stored}
    out: dict = {"outcome": raw["outcome"], "tensors": {}, "checks": []}
    outcome = raw["outcome"]
    if not outcome.startswith(("completed", "unattributed-error")):
        state = outcome.split(":", 1)[0]
        for t in stored:
            out["tensors"][ids[(t.file, t.name)]] = {"state": state, "destinations": [], "detail": outcome}
        return out
    dep = raw["deployed"]
    safe = raw["safe"]
    errors = {(r["name"], r["digest"]): r for r in dep["removed"]}

    def tid(src):
        t = by_src.get(tuple(src)) if src else None
        return ids[(t.file, t.name)] if t else None

    # destinations resolved by the safe run (same code, owned tensors, unlimited ring)
    safe_dest: dict[str, set] = defaultdict(set)
    for c in safe["copies"]:
        i = tid(c["src"])
        if i is None:
            out["checks"].append(f"safe run: copy into {c['dest']} from an unknown source {c['src']}")
            continue
        if c["digest"] != by_src[tuple(c["src"])].digest:
            out["checks"].append(f"safe run: {i} reached {c['dest']} with other bytes")
        safe_dest[i].add((c["dest"], c["shard"], c["expert"]))
    # the deployed run
    copies = sorted(dep["copies"], key=lambda c: c["seq"])
    last_writer: dict[tuple, str] = {}
    for c in copies:
        last_writer[(c["dest"], c["shard"], c["expert"])] = tid(c["src"])
    per: dict[str, list] = defaultdict(list)
    for c in copies:
        i = tid(c["src"])
        if i is None:
            out["checks"].append(f"deployed run: copy into {c['dest']} from a source whose bytes at yield match no stored tensor {c['src']}")
            continue
        per[i].append(c)
    for t in stored:
        i = ids[(t.file, t.name)]
        e = errors.get((t.name, t.digest))
        cs = per.get(i, [])
        dests = sorted({(c["dest"], c["shard"], c["expert"]) for c in cs}, key=str)
        if dests and set(dests) != safe_dest.get(i, set()):
            out["checks"].append(f"{i}: destinations differ between safe and deployed runs")
        entry: dict = {"destinations": [list(d) for d in dests]}
        if e:
            entry.update(state="load-error", detail=e["error"], found=e["found"])
        elif not cs:
            entry.update(state="dropped")
        elif any(c["digest"] != t.digest for c in cs):
            bad = [c for c in cs if c["digest"] != t.digest]
            entry.update(state="corrupted", detail=f"{len(bad)} of {len(cs)} copies had other bytes")
        else:
            later = {d: last_writer[d] for d in dests if last_writer[d] != i}
            if later and len(later) == len(dests):
                entry.update(state="overwritten", detail="; ".join(f"{d[0]}{'[' + str(d[1]) + ']' if d[1] is not None else ''} holds {w}" for d, w in later.items()))
            else:
                entry.update(state="intact")
        out["tensors"][i] = entry
    if outcome.startswith("unattributed-error"):
        out["checks"].append(outcome)
    return out

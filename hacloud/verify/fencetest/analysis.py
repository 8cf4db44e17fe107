"""What a fence-test round measured, computed from the client's log and the store's digest (pure).

Definitions (docs in README "fence-test"):
- The **outage** starts with the first write that failed after the fault was injected
  (``t0``): its send time. A write that never failed means no outage was seen.
- **RTO** = from ``t0`` to the first acknowledged write sent after the outage began.
  **outage_seconds** = from the last acknowledgement before the outage to that one (what the
  client really went without, e.g. when a fence delay kept the old node serving a moment).
- **lost** = acknowledged writes whose record is not in the store afterwards, or is there
  under another id (RPO, must be 0); **corrupt** = a stored record of this run whose checksum
  differs from what was sent; **duplicates** = a sequence number stored twice, or one record id
  acknowledged for two different writes (a new primary reusing the id of a lost record).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Attempt:
    seq: int
    sha: str
    sent: float
    done: float
    ok: bool
    id: int | None = None
    node: str | None = None
    error: str | None = None


def load_attempts(path: Path) -> list[Attempt]:
    """The client's JSON lines; a torn last line (the client was killed mid-write) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.append(
            Attempt(
                int(raw["seq"]),
                str(raw["sha"]),
                float(raw["sent"]),
                float(raw["done"]),
                bool(raw["ok"]),
                raw.get("id"),
                raw.get("node"),
                raw.get("error"),
            )
        )
    return sorted(out, key=lambda a: a.sent)


@dataclass(frozen=True)
class Availability:
    rto_seconds: float | None  # None: an outage began and the service never answered again
    outage_seconds: float | None
    outage_began: float | None  # epoch; None: no write failed after t0
    answered_again: float | None  # epoch of the first acknowledgement after the outage
    answered_by: str | None
    serving: tuple[str, ...]  # nodes that acknowledged writes after t0, in order of first ack
    interleaved: bool  # a node acknowledged again after another had taken over: two servers
    failed_writes: int
    max_latency: float  # slowest acknowledged write sent after t0


def availability(attempts: list[Attempt], t0: float, final: bool = True) -> Availability:
    """``final=False`` while the test still runs: writes in flight at the fault that failed do
    not open the outage yet, since writes sent after the fault may still be on their way."""
    failed = [a for a in attempts if not a.ok and a.done >= t0]
    # A write sent after the fault that failed marks the outage; writes in flight at the fault
    # count only when nothing sent afterwards failed (their send time predates the fault).
    began = min((a.sent for a in failed if a.sent >= t0), default=None)
    if began is None and final:
        began = min((a.sent for a in failed), default=None)
    acks = sorted((a for a in attempts if a.ok), key=lambda a: a.done)
    after_t0 = [a for a in acks if a.done >= t0]
    serving: list[str] = []
    interleaved = False
    for a in after_t0:
        node = a.node or "?"
        if not serving or serving[-1] != node:
            if node in serving:
                interleaved = True
            serving.append(node)
    max_latency = max((a.done - a.sent for a in acks if a.sent >= t0), default=0.0)
    serving_order = tuple(dict.fromkeys(serving))
    if began is None:
        return Availability(0.0, 0.0, None, None, None, serving_order, interleaved, 0, max_latency)
    back = next((a for a in acks if a.sent >= began and a.done >= t0), None)
    before = [a.done for a in acks if a.done <= began]
    last_before = max(before) if before else t0
    if back is None:
        return Availability(
            None, None, began, None, None, tuple(serving), interleaved, len(failed), max_latency
        )
    return Availability(
        round(back.done - t0, 3),
        round(back.done - min(last_before, back.done), 3),
        began,
        back.done,
        back.node,
        serving_order,
        interleaved,
        len(failed),
        max_latency,
    )


@dataclass(frozen=True)
class DataCheck:
    acknowledged: int
    lost: tuple[int, ...]  # sequence numbers
    duplicates: int
    corrupt: tuple[int, ...]
    committed_unacknowledged: int  # in flight at the fault: stored but never acknowledged (allowed)
    stored: int
    notes: tuple[str, ...] = field(default=())


def check_data(attempts: list[Attempt], records: list[list[Any]], run: str) -> DataCheck:
    """Compare what the client was told (acknowledgements) with what the store holds."""
    prefix = f"hacloud-fencetest {run} "
    sent = {a.seq: a for a in attempts}
    acked = {a.seq: a for a in attempts if a.ok}
    stored: dict[int, list[tuple[int, str]]] = defaultdict(list)
    corrupt: list[int] = []
    notes: list[str] = []
    for rid, sha, first in records:
        if not str(first).startswith(prefix):
            continue
        tail = str(first)[len(prefix) :].strip()
        if not tail.isdigit() or int(tail) not in sent:
            corrupt.append(-int(rid))  # a record of this run that no write produced
            continue
        seq = int(tail)
        stored[seq].append((int(rid), str(sha)))
        if sha != sent[seq].sha:
            corrupt.append(seq)
    lost = []
    for seq, a in acked.items():
        ids = [rid for rid, _ in stored.get(seq, [])]
        if a.id not in ids:
            lost.append(seq)
            if ids:
                notes.append(f"write {seq} was acknowledged as record {a.id} but is stored as {ids}")
    duplicates = sum(len(v) - 1 for v in stored.values() if len(v) > 1)
    by_id: dict[int, set[int]] = defaultdict(set)
    for a in acked.values():
        if a.id is not None:
            by_id[a.id].add(a.seq)
    reused = [rid for rid, seqs in by_id.items() if len(seqs) > 1]
    duplicates += len(reused)
    if reused:
        notes.append(f"record ids acknowledged for more than one write: {sorted(reused)[:10]}")
    unacked = sum(1 for seq in stored if seq not in acked)
    return DataCheck(
        len(acked),
        tuple(sorted(lost)),
        duplicates,
        tuple(corrupt),
        unacked,
        sum(map(len, stored.values())),
        tuple(notes),
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "min": round(ordered[0], 2),
        "median": round(median, 2),
        "p95": round(percentile(ordered, 95), 2),
        "max": round(ordered[-1], 2),
    }

"""Run metrics: what `run_flow` returns, `--stats` writes and the status line shows."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

from engine import run_flow
from engine.tools.flows import GeneratedSource, count_final_flow, generated_word
from recovery import RecoveryConfig, init_db_dir


def test_summary_counts_items_steps_rings_and_commits(tmp_path: Path) -> None:
    init_db_dir(tmp_path / "store")
    flow = count_final_flow(GeneratedSource(generated_word, 60_000, batch_size=500))
    summary = run_flow(
        flow,
        workers=2,
        epoch_interval=timedelta(milliseconds=5),
        recovery_config=RecoveryConfig(tmp_path / "store"),
    )
    assert summary.items_in == 60_000
    assert summary.items_out == 10_000  # one final count per word
    assert summary.workers == 2 and len(summary.per_worker) == 2
    assert sum(w.items_in for w in summary.per_worker) == 60_000
    assert summary.items_exchanged == sum(w.items_sent for w in summary.per_worker)
    assert summary.items_exchanged == sum(w.items_received for w in summary.per_worker)
    steps = {s.step_id: s for s in summary.steps}
    assert steps["wordcount.count.count_batch"].items_in == 60_000
    assert steps["wordcount.out"].items_in == 10_000
    assert summary.bottleneck_step in steps
    assert {(r.sender, r.receiver) for r in summary.rings} == {(0, 1), (1, 0)}
    assert all(r.frames > 0 and r.bytes > 0 for r in summary.rings)
    for worker in summary.per_worker:
        assert worker.cpu_s > 0 and worker.max_rss_bytes > 10 * 2**20
        assert worker.commits >= 1 and worker.commit_s > 0
        assert worker.epoch_close_latency_max_s is not None
        assert 0 <= worker.epoch_close_latency_mean_s <= worker.epoch_close_latency_max_s
    assert summary.input_started_s is not None and summary.input_started_s < summary.wall_time_s
    assert summary.workers_ready_s is not None and summary.workers_ready_s < summary.wall_time_s
    assert summary.running_items_per_s is not None
    assert summary.running_items_per_s >= summary.items_per_s
    document = json.loads(json.dumps(dataclasses.asdict(summary)))
    assert document["schema"] == 1
    assert set(document["per_worker"][0]) >= {"cpu_percent", "commit_s", "blocked_s"}

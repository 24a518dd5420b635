"""Progress is real: it moves through distinct values strictly between 0 and 1 as work is done, never decreases,
and is exactly 1.0 on success, as seen by watchers and by polling."""

from __future__ import annotations

import asyncio

from reelscan.service.jobs.handler import JobContext
from reelscan.service.jobs.model import Job, JobKind, JobState, Stage
from tests.jobs.conftest import EngineFactory
from tests.jobs.handlers import Recorder, SteppedHandler, eventually


def assert_progress_sequence(seen: list[Job], total: int) -> None:
    seqs = [j.seq for j in seen]
    assert seqs == sorted(set(seqs)), f"seq not strictly increasing: {seqs}"
    fractions = [j.progress.fraction for j in seen]
    assert fractions == sorted(fractions), f"progress decreased: {fractions}"
    intermediate = sorted({f for f in fractions if 0.0 < f < 1.0})
    assert intermediate == [i / total for i in range(1, total)], intermediate
    assert all(j.state is JobState.RUNNING for j in seen if 0.0 < j.progress.fraction < 1.0)
    final = seen[-1]
    assert final.state is JobState.SUCCEEDED
    assert final.progress.fraction == 1.0
    assert final.progress.stage is Stage.DONE
    assert final.result == {"probed": total}


async def test_progress_seen_by_two_watchers_and_by_polling(make_engine: EngineFactory) -> None:
    total = 4
    handler = SteppedHandler(total)
    engine = await make_engine(handler)
    job, existed = await engine.submit(JobKind.SCAN, {"path": "/x"}, timeout_s=None)
    assert not existed and job.state is JobState.PENDING and job.progress.fraction == 0.0
    watchers = [Recorder(engine.watch(job.id)), Recorder(engine.watch(job.id))]
    await handler.started(job.id)
    await eventually(lambda: engine.watcher_count(job.id) == 2, what="both watchers registered")
    polled: list[Job] = []
    for done in range(1, total + 1):
        handler.step(job.id)

        async def reached(done: int = done) -> bool:
            polled.append(await engine.get(job.id))
            if done == total:  # the handler then finalizes and succeeds: watchers may get only the end
                return all(w.last is not None and w.last.terminal for w in watchers)
            return all(w.last is not None and w.last.progress.done == done for w in watchers)

        await eventually(reached, what=f"watchers at {done}/{total}")
        current = await engine.get(job.id)
        if done < total:
            assert current.state is JobState.RUNNING
            assert current.progress.fraction == done / total
            assert current.progress.current_item == f"item-{done - 1}"
            assert current.result == {"probed": done}
    for w in watchers:
        assert_progress_sequence(await w.done(), total)
        assert w.seen[0].progress.fraction == 0.0
    final = await engine.get(job.id)
    assert final.state is JobState.SUCCEEDED and final.progress.fraction == 1.0
    polled_fractions = [j.progress.fraction for j in polled]
    assert polled_fractions == sorted(polled_fractions)
    assert {f for f in polled_fractions if 0 < f < 1} == {i / total for i in range(1, total)}
    assert engine.watcher_count(job.id) == 0


async def test_fraction_is_held_below_one_until_success(make_engine: EngineFactory) -> None:
    class LastStepSlow(SteppedHandler):
        async def run(self, ctx: JobContext) -> None:
            ctx.report(stage=Stage.PROBING, done=3, total=3)
            await self._gates[ctx.job_id].acquire()

    handler = LastStepSlow()
    engine = await make_engine(handler)
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)

    async def all_done_reported() -> bool:
        return (await engine.get(job.id)).progress.done == 3

    await eventually(all_done_reported)
    running = await engine.get(job.id)
    assert running.state is JobState.RUNNING
    assert 0.99 <= running.progress.fraction < 1.0
    handler.step(job.id)
    final = await engine.wait(job.id, 5)
    assert final.state is JobState.SUCCEEDED and final.progress.fraction == 1.0


async def test_stage_with_unknown_total_keeps_fraction_and_reports_counts(make_engine: EngineFactory) -> None:
    gate = asyncio.Event()

    class TwoStages(SteppedHandler):
        async def run(self, ctx: JobContext) -> None:
            ctx.report(stage=Stage.PROBING, done=1, total=2)
            await gate.wait()
            gate.clear()
            ctx.report(stage=Stage.FINALIZING, done=7)  # total unknown
            await gate.wait()

    engine = await make_engine(TwoStages())
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)

    async def at(stage: Stage, done: int) -> bool:
        p = (await engine.get(job.id)).progress
        return p.stage is stage and p.done == done

    await eventually(lambda: at(Stage.PROBING, 1))
    assert (await engine.get(job.id)).progress.fraction == 0.5
    gate.set()
    await eventually(lambda: at(Stage.FINALIZING, 7))
    p = (await engine.get(job.id)).progress
    assert p.fraction == 0.5 and p.total == 0 and p.eta_s is None
    gate.set()
    assert (await engine.wait(job.id, 5)).progress.fraction == 1.0


async def test_engine_computes_rate_and_eta(make_engine: EngineFactory) -> None:
    engine = await make_engine(SteppedHandler(30, auto_delay_s=0.05))
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    seen = await Recorder(engine.watch(job.id)).done(10)
    with_rate = [j for j in seen if j.state is JobState.RUNNING and j.progress.rate > 0]
    assert with_rate, "no update carried a rate"
    assert all(j.progress.eta_s is not None and j.progress.eta_s > 0 for j in with_rate)
    # ETA shrinks as the work nears its end (not a timing assertion: the count left shrinks).
    assert with_rate[-1].progress.eta_s is not None and with_rate[0].progress.eta_s is not None
    assert with_rate[-1].progress.eta_s < with_rate[0].progress.eta_s
    assert seen[-1].progress.eta_s is None


async def test_updates_are_coalesced_to_a_bounded_cadence(make_engine: EngineFactory) -> None:
    """A handler reporting thousands of times produces a handful of snapshots, not thousands."""

    class Chatty(SteppedHandler):
        async def run(self, ctx: JobContext) -> None:
            for i in range(5000):
                ctx.report(stage=Stage.PROBING, done=i + 1, total=5000)
                if i % 500 == 0:
                    await asyncio.sleep(0.01)

    engine = await make_engine(Chatty())
    job, _ = await engine.submit(JobKind.SCAN, {}, timeout_s=None)
    seen = await Recorder(engine.watch(job.id)).done()
    final = seen[-1]
    assert final.state is JobState.SUCCEEDED
    assert final.seq < 30, f"{final.seq} snapshots for one 0.1s job"

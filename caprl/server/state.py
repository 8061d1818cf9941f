"""The reward service's state: the models (once loaded: the reader's engine, the judge), the engines for
per-request options, the coalescers (one per model) and the status; the app (``caprl.server.app``) holds one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from caprl.reward.claims import ClaimCheck, ClaimVerifier
from caprl.reward.engine import RewardConfig, RewardEngine, RewardItem, RewardResult
from caprl.reward.judge import VLMJudge
from caprl.server.batcher import Coalescer, Outcome, Overloaded, ShuttingDown
from caprl.server.judging import CLAIMS_KEY, JUDGE_KEY, ClaimCheckRunner, JudgeJob, JudgeRunner
from caprl.server.metrics import ServiceMetrics
from caprl.server.parse import ParsedRequest, RequestError, check_config
from caprl.server.settings import ServerSettings

log = logging.getLogger("caprl.server")

EngineSource = RewardEngine | Callable[[], RewardEngine]
JudgeSource = VLMJudge | Callable[[], VLMJudge]
_MAX_ENGINES = 32  # engines for per-request option sets (cheap: they share the reader)


class _EachItem:
    """An engine as its coalescer runs it: an item whose claims could not be verified fails alone (its exception in
    its place), without the batch being split and read again to find it."""

    def __init__(self, engine: RewardEngine):
        self.engine = engine

    def score(self, items: list[RewardItem]) -> list[RewardResult | Exception]:
        return self.engine.score_each(items)


class ServiceState:
    """The models (once loaded: the reader's engine, the judge), the engines for per-request options, the
    coalescers (one per model), and the service status."""

    def __init__(
        self,
        source: EngineSource | None,
        settings: ServerSettings,
        metrics: ServiceMetrics,
        judge: JudgeSource | None = None,
    ):
        if source is None and judge is None:
            raise ValueError("the service needs a reader engine, a judge, or both")
        self.source, self.judge_source, self.settings, self.metrics = source, judge, settings, metrics
        self.status: Literal["loading", "ready", "failed", "draining"] = "loading"
        self.detail: str | None = None
        self.engine: RewardEngine | None = None
        self.judge: JudgeRunner | None = None
        self.coalescer: Coalescer | None = None
        self.judge_coalescer: Coalescer | None = None
        self.on_load_failure: Callable[[BaseException], None] | None = None
        self.verifier: ClaimVerifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engines: OrderedDict[str, RewardEngine] = OrderedDict()
        self._load_task: asyncio.Task[None] | None = None

    @property
    def has_reader(self) -> bool:
        return self.source is not None

    @property
    def has_judge(self) -> bool:
        return self.judge_source is not None

    @property
    def pending(self) -> int:
        return sum(c.pending for c in (self.coalescer, self.judge_coalescer) if c is not None)

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        wait = s.max_wait_ms / 1000
        if self.has_reader:
            self.coalescer = Coalescer(
                max_batch=s.max_batch, max_wait=wait, max_pending=s.max_pending, metrics=self.metrics.qa_batches
            )
            self.coalescer.start()
        if self.has_judge:
            self.judge_coalescer = Coalescer(
                max_batch=s.judge_max_batch, max_wait=wait, max_pending=s.judge_max_pending,
                metrics=self.metrics.judge_batches,
            )  # fmt: skip
            self.judge_coalescer.start()
        if isinstance(self.source, RewardEngine):
            self._set_engine(self.source)
        if isinstance(self.judge_source, VLMJudge):
            self._set_judge(self.judge_source)
        if self._loaded():
            self._ready()
        else:
            # Loading runs in the background so /health can say "loading" instead of the port being closed.
            self._load_task = asyncio.get_running_loop().create_task(self._load())

    def _loaded(self) -> bool:
        return (self.engine is not None or not self.has_reader) and (self.judge is not None or not self.has_judge)

    async def _load(self) -> None:
        # One model after the other: two loads at once would contend for the same disk and device memory.
        for what in ("reader", "judge"):
            source = self.source if what == "reader" else self.judge_source
            if source is None or isinstance(source, (RewardEngine, VLMJudge)):
                continue
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(source)
                if what == "reader":
                    self._set_engine(model)  # type: ignore[arg-type]
                else:
                    self._set_judge(model)  # type: ignore[arg-type]
            except Exception as exc:
                self.status, self.detail = "failed", f"the {what} failed to load: {type(exc).__name__}: {exc}"
                log.error("%s", self.detail, exc_info=exc)
                if self.on_load_failure is not None:
                    self.on_load_failure(exc)
                return
            name = self.engine.reader.name if what == "reader" else self.judge.name  # type: ignore[union-attr]
            log.info("%s %s ready in %.1f s", what, name, time.perf_counter() - started)
        self._ready()

    def _set_engine(self, engine: RewardEngine) -> None:
        check_config(engine.config, self.settings)  # a server started with a config it would refuse is a bug
        self.engine = engine

    def _set_judge(self, judge: VLMJudge) -> None:
        if not isinstance(judge, VLMJudge):
            raise TypeError(f"the judge factory returned {type(judge).__name__}, not a VLMJudge")
        self.judge = JudgeRunner(judge)

    def _wire_claims(self) -> None:
        """With both models loaded, QA items with media get the claim verifier for their correctness term: the
        reader splits (in the reader's worker), the judge checks (queued on the judge's worker, see
        ``_check_claims``). An engine that came with its own verifier keeps it."""
        base, runner = self.engine, self.judge
        if base is None or runner is None or base.verifier is not None:
            return
        vlm = runner.judge
        self.verifier = ClaimVerifier(
            base.reader, vlm.captioner, retries=vlm.retries, retry_temperature=vlm.retry_temperature,
            judge_settings=vlm.settings, system=vlm.system, seed=base.config.seed, check_via=self._check_claims,
        )  # fmt: skip
        self.engine = RewardEngine(
            base.reader, base.config, template=base.template, count_tokens=base.count_tokens, verifier=self.verifier
        )

    def _check_claims(self, jobs: list[ClaimCheck]) -> list[Any]:
        """Run claim checks on the judge's coalescer from the reader's worker thread, and wait for them. The judge's
        worker never waits on the reader's, so this cannot deadlock."""
        assert self.judge_coalescer is not None and self._loop is not None and self.verifier is not None
        work = self.judge_coalescer.score(CLAIMS_KEY, ClaimCheckRunner(self.verifier), list(jobs))
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _ready(self) -> None:
        self._wire_claims()
        if self.status == "loading":
            self.status, self.detail = "ready", None
            self.metrics.ready.set(1)

    async def stop(self) -> None:
        self.status = "draining"
        self.metrics.ready.set(0)
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()  # the loading thread itself runs on, but nothing waits for it
        for coalescer in (self.coalescer, self.judge_coalescer):
            if coalescer is not None:
                await coalescer.close()

    def gate(self) -> None:
        """Return when the service takes work; else a 503 saying why not."""
        if self.status == "ready":
            return
        if self.status == "loading":
            retry = str(self.settings.load_retry_after_s)
            what = (
                "the reader is" if not self.has_judge else "the judge is" if not self.has_reader else "the models are"
            )
            raise RequestError(503, f"{what} still loading; retry shortly", headers={"Retry-After": retry})
        if self.status == "draining":
            raise RequestError(503, "the service is shutting down", headers={"Retry-After": "1"})
        raise RequestError(503, self.detail or "the service is not ready")

    def engine_for(self, config: RewardConfig) -> tuple[str, RewardEngine]:
        base = self.engine
        assert base is not None
        if config == base.config:
            return "", base
        key = config.model_dump_json()
        engine = self._engines.get(key)
        if engine is None:
            engine = RewardEngine(
                base.reader, config, template=base.template, count_tokens=base.count_tokens, verifier=base.verifier
            )
            self._engines[key] = engine
            if len(self._engines) > _MAX_ENGINES:
                self._engines.popitem(last=False)
        else:
            self._engines.move_to_end(key)
        return key, engine

    async def score(self, parsed: ParsedRequest) -> list[Outcome | None]:
        """Per request item: its result, the exception that took it, or None (invalid, see ``parsed.errors``)."""
        out: list[Outcome | None] = [None] * len(parsed.items)
        qa = [(i, it) for i, it in parsed.valid if isinstance(it, RewardItem)]
        judged = [(i, it) for i, it in parsed.valid if isinstance(it, JudgeJob)]
        calls = []
        try:
            # Both checked before either is queued, so an overloaded judge does not leave reader work behind.
            if qa:
                assert self.coalescer is not None
                self.coalescer.check_admission(len(qa))
            # QA items whose claims the judge will check count against the judge's bound too.
            checks = (
                sum(it.media is not None and it.scene is None for _, it in qa)
                if parsed.config.correctness_weight
                else 0
            )
            if judged or checks:
                assert self.judge_coalescer is not None
                self.judge_coalescer.check_admission(len(judged) + checks)
            if qa:
                key, engine = self.engine_for(parsed.config)
                calls.append(self.coalescer.score(key, _EachItem(engine), [it for _, it in qa]))  # type: ignore
            if judged:
                runner = self.judge
                calls.append(self.judge_coalescer.score(JUDGE_KEY, runner, [it for _, it in judged]))  # type: ignore
            parts = await asyncio.gather(*calls)
        except Overloaded as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            raise RequestError(503, str(exc), headers=headers, kind="overloaded") from None
        except ShuttingDown as exc:
            raise RequestError(503, str(exc), headers={"Retry-After": "1"}) from None
        for group, outcomes in zip([g for g in (qa, judged) if g], parts, strict=True):
            for (i, _), outcome in zip(group, outcomes, strict=True):
                out[i] = outcome
        return out

"""The long-running shell around `Controller.cycle`: a scheduler, the HTTP probes, and a clean
stop on SIGTERM/SIGINT.

APScheduler 3.x runs the cycle every interval, one at a time: a run that comes due while the
previous one still runs is skipped (and counted as an overrun), and runs missed while the
process was stalled are coalesced into one.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from autotuner.runtime.controller import Controller, CycleResult, Leadership
from autotuner.runtime.http import ControllerMetrics, HttpServer, ProbeResult
from autotuner.runtime.logging import log_event

_LOG = logging.getLogger(__name__)

# A cycle running longer than this many intervals (and at least a minute) means the daemon is
# stuck: liveness fails so that Kubernetes restarts it.
_STUCK_INTERVALS = 5
_STUCK_MINIMUM_SECONDS = 60.0
# After the grace period, how long an abandoned cycle gets to record its remaining decisions
# as skipped before the store is closed under it.
_ABANDON_SECONDS = 5.0


class Daemon:
    def __init__(
        self,
        controller: Controller,
        *,
        interval: float,
        metrics: ControllerMetrics,
        leadership: Leadership,
        http_bind: tuple[str, int] | None = None,
        closers: Sequence[Callable[[], None]] = (),
        shutdown_grace: float = 20.0,
        on_cycle: Callable[[], bool] | None = None,
    ) -> None:
        """`interval` is in real seconds. `on_cycle`, called after each cycle, may return
        False to ask the daemon to stop (the embedded simulation does at its end)."""
        self._controller = controller
        self._interval = interval
        self._metrics = metrics
        self._leadership = leadership
        self._closers = tuple(closers)
        self._shutdown_grace = shutdown_grace
        self._on_cycle = on_cycle
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._stop = threading.Event()
        # Bound now, so that a busy port fails the start and port 0 is known at once.
        self._http = (
            HttpServer(
                metrics.registry,
                self.liveness,
                controller.readiness,
                host=http_bind[0],
                port=http_bind[1],
            )
            if http_bind is not None
            else None
        )

    @property
    def http_port(self) -> int | None:
        return None if self._http is None else self._http.port

    # ---- probes --------------------------------------------------------------------------

    def liveness(self) -> ProbeResult:
        if not self._scheduler.running:
            return ProbeResult(False, "the scheduler is not running")
        running_for = self._controller.running_for()
        stuck_after = max(_STUCK_INTERVALS * self._interval, _STUCK_MINIMUM_SECONDS)
        if running_for is not None and running_for > stuck_after:
            return ProbeResult(False, f"a cycle has been running for {running_for:.0f} s")
        return ProbeResult(True, "the scheduler is running")

    # ---- running -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            log_event(_LOG, "daemon.signal", signal=signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Run cycles until asked to stop, then stop cleanly. Returns the exit status (0)."""
        self._scheduler.add_listener(
            self._on_skipped_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED
        )
        self._scheduler.add_job(
            self._run_cycle,
            IntervalTrigger(seconds=self._interval, timezone=UTC),
            id="cycle",
            name="control cycle",
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.start()
        if self._http is not None:
            self._http.start()
        log_event(_LOG, "daemon.started", interval_seconds=self._interval, http_port=self.http_port)
        self._stop.wait()
        self._shutdown()
        return 0

    def _run_cycle(self) -> None:
        report = self._controller.cycle()
        if report.result is not CycleResult.STANDBY and report.duration > self._interval:
            self._metrics.cycle_overruns.inc()
            log_event(
                _LOG,
                "cycle.overrun",
                logging.WARNING,
                duration=round(report.duration, 3),
                interval=self._interval,
            )
        if self._on_cycle is not None and not self._on_cycle():
            self._stop.set()

    def _on_skipped_run(self, event: JobEvent) -> None:
        self._metrics.cycle_overruns.inc()
        log_event(
            _LOG,
            "cycle.skipped",
            logging.WARNING,
            why="the previous cycle was still running"
            if event.code == EVENT_JOB_MAX_INSTANCES
            else "the process was too busy to start it on time",
        )

    def _shutdown(self) -> None:
        log_event(_LOG, "daemon.stopping", grace_seconds=self._shutdown_grace)
        self._scheduler.shutdown(wait=False)
        if not self._controller.wait_idle(self._shutdown_grace):
            log_event(_LOG, "cycle.abandoned", logging.WARNING)
        # Either way no change starts from here on; an abandoned cycle records its remaining
        # decisions as skipped, so the audit holds no intent without an outcome but the one
        # (if any) whose actuator call is still in flight.
        self._controller.stop_acting()
        if not self._controller.wait_idle(_ABANDON_SECONDS):
            log_event(_LOG, "cycle.still_running", logging.WARNING)
        for close in self._closers:
            try:
                close()
            except Exception as error:
                log_event(_LOG, "daemon.close_failed", logging.ERROR, error=repr(error))
        try:
            self._leadership.release()
        except Exception as error:
            log_event(_LOG, "leadership.release_failed", logging.WARNING, error=repr(error))
        self._metrics.leader.set(0)
        if self._http is not None:
            self._http.stop()
        log_event(_LOG, "daemon.stopped")

"""The RQ worker `tessera worker` runs: its work-horses never outlive it, and it stops within a grace period.

RQ (rq.worker.worker_classes.Worker.fork_work_horse) puts each work-horse in a process group of its own,
so signalling the worker's group does not reach it, and on SIGTERM ("warm shutdown") RQ waits for the
current job however long it takes. Here the horse asks the kernel for SIGKILL when its worker dies, and
a warm shutdown kills the horse after `stop_grace` seconds. The job's row is then failed by RQ's
failure callback (app.jobs.runner), or by the stale-job check at the next start.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from redis.exceptions import RedisError
from rq import Worker

from app.processes import die_with_parent

log = logging.getLogger(__name__)


class TesseraWorker(Worker):
    stop_grace: float = 10.0

    def fork_work_horse(self, job, queue):
        # As rq's Worker.fork_work_horse, plus the parent-death signal in the horse.
        child_pid = os.fork()
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        if child_pid == 0:
            os.setpgrp()
            die_with_parent(signal.SIGKILL)
            self.main_work_horse(job, queue)
            os._exit(0)
        else:
            self._horse_pid = child_pid
            self.procline(f"Forked {child_pid} at {time.time()}")

    def handle_warm_shutdown_request(self):
        if self.horse_pid:
            log.info("Stopping: the running job gets %g s to finish", self.stop_grace)
            timer = threading.Timer(self.stop_grace, self._kill_horse_after_grace)
            timer.daemon = True
            timer.start()

    def _kill_horse_after_grace(self):
        if self.horse_pid:
            log.warning("The job did not finish within %g s; stopping it", self.stop_grace)
            self.kill_horse(signal.SIGKILL)

    def teardown(self):
        # Stopping while Redis is gone (stopped first, or restarting): there is nothing to unregister
        # from, and a traceback would only alarm whoever pressed Ctrl+C.
        try:
            super().teardown()
        except RedisError:
            log.debug("Could not unregister the worker: Redis is gone")

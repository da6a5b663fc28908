"""Training rounds from Label Studio, one at a time, each in a process of its own (``tools/training_round.py``
running ``serving.learning``;
docs/label_studio.md, "Train from Label Studio").

``TrainingJobs.start(project)`` starts a round unless one runs (then it answers that one, ``running``): the round's
process fine-tunes the serving version on the project's annotations with ``train_threads`` threads at a lower
priority; its progress lines are logged and kept (``GET /v1/jobs``). When it ends with a result the version it
trained is promoted only if its held-out mask AP is at least the serving version's on the same tasks: added to
the versions folder with both figures, then switched to (``Service.switch``). A round that fails, or is stopped
with the service, leaves the serving version and says why.
"""
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, Request

LOG = logging.getLogger(__name__)
ROUNDS = '.rounds'          # the rounds' folders, inside the versions folder
KEPT_LINES = 50             # progress lines a job keeps


@dataclasses.dataclass
class Job:
    """One round: its number, project, ``state`` ('running', 'promoted', 'not promoted', 'failed', 'stopped'),
    its progress lines, the version it made and why it ended."""
    id: int
    project: int
    started: float
    state: str = 'running'
    progress: List[str] = dataclasses.field(default_factory=list)
    version: Optional[str] = None
    held_out_ap: Optional[float] = None
    parent_held_out_ap: Optional[float] = None
    reason: Optional[str] = None
    ended: Optional[float] = None


class TrainingJobs:
    """The training rounds of ``service`` (its settings: ``train_threads``, ``train_iters``, ``train_opt``, the
    Label Studio address and token, the versions folder)."""

    def __init__(self, service):
        self.service = service
        self.lock = threading.Lock()
        self.jobs: List[Job] = []
        self.process: Optional[subprocess.Popen] = None
        self.stopping = False

    def problem(self) -> Optional[str]:
        """Why this service cannot train (no versions folder, no Label Studio address), None when it can."""
        settings = self.service.settings
        if not settings.versions:
            return 'this service has no versions folder (versions) to keep a trained version in'
        if not settings.label_studio_url:
            return "this service was not given Label Studio's address (label_studio_url) to fetch annotations from"
        return None

    def start(self, project: int) -> tuple[Job, bool]:
        """(the round started for ``project``, True), or (the round running, False)."""
        with self.lock:
            if self.jobs and self.jobs[-1].state == 'running':
                return self.jobs[-1], False
            job = Job(len(self.jobs) + 1, project, time.time())
            self.jobs.append(job)
        threading.Thread(target=self.run, args=(job,), name='solov2-training', daemon=True).start()
        return job, True

    def run(self, job: Job) -> None:
        """Run ``job``'s process to its end, then promote or not (module docstring); never raises."""
        try:
            result = self.round(job)
            if result is not None:
                self.decide(job, result)
        except Exception as exc:  # the round's failure is the job's, said at /v1/jobs and in the log
            self.end(job, 'failed', f'{type(exc).__name__}: {exc}')

    def round(self, job: Job) -> Optional[Dict[str, Any]]:
        """The result the round's process printed, None when it failed or was stopped (said on ``job``)."""
        service, settings = self.service, self.service.settings
        folder = Path(settings.versions) / ROUNDS / f'round-{job.id}-{int(job.started)}'
        folder.mkdir(parents=True, exist_ok=True)
        spec = {'url': settings.label_studio_url, 'project': job.project, 'folder': str(folder),
                'weights': service.store.weights(service.version), 'threads': settings.train_threads,
                'max_iters': settings.train_iters, 'overrides': (settings.train_opt or '').split(),
                'timeout_s': settings.timeout_s}
        (folder / 'round.json').write_text(json.dumps(spec), encoding='utf-8')
        self.say(job, f'started: project {job.project}, from version {service.version}, {settings.train_iters} '
                      f'iterations on {settings.train_threads} threads, in {folder}')
        environment = {**os.environ, 'LABEL_STUDIO_API_KEY': settings.label_studio_token or ''}
        with open(folder / 'round.log', 'wb') as log:
            command = [sys.executable, '-m', 'solov2.tools.training_round', str(folder / 'round.json')]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=environment)
            result, failed = None, None
            for line in self.process.stdout or ():
                event = json.loads(line) if line.startswith(b'{') else {}
                result, failed = event.get('result', result), event.get('failed', failed)
                if 'message' in event:
                    self.say(job, f"{event['stage']}: {event['message']}")
            code = self.process.wait()
        if self.stopping:
            return self.end(job, 'stopped', 'the service stopped')
        if result is None:
            return self.end(job, 'failed', failed or f'the round ended with exit code {code} (its log: {log.name})')
        return result

    def decide(self, job: Job, result: Dict[str, Any]) -> None:
        """Promote the round's version when its held-out AP is at least the serving version's, else keep it out."""
        new, old = result['held_out_ap'], result['parent_held_out_ap']
        job.held_out_ap, job.parent_held_out_ap = new, old
        figures = f'held-out mask AP {new:.1f} (serving version {self.service.version}: {old:.1f})'
        if new < old:
            return self.end(job, 'not promoted', f'{figures}: lower, the serving version stays')
        record = self.service.store.add(result['weights'], f'training round {job.id} on Label Studio project '
                                        f'{job.project}', data_folder=result['data'], parent=self.service.version,
                                        data=result['facts'], held_out_ap=new, parent_held_out_ap=old)
        job.version = record.name
        self.service.switch(record.name)
        self.end(job, 'promoted', f'{figures}: version {record.name} serves')

    def say(self, job: Job, line: str) -> None:
        """Log a progress line of ``job`` and keep it."""
        LOG.info(f'training job {job.id}: {line}')
        job.progress = (job.progress + [line])[-KEPT_LINES:]

    def end(self, job: Job, state: str, reason: str) -> None:
        """End ``job`` in ``state`` for ``reason`` (logged: a failure at WARNING)."""
        job.state, job.reason, job.ended = state, reason, time.time()
        (LOG.warning if state in ('failed', 'stopped') else LOG.info)(f'training job {job.id} {state}: {reason}')

    def stop(self) -> None:
        """Stop the round running (its process ends; the serving version stays)."""
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()


def add_training_routes(app: FastAPI) -> None:
    """``GET /v1/jobs``: the training rounds, newest last, with their state, progress and figures."""

    @app.get('/v1/jobs', include_in_schema=False)
    async def jobs(request: Request):
        return {'jobs': [dataclasses.asdict(job) for job in request.app.state.service.training.jobs]}

"""The service's Prometheus metrics, in a registry of its own (one per application, so two services
in one process never share counts); docs/serving.md lists them."""
from typing import Callable, List, Mapping, Tuple

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The metrics of one service; ``queue_depth`` reads the batcher's queue, ``decoding`` the decode
    budget's bytes in use and ``held`` the requests in flight and uploads (``app.SLOTS``) when scraped."""

    def __init__(self, max_batch: int, queue_depth: Callable[[], int], decoding: Callable[[], int],
                 held: Mapping[str, int]):
        self.registry = CollectorRegistry()
        self.requests = Counter('solov2_requests', 'HTTP requests answered, by route and status',
                                ['route', 'status'], registry=self.registry)
        self.latency = Histogram('solov2_request_seconds', 'time from a request to its answer, by route',
                                 ['route'], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram('solov2_stage_seconds', "time of each stage of a picture: 'queue' (waiting for the "
                                "network thread), 'decode' (and resize), 'network', 'postprocess', 'encode' (the "
                                "answer's masks)", ['stage'], buckets=(0.001, 0.0025, 0.005) + LATENCY_BUCKETS,
                                registry=self.registry)
        self.refused = Counter('solov2_refused', "requests refused 503 for want of room, by reason: 'in flight' "
                               "(queue_size), 'uploads' (max_uploads), 'in-flight budget' (max_in_flight_mb), "
                               "'not ready' (loading or failed), 'stopping'", ['reason'], registry=self.registry)
        self.batch_size = Histogram('solov2_batch_size', 'pictures in each network batch',
                                    buckets=tuple(range(1, max_batch + 1)), registry=self.registry)
        self.engines = Gauge('solov2_engine', 'the engine serving (1 once ready): asked, engine, its precision, '
                             'pinned ("true": the cache pins it), and fallback ("true" when auto could not export: '
                             'several times slower; the log and /readyz say why)',
                             ['asked', 'engine', 'precision', 'pinned', 'fallback'], registry=self.registry)
        self.versions = Gauge('solov2_model_version', 'the model version serving (1; docs/label_studio.md)',
                              ['version'], registry=self.registry)
        for name, text, read in (
                ('solov2_in_flight', 'segmentation requests accepted and not yet answered', lambda: held['in flight']),
                ('solov2_uploads', 'request bodies being received (at most max_uploads)', lambda: held['uploads']),
                ('solov2_queue_depth', 'pictures waiting for the network', queue_depth),
                ('solov2_in_flight_budget_bytes', 'bytes of the in-flight budget (max_in_flight_mb) held by the '
                 'pictures admitted and not yet answered (decoding, waiting for the network, finishing)', decoding)):
            Gauge(name, text, registry=self.registry).set_function(read)
        ProcessCollector(registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def engine(self, asked: str, backend, precision: str) -> None:
        """Name the engine serving (``backend``, a ``Backend``, at ``precision``) and the one ``asked`` for."""
        self.engines.labels(asked, backend.name, precision, str(backend.pinned).lower(),
                            str(backend.fallback is not None).lower()).set(1)

    def version(self, name: str) -> None:
        """Name the model version serving (the one before it is no longer listed)."""
        self.versions.clear()
        self.versions.labels(name).set(1)

    def stage(self, name: str):
        """A context manager that times one stage of a picture (``with metrics.stage('decode'):``)."""
        return self.stages.labels(name).time()

    def batch(self, waits: List[float], seconds: float) -> None:
        """Count one network run: how long each of its pictures waited for it, and its ``seconds``."""
        self.batch_size.observe(len(waits))
        for wait in waits:
            self.stages.labels('queue').observe(wait)
        self.stages.labels('network').observe(seconds)

    def exposition(self) -> Tuple[bytes, str]:
        """The Prometheus text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

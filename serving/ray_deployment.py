"""The service as a Ray Serve deployment: the same application (``app.create_app``) in
``replicas`` Ray actors, each with its model, which a Ray cluster places on its machines;
Ray's HTTP proxy spreads the requests over them. Ray is an optional extra
(requirements-ray.txt), imported when ``deployment`` is called.

    from ray import serve
    serve.run(deployment(ServeSettings(ModelSpec('weights/shapes_r18.pdparams')), replicas=2))
"""
from solov2.serving.app import ServeSettings, create_app


def deployment(settings: ServeSettings, replicas: int = 1, cpus_per_replica: float = 1.0, name: str = 'solov2',
               **options):
    """A bound Ray Serve application (``serve.run`` takes it) of ``replicas`` copies of the
    service, each reserving ``cpus_per_replica`` of the cluster's CPUs and ready (taking
    traffic) once its model is loaded and warmed up. ``options``: more of ``serve.deployment``'s
    (``autoscaling_config`` instead of a fixed ``replicas``, ``max_ongoing_requests``, ...)."""
    from ray import serve

    def build():        # a function, which Ray calls in each replica (a partial would be taken for the app)
        return create_app(settings, load_first=True)
    ingress = serve.ingress(build)()
    if 'autoscaling_config' not in options:
        options['num_replicas'] = replicas
    return serve.deployment(ingress, name=name, ray_actor_options={'num_cpus': cpus_per_replica}, **options).bind()

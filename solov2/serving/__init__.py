"""The HTTP service around one shared ``Segmenter`` (``tools/serve.py``, docs/serving.md).

``app.create_app(settings)`` is the ASGI application (FastAPI): ``POST /v1/segment``,
``GET /v1/model``, ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json``.
``batching.Batcher`` runs the pictures of concurrent requests that share a padded size as one
network batch; ``limits`` holds the request limits and their HTTP errors; ``metrics`` the
Prometheus metrics; ``schema`` what the OpenAPI declares; ``wire`` how uvicorn runs it (its
own refusals in the service's JSON shape); ``ray_deployment`` the same application as a Ray
Serve deployment.
Nothing here changes the process: the command (tools/serve.py) owns signals, threads and logs.
"""

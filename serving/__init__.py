"""The HTTP service around one shared ``Segmenter`` (docs/serving.md): ``app.create_app(settings)``
is the ASGI application; ``limits`` holds the request limits,
``metrics``, ``schema`` (the OpenAPI), ``wire`` (uvicorn), ``logs`` (the log lines' format),
``ray_deployment`` (Ray Serve).
Nothing here changes the process: the command owns signals, threads and logs.
"""

"""The HTTP service around one shared ``Segmenter`` (docs/serving.md): ``app.create_app(settings)``
is the ASGI application; ``limits`` holds the request limits,
``metrics``, ``schema`` (the OpenAPI), ``wire`` (uvicorn), ``logs`` (the log lines' format),
``ray_deployment`` (Ray Serve).
Nothing here changes the process: the command owns signals, threads and logs.
"""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')

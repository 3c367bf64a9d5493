"""Only the C extension lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The decision log's line renderer (router/_logline.c). Optional: without a C compiler
        # the install still succeeds and the log renders in Python (the same bytes, slower).
        Extension("domicile.router._logline", ["router/_logline.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)

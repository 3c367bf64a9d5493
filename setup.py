"""Only the C extension lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The router's native helpers (router/_native.c): the decision log's line renderer and
        # `untrack`. Optional: without a C compiler the install still succeeds and both run in
        # Python (the same bytes in the log, slower).
        Extension("domicile.router._native", ["router/_native.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)

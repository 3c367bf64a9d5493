"""Only the Rust extension lives here; everything else is in pyproject.toml."""

from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(
    rust_extensions=[
        # The residency engine (crates/engine behind the binding in crates/engine-py); a release
        # build also for editable installs (setuptools-rust would build those for debugging).
        RustExtension("domicile.router._engine", path="crates/engine-py/Cargo.toml", binding=Binding.PyO3, debug=False),
    ],
)

"""The optional C extension (wscap/wire/_fastpath.c: the capture reader's record loop and fast-path
filter). Everything else is in pyproject.toml. `optional=True`: where no compiler or Python headers
exist the install still succeeds and wscap runs the pure-Python reader (same output)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("wscap.wire._fastpath", ["wscap/wire/_fastpath.c"], optional=True,
                             extra_compile_args=["-O2"])])

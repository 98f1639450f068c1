"""Only here to build the C extension with cffi; metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])

"""Build the Cython extensions of lens._core.

Every ``lens/_core/*.pyx`` is one extension module ``lens._core.<name>``. Extra compiler
flags come from ``LENS_OPT_CFLAGS`` (default ``-O2``); ``LENS_DEBUG=1`` builds with
line tracing and annotation (see the Makefile's ``debug`` target).
"""

import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LENS_DEBUG") == "1"
CFLAGS = os.environ.get("LENS_OPT_CFLAGS", "-O2").split()

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    macros += [("CYTHON_TRACE_NOGIL", "1"), ("LENS_DEBUG", "1")]

extensions = [
    Extension(
        "lens._core." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), "lens/_core/includes"],
        define_macros=macros,
        extra_compile_args=CFLAGS,
    )
    for path in sorted(glob.glob("lens/_core/*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=DEBUG,
        nthreads=int(os.environ.get("LENS_BUILD_JOBS", os.cpu_count() or 1)),
        compiler_directives={
            "boundscheck": DEBUG,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": DEBUG,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)

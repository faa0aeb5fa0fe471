# Developer shortcuts (CI runs .ci/run, which runs the README's test command).
PYTHON ?= python

.PHONY: compile debug test bench clean

compile:            ## build the Cython extensions in place
	$(PYTHON) setup.py build_ext --inplace

debug:              ## build with line tracing, bounds checks and annotated HTML
	LENS_DEBUG=1 $(PYTHON) setup.py build_ext --inplace --force

test: compile       ## run the test suite with coverage
	$(PYTHON) -m pytest -q -p no:cacheprovider --cov=lens --cov-report=term

bench: compile      ## run the benchmarks (minutes; see benchmarks/README.md)
	$(PYTHON) benchmarks/bench_core.py
	$(PYTHON) benchmarks/bench_engine.py --quick

clean:
	rm -rf build dist *.egg-info lens/_core/*.c lens/_core/*.so lens/_core/*.html .coverage*

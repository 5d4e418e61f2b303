# pam-slurmjwt: build, check, test, benchmark, demo.
#
#   make demo    bring up a two-host cluster in containers and show it working
#   make test    install test dependencies (root, Debian 12), run every check
#                and every test; this is what .ci/run calls
#   make check   static checks only: ruff, mypy, shellcheck, systemd-analyze,
#                the C module with -Werror
#   make bench   throughput/latency of the helper vs `scontrol token`, shell
#                start-up, refresh and ssh login cost (needs root)

SHELL := /bin/bash
PYTHON_SYSTEM := /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Versions the checks were written against; newer linters add new rules.
RUFF_VERSION := 0.17.6
MYPY_VERSION := 2.4.1

include mk/pam.mk

.PHONY: all deps venv check lint typecheck shellcheck units test test-unit \
	test-integration bench demo clean

all: pam

deps:
	@if [ "$$(id -u)" = 0 ]; then sh tests/setup-deps.sh; \
	else echo "make deps: not root, skipping Debian packages" >&2; fi
	@$(MAKE) -s venv

venv: $(VENV)/.stamp

$(VENV)/.stamp: Makefile
	$(PYTHON_SYSTEM) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check \
		"ruff==$(RUFF_VERSION)" "mypy==$(MYPY_VERSION)" "pytest>=7" \
		python-pam pamela docker
	touch $@

lint: venv
	$(VENV)/bin/ruff check pam_slurmjwt tests

typecheck: venv
	$(VENV)/bin/mypy pam_slurmjwt

shellcheck:
	shellcheck -s sh profile.d/slurmjwt.sh tests/setup-deps.sh
	shellcheck -s bash profile.d/slurmjwt.sh
	shellcheck -s ksh profile.d/slurmjwt.sh
	@for f in $$(find packaging -name '*.sh' 2>/dev/null); do shellcheck "$$f" || exit 1; done

units:
	@units=$$(find packaging/systemd -name '*.service' -o -name '*.socket' -o -name '*.timer' 2>/dev/null); \
	if [ -n "$$units" ]; then systemd-analyze verify $$units; fi

check: lint typecheck shellcheck units pam

test-unit: venv pam pam-harness
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: venv pam
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

test: deps check pam-test
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

bench: deps pam
	$(PY) -m tests.bench $(BENCH_ARGS)

demo:
	@echo "make demo: the two-host container demo is coming (issue: install, packages, demo)."
	@echo "Until then, 'make test' brings up a real slurmctld, the helper and sshd and proves"
	@echo "the whole chain; see README.md."

clean: pam-clean
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

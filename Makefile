# Two commands for a fresh machine:  `make run`  (the app on http://127.0.0.1:7860, offline, CPU)
#                                    `make test` (the test suite, what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# apt-get needs root; use sudo when we are not root and sudo exists.
SUDO := $(shell [ "$$(id -u)" != 0 ] && command -v sudo)

.PHONY: run test install install-test system-deps-run system-deps-test bench mini-model examples \
        gallery clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt requirements-train.txt requirements-ray.txt $(VENV)/.installed
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Debian packages: poppler-utils reads PDFs (pdf2image); chromium runs the browser tests;
# postgresql is the server the database tests start in a temporary folder (tests/postgres.py);
# haproxy is Ray Serve's HAProxy ingress (serve-ray --ray-ingress haproxy; its test is opt-in, -m slow).
system-deps-run:
	@command -v pdftoppm >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q poppler-utils; }

system-deps-test:
	@command -v pdftoppm >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
	  { command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy; } || \
	  { $(SUDO) apt-get update -q && \
	    $(SUDO) apt-get install -y -q poppler-utils chromium postgresql haproxy; }

run: $(VENV)/.installed system-deps-run
	$(BIN)/python -m pulse_app serve --host 127.0.0.1 --port 7860

test: $(VENV)/.installed-test system-deps-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

mini-model: $(VENV)/.installed-test
	$(BIN)/python -m training.mini_model

# The project's own pictures (assets/generated.toml lists every committed data file and its command).
examples: $(VENV)/.installed
	$(BIN)/python -m pulse_app.examples --seed 0

gallery: $(VENV)/.installed
	$(BIN)/python -m pulse_app.examples --gallery --seed 0

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts

# The two commands of the README: `make serve` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# These machines install torch from local disk at exactly this pair; elsewhere override it,
# e.g. `make serve TORCH_SPEC="torch torchvision"`. pyproject keeps the open range torch>=2.6.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The browser tests drive Debian's Chromium (never a downloaded one); `make test` installs it
# when missing and makes those tests fail rather than skip without it.
CHROMIUM ?= /usr/bin/chromium
# The scale-out tests start Debian's redis-server and nginx; `make test` installs them when
# missing and makes those tests fail rather than skip without them.
REDIS_SERVER ?= /usr/bin/redis-server
NGINX ?= /usr/sbin/nginx
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: serve test install install-dev lint audit lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: $(VENV)/.installed
	$(BIN)/layerscope serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev $(CHROMIUM) $(REDIS_SERVER) $(NGINX)
	CHROMIUM=$(CHROMIUM) REQUIRE_BROWSER=1 REDIS_SERVER=$(REDIS_SERVER) NGINX=$(NGINX) \
		REQUIRE_SCALEOUT=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory audit

$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install Chromium at $(CHROMIUM) for the browser tests" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(REDIS_SERVER):
	@command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install redis-server at $(REDIS_SERVER) for the scale-out tests" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server

$(NGINX):
	@command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install nginx at $(NGINX) for the scale-out tests" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx

# Known vulnerabilities in the locked dependency set (fails on any finding). Without
# access to PyPI's advisory API, packages are reported as skipped instead.
audit: $(VENV)/.installed-dev
	$(BIN)/pip-audit -r requirements.lock --disable-pip --no-deps --progress-spinner off

lock: $(VENV)/.installed-dev
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check api_schemas model_registry service tests bench
	$(BIN)/ruff format --check api_schemas model_registry service tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/feature_maps.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/attribution.py
	$(BIN)/python bench/dataset.py

clean:
	rm -rf $(VENV) .pytest_cache test-output

# Two commands on a fresh machine:  `make run` (the app on the shipped model)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# WeasyPrint needs Pango and fonts to render reports (Noto CJK and colour emoji so that every name prints,
# not boxes); Tesseract finds the text to blank in stored pictures of other layouts (docs/security.md); the
# tests also need pdftoppm, Debian's Chromium and PostgreSQL (.ci/postgres.sh starts a throwaway server
# for them on 127.0.0.1).
RUN_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fonts-dejavu-core fonts-noto-cjk \
	fonts-noto-color-emoji tesseract-ocr
TEST_PACKAGES := $(RUN_PACKAGES) poppler-utils chromium postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run test system-run system-test lint train evaluate compare-seed clean

run: system-run $(VENV)/.installed-run
	$(VENV)/bin/ecg-app serve --host $(HOST) --port $(PORT)

test: system-test $(VENV)/.installed
	$(VENV)/bin/ruff check ecg_app tests benchmarks migrations
	$(VENV)/bin/lint-imports
	bash .ci/postgres.sh $(PY) -m pytest -q -ra

# apt-get only what is missing, so a prepared machine starts at once ("installed" status: a removed package
# whose configuration files remain is still known to `dpkg -s`, but its files are gone).
define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' \
	  || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi
endef

system-run:
	$(call apt_install,$(RUN_PACKAGES))

system-test:
	$(call apt_install,$(TEST_PACKAGES))

# Serving alone (no TensorFlow: the networks run as ONNX graphs), or everything training and the tests need.
$(VENV)/.installed-run: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run
	$(PY) -m pip install -q -e '.[train,test]'
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check ecg_app tests benchmarks migrations

# Reproduce the shipped model from the shared data (three page networks, three detector networks and three
# diagnosis networks: about two hours on 2 cores), then its metrics.
DATA ?= ../shared/data
# The shipped recipe's cross-validation kept in the repo: its out-of-fold figures go into metrics.json.
RECIPE_CV = model/cross-validation/diagnosis-mix
train: $(VENV)/.installed
	$(VENV)/bin/ecg-app model train --data $(DATA)/mendeley-ecg --non-ecg $(DATA)/non-ecg \
	  --other-ecg $(DATA)/other-layout-ecg --epochs 40 --seed 42 --ensemble 3 --out model
	$(VENV)/bin/ecg-app model fit-detector --model model --members 3 --epochs 60 --renders 600 --charts 600 --seed 42
	$(VENV)/bin/ecg-app model fit-diagnosis --model model --members 3 --page-share 0.5 --seed 42
	$(VENV)/bin/ecg-app model fit-mi-flag --model model --cv-run $(RECIPE_CV)
	$(VENV)/bin/ecg-app model export-onnx --model model
	$(VENV)/bin/ecg-app model evaluate --model model --cross-validation $(RECIPE_CV)

evaluate: $(VENV)/.installed
	$(VENV)/bin/ecg-app model evaluate --model model --cross-validation $(RECIPE_CV)

compare-seed: $(VENV)/.installed
	$(PY) benchmarks/compare_seed.py --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

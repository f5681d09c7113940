# The two commands a fresh machine needs (README): `make demo` runs the main job, `make test` the tests.
# Both build the project-local environment first (.venv + colcon interfaces); a second run is quick.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup test demo node clean

setup:
	@bash scripts/setup_env.sh

test: setup
	@$(ENV) python -m pytest

demo: setup
	@$(ENV) python -m pixellm_ros demo --out out/demo

node: setup
	@$(ENV) python -m pixellm_ros node --params-file config/pixellm.yaml

clean:
	rm -rf build install log .pytest_cache

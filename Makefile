# xapi.sxm: one-command set-up, demo, tests, sanity and lint. Everything runs from .venv.
# `make test` runs every layer, keeps going after a failing one, and fails if any failed.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
TEST_LAYERS := unit conformance thirdparty integration molecule faults sanity lint

.PHONY: help setup test $(TEST_LAYERS) test-long test-faults test-ansible-versions ansible-test-units demo demo-evacuate bench ee-context changelog-lint constraints clean distclean

help:
	@echo "make setup        Debian packages, .venv with pinned Python packages (idempotent)"
	@echo "make demo         migrate a VM tree between two simulated pools (no real pool needed)"
	@echo "make demo-evacuate  evacuate three VMs from a simulated pool of two hosts into another"
	@echo "make test         every test layer: $(TEST_LAYERS)"
	@echo "make unit | conformance | thirdparty | integration | molecule | faults | sanity | lint   one layer"
	@echo "make test-long    long runs (a 16-minute migration through the role), not part of make test"
	@echo "make test-faults  the whole fault matrix (every step, kills at seeded moments), not part of make test"
	@echo "make bench        benchmarks against the simulator"
	@echo "make test-ansible-versions  the demo with the oldest and newest ansible-core admitted"
	@echo "make ansible-test-units  ansible-test units on a copy of the collection"
	@echo "make ee-context   the build context of an execution environment, in build/ee"
	@echo "make constraints  re-freeze constraints.txt after changing a pin"
	@echo "make clean        remove build/ and test output (keeps .venv)"

# tools/setup.sh skips pip when its stamp (a digest of the requirement files) is current.
setup:
	@tools/setup.sh

# Each layer is run even when an earlier one failed; the summary says which failed.
test: setup
	@failed=""; \
	for layer in $(TEST_LAYERS); do \
		echo "=== make $$layer"; \
		$(MAKE) --no-print-directory $$layer SETUP_DONE=1 || failed="$$failed $$layer"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== FAILED layers:$$failed"; exit 1; fi; \
	echo "=== all test layers passed: $(TEST_LAYERS)"

# Layers depend on setup unless `make test` already ran it.
ifeq ($(SETUP_DONE),1)
LAYER_DEPS :=
else
LAYER_DEPS := setup
endif

# Two pytest-xdist workers, each with its own pair of simulated pools: the layers mostly wait
# on Ansible and the simulators, and this halves their time on 2 cores. The integration layer,
# whose tests wait on ansible-playbook most, has a third. Each layer names its 10 slowest tests.
WORKERS := -n 2 --durations=10
INTEGRATION_WORKERS := -n 3 --durations=10

unit: $(LAYER_DEPS)
	@tools/pytest_layer.sh unit tests/unit $(WORKERS)

conformance: $(LAYER_DEPS)
	@tools/pytest_layer.sh conformance tests/conformance $(WORKERS)

# Clients nobody here wrote, unmodified, against xapisim (Xen Orchestra's xen-api,
# community.general's XenServer modules); tools/setup.sh installs them.
thirdparty: $(LAYER_DEPS)
	@tools/pytest_layer.sh thirdparty tests/thirdparty $(WORKERS)

integration: $(LAYER_DEPS)
	@tools/pytest_layer.sh integration tests/integration $(INTEGRATION_WORKERS)

# The fault matrix: make test runs its quick cases, test-faults all of them (SXM_FAULT_SEED
# picks the kill moments; the table lands in tests/output/fault-matrix.json), with the other
# kill and interrupt tests: locks taken over, secrets after kills, Ctrl-C, expired sessions,
# re-runs after the source changed and after a destroy (A -> B -> C and back), rollbacks.
faults: $(LAYER_DEPS)
	@tools/pytest_layer.sh faults tests/faults -m quick $(WORKERS)

# The whole matrix on two workers, each with its own pools and Ansible folders
# (tests/faults/ansible_dirs.py): its cases mostly wait for kills, timeouts and re-runs.
test-faults: setup
	@tools/pytest_layer.sh faults tests/faults $(WORKERS)

# Long runs, kept out of `make test` (each takes a quarter of an hour or more).
test-long: setup
	@tools/pytest_layer.sh long tests/long

# A molecule scenario per role (roles/*/molecule): simulated pools, converge, idempotence, verify.
# Each scenario's state is reset first: with the default driver unmanaged, molecule skips a
# `prepare` it remembers from an earlier run, and the pools it started are gone.
molecule: $(LAYER_DEPS)
	@for role in roles/*/; do \
		if [ -d "$$role/molecule" ]; then \
			echo "molecule: $$role"; \
			(cd "$$role" && export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" && \
			 for scenario in molecule/*/; do molecule reset -s "$$(basename "$$scenario")" || exit 1; done && \
			 molecule test --all) || exit 1; \
		fi; \
	done

sanity: $(LAYER_DEPS)
	@tools/sanity.sh

# `ansible-test units` on a copy of the collection (the unit layer runs the same tests with pytest)
ansible-test-units: setup
	@tools/sanity.sh units

lint: $(LAYER_DEPS)
	@tools/lint.sh

demo: setup
	$(VENV)/bin/ansible-playbook playbooks/demo.yml

demo-evacuate: setup
	$(VENV)/bin/ansible-playbook playbooks/demo_evacuate.yml

# The oldest ansible-core meta/runtime.yml admits and the pinned newest, each running both demos.
test-ansible-versions: setup
	@tools/ansible_versions.sh

bench: setup
	@if [ -f bench/run.py ]; then $(PY) bench/run.py; else echo "bench: no benchmarks yet"; fi

# The build context of an execution environment (execution-environment.yml): the collection's
# tarball, then `ansible-builder create` into build/ee; `podman build build/ee` makes the image.
ee-context: $(LAYER_DEPS)
	@rm -rf build/ee build/dist
	@$(VENV)/bin/ansible-galaxy collection build . --output-path build/dist >/dev/null
	@cp build/dist/xapi-sxm-*.tar.gz build/xapi-sxm.tar.gz
	@$(VENV)/bin/ansible-builder create -f execution-environment.yml --context build/ee

changelog-lint: setup
	$(VENV)/bin/antsibull-changelog lint

# Resolves requirements-test.txt afresh (ignoring the old constraints), then freezes the result.
constraints:
	@SXM_IGNORE_CONSTRAINTS=1 tools/setup.sh
	@{ echo "# Full resolved set of requirements-test.txt, for reproducible installs (pip -c)."; \
	   echo "# Regenerate: make constraints"; \
	   $(PY) -m pip freeze --local --disable-pip-version-check; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt
	@echo "constraints.txt updated"

clean:
	rm -rf build tests/output .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)

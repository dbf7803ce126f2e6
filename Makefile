# banger - top-level Makefile (GNU make).
#
#   make            build build/banger and build/bangerd
#   make deps       install every Debian package the build, tests and demo need
#   make test       unit + integration + e2e tests, fuzz replay, validate examples/
#   make asan       the same unit/integration/fuzz-replay tests under ASan+UBSan
#   make fuzz       libFuzzer runs (FUZZ_SECONDS each) under ASan+UBSan
#   make demo       build the guest image, run bangerd, boot examples/hello.yaml, ssh in
#
# Flags are layered (STD WARN OPT SAN CFLAGS) so one can be overridden without
# losing the others. Module-specific targets live in mk/*.mk.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
UNITDIR ?= /lib/systemd/system
DESTDIR ?=
PKG_CONFIG ?= pkg-config
CLANG_FORMAT ?= clang-format
BUILD ?= build

DEPS := yaml-0.1 libssh2 sqlite3 devmapper libcjson libcurl libmnl libcrypto libseccomp libnftables ldns
TEST_DEPS := cmocka

STD := -std=gnu11 -D_GNU_SOURCE
WERROR ?= -Werror
WARN := -Wall -Wextra $(WERROR) -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wvla -Wwrite-strings -Wpointer-arith
OPT ?= -O2 -g
SAN ?=
CFLAGS ?=
LDFLAGS ?=

# pkg-config runs once, and only when something is compiled (not for 'make deps').
DEP_CFLAGS = $(eval DEP_CFLAGS := $$(shell $(PKG_CONFIG) --cflags $(DEPS) $(TEST_DEPS)))$(DEP_CFLAGS)
DEP_LIBS = $(eval DEP_LIBS := $$(shell $(PKG_CONFIG) --libs $(DEPS)))$(DEP_LIBS)
TEST_LIBS = $(eval TEST_LIBS := $$(shell $(PKG_CONFIG) --libs $(TEST_DEPS)))$(TEST_LIBS)

ALL_CFLAGS = $(STD) $(WARN) $(OPT) $(SAN) -I. $(DEP_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(SAN) $(LDFLAGS)

LIB_SRCS := $(filter-out reconciler/main.c, \
	$(wildcard common/*.c spec/*.c reconciler/*.c reconciler/*/*.c))
CLI_SRCS := $(filter-out cli/main.c, $(wildcard cli/*.c))
TESTLIB_SRCS := $(wildcard tests/lib/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
INTEG_SRCS := $(wildcard tests/integration/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJS := $(call obj,$(LIB_SRCS))
CLI_OBJS := $(call obj,$(CLI_SRCS))
TESTLIB_OBJS := $(call obj,$(TESTLIB_SRCS))
LIB := $(BUILD)/libbanger.a
CLI_LIB := $(BUILD)/libbanger-cli.a
TESTLIB := $(BUILD)/libbanger-test.a

BANGER := $(BUILD)/banger
BANGERD := $(BUILD)/bangerd
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
INTEG_BINS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRCS))
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/%,$(FUZZ_SRCS))

# Debian packages: build, tests, demo. Fragments in mk/ may add to these.
DEB_BUILD := build-essential pkg-config libyaml-dev libssh2-1-dev libsqlite3-dev \
	libdevmapper-dev libcjson-dev libcurl4-openssl-dev libmnl-dev libssl-dev libseccomp-dev libnftables-dev libldns-dev
DEB_TEST := libcmocka-dev bats bats-assert bats-support clang clang-format \
	libclang-rt-14-dev python3 python3-yaml iproute2 openssh-client openssh-server \
	e2fsprogs util-linux procps kmod jq sqlite3 bc diffutils ldnsutils dropbear-bin
DEB_RUN := qemu-system-x86 qemu-utils openssh-client e2fsprogs genisoimage

# V=1 shows full command lines.
V ?= 0
ifeq ($(V),0)
Q := @
else
Q :=
endif

# Keep intermediate objects of chained rules.
.SECONDARY:

.PHONY: all deps test unit integration e2e fuzz-replay validate-examples asan fuzz \
	install clean format check-format demo
.DEFAULT_GOAL := all

all: $(BANGER) $(BANGERD)

-include mk/*.mk

# ---- build -----------------------------------------------------------------

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(CLI_LIB): $(CLI_OBJS)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(TESTLIB): $(TESTLIB_OBJS)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BANGER): $(BUILD)/obj/cli/main.o $(CLI_LIB) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BANGERD): $(BUILD)/obj/reconciler/main.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# A test may #include the module's .c to reach static functions; the archive
# then supplies only what the test does not define itself.
$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(TESTLIB) $(CLI_LIB) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TESTLIB) $(CLI_LIB) $(LIB) $(DEP_LIBS) $(TEST_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(TESTLIB) $(CLI_LIB) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TESTLIB) $(CLI_LIB) $(LIB) $(DEP_LIBS) $(TEST_LIBS)

# Fuzz targets built with a replay main() for 'make test' (systemd fuzz-main.c).
$(BUILD)/tests/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/fuzz-main.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- tests -----------------------------------------------------------------

RUN_TESTS = tests/run-tests.sh

# The README's 'make test': installs what it needs, then runs every stage in order.
test: deps
	@start=$$(date +%s); \
	for stage in all unit integration fuzz-replay validate-examples e2e; do \
		$(MAKE) --no-print-directory $$stage || exit 1; \
	done; \
	echo "make test: all stages passed in $$(( $$(date +%s) - start ))s"

unit: $(UNIT_BINS) $(BUILD)/obj/reconciler/plan.o
	@tests/unit/check-plan-purity.sh $(BUILD)/obj/reconciler/plan.o
	@BUILD=$(BUILD) $(RUN_TESTS) unit $(UNIT_BINS)

# Guest-image boot tests run no banger binary (a shell script, QEMU and the image): the
# sanitizer build leaves them out (INTEG_NO_IMAGES=1), they already ran in 'make test'.
INTEG_IMAGE_BATS := tests/integration/image_debian.bats tests/integration/image_seed.bats
INTEG_BATS = $(if $(INTEG_NO_IMAGES),$(filter-out $(INTEG_IMAGE_BATS),$(wildcard \
	tests/integration/*.bats)),$(wildcard tests/integration/*.bats))
integration: all $(INTEG_BINS)
	@BUILD=$(BUILD) $(RUN_TESTS) integration $(INTEG_BINS) $(INTEG_BATS)

fuzz-replay: $(FUZZ_REPLAY_BINS)
	@BUILD=$(BUILD) $(RUN_TESTS) fuzz-replay $(FUZZ_REPLAY_BINS)

validate-examples: $(BANGER)
	$(BANGER) validate -f examples/

e2e: all $(E2E_PREREQS)
	@BUILD=$(BUILD) $(RUN_TESTS) e2e $(wildcard tests/e2e/*.bats)

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g" SAN="$(ASAN_FLAGS)" INTEG_NO_IMAGES=1 \
		all unit integration fuzz-replay

FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
fuzz:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g" \
		SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
		build-fuzz/libbanger.a build-fuzz/obj/tests/fuzz/fuzz_$(firstword $(FUZZ_TARGETS)).o
	@set -e; for t in $(FUZZ_TARGETS); do \
		$(MAKE) -s BUILD=build-fuzz CC=$(FUZZ_CC) OPT="-O1 -g" \
		SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
		build-fuzz/obj/tests/fuzz/fuzz_$$t.o; \
		$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_$$t \
			build-fuzz/obj/tests/fuzz/fuzz_$$t.o build-fuzz/libbanger.a \
			$$($(PKG_CONFIG) --libs $(DEPS)); \
		mkdir -p build-fuzz/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=build-fuzz/crash-$$t- \
			build-fuzz/corpus/$$t tests/fuzz/corpus/$$t; \
	done

# ---- demo ------------------------------------------------------------------

demo: deps
	@$(MAKE) --no-print-directory all install-image
	examples/demo.sh

# ---- install, format, clean -----------------------------------------------

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BANGER) $(DESTDIR)$(BINDIR)/banger
	install -m 0755 $(BANGERD) $(DESTDIR)$(SBINDIR)/bangerd
	$(if $(wildcard dist/bangerd.service),install -m 0644 dist/bangerd.service $(DESTDIR)$(UNITDIR)/bangerd.service)

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)

check-format:
	$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SRCS)

clean:
	rm -rf $(BUILD) build-asan build-fuzz

# ---- deps ------------------------------------------------------------------

DEB_ALL = $(sort $(DEB_BUILD) $(DEB_TEST) $(DEB_RUN) $(DEB_EXTRA))
deps:
	@missing=""; for p in $(DEB_ALL); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(DEB_ALL)) packages present"; \
	else echo "deps: installing$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "deps: run as root (or with sudo)" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

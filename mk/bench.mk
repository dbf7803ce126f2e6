# mk/bench.mk - benchmarks (bench/): each bench/bench_<name>.c is one program,
# linked like the tests (tests/lib, the CLI and core archives, every pkg-config
# lib), that runs its variants side by side in one run and prints a table.
#
#   make bench                       build and run every benchmark (as root)
#   make bench BENCH_ARGS="-r 9"     pass options to the benchmarks
#
# bench_rootdisk makes XFS filesystems (mkfs.xfs from xfsprogs) on loop devices.
DEB_EXTRA += xfsprogs util-linux

BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
BENCH_ARGS ?=

# Helpers of the engine benchmarks (bench_p1, bench_p2): the fake Firecracker
# (no library: one small process per VM) and the bare baseline program.
FAKEFC := $(BUILD)/bench/fakefc
BENCH_BASELINE := $(BUILD)/bench/baseline
BENCH_TOOLS := $(FAKEFC) $(BENCH_BASELINE)

.PHONY: bench bench-build

bench-build: $(BENCH_BINS) $(BENCH_TOOLS)

bench: $(BENCH_BINS) $(BENCH_TOOLS)
	@set -e; for b in $(BENCH_BINS); do echo "== $$b $(BENCH_ARGS)"; $$b $(BENCH_ARGS); done

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(TESTLIB) $(CLI_LIB) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TESTLIB) $(CLI_LIB) $(LIB) $(DEP_LIBS) $(TEST_LIBS)

# bench_boot.sh boots real guests (the reference and the Debian image) through
# bangerd, alternating, and prints apply->Running and apply->ssh medians.
.PHONY: bench-boot
bench-boot: all image image-debian
	bench/bench_boot.sh $(BENCH_ARGS)

$(FAKEFC): $(BUILD)/obj/bench/fakefc.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $<

$(BENCH_BASELINE): $(BUILD)/obj/bench/baseline.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(DEP_LIBS)

# The engine benchmarks share bench/engine.c (their environment and teardown).
ENGINE_BENCHES := $(BUILD)/bench/bench_p1 $(BUILD)/bench/bench_p2
$(ENGINE_BENCHES): $(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/obj/bench/engine.o $(LIB) \
		$(BENCH_TOOLS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/obj/bench/engine.o $(LIB) $(DEP_LIBS)

# P1 and P2 of issue 12 against bangerd with the fake Firecracker (as root):
#   make bench-engine                                  defaults (P1 15 rounds, P2 200 VMs)
#   make bench-engine P1_ARGS="-r 31" P2_ARGS="-n 500"
P1_ARGS ?=
P2_ARGS ?=
.PHONY: bench-engine
bench-engine: all $(ENGINE_BENCHES)
	$(BUILD)/bench/bench_p1 $(P1_ARGS)
	$(BUILD)/bench/bench_p2 $(P2_ARGS)

# P3 and P4 (issue 12): bench_p3.sh (idle resync at N Running fake VMs: the fake
# Firecracker bench/fakefc.c, and sshfix, OpenSSH's 'sshd -i' per guest address)
# and bench_p4.sh (a QEMU guest: apply -> ssh vs the same argv by hand).
#   make bench-p3 P3_ARGS="-n 100,1000"     make bench-p4 P4_ARGS="-r 5"
DEB_EXTRA += openssh-server
P3_ARGS ?=
P4_ARGS ?=
.PHONY: bench-p3 bench-p4
$(BUILD)/bench/p3-fakefc: $(BUILD)/obj/bench/fakefc.o
$(BUILD)/bench/sshfix: $(BUILD)/obj/bench/sshfix.o
$(BUILD)/bench/p3-fakefc $(BUILD)/bench/sshfix:
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^
bench-p3: all $(BUILD)/bench/p3-fakefc $(BUILD)/bench/sshfix
	BUILD=$(BUILD) bench/bench_p3.sh $(P3_ARGS)
bench-p4: all
	BUILD=$(BUILD) bench/bench_p4.sh $(P4_ARGS)

# mk/firecracker.mk - the Firecracker driver's test needs.
#
# tests/firecracker/firecracker-standin (Python 3 and PyYAML from Debian, run
# as /usr/bin/python3) stands in for the firecracker binary in the tests; its
# self-test (tests/firecracker/test_standin.bats) uses curl and bats.
DEB_EXTRA += python3 python3-yaml curl bats

.PHONY: test-fc-standin

# The stand-in's self-test runs with the unit tests (no root, no network).
unit: test-fc-standin

test-fc-standin:
	@BUILD=$(BUILD) $(RUN_TESTS) unit tests/firecracker/test_standin.bats

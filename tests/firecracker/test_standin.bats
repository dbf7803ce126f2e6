#!/usr/bin/env bats
# test_standin.bats - the Firecracker stand-in has teeth: it rejects what
# Firecracker's API definition (firecracker-swagger.yaml) and Firecracker itself
# reject, accepts a conforming boot, and its fault injection works.
# Needs curl, python3, python3-yaml. Run by `make unit`.

STANDIN="$BATS_TEST_DIRNAME/firecracker-standin"

setup() {
	D=$(mktemp -d "${TMPDIR:-/tmp}/bg-standin.XXXXXX")
	SOCK=$D/api.sock
	export FC_STANDIN_LOG=$D/log.jsonl
	: >"$D/vmlinux"
	: >"$D/rootfs.ext4"
	: >"$D/fc.log"
	: >"$D/fc.metrics"
	PID=
}

teardown() {
	if [ -n "$PID" ]; then
		kill -KILL "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$D"
}

# start_standin [VAR=value...]: run the stand-in in the background, wait for its socket.
start_standin() {
	env "$@" "$STANDIN" --api-sock "$SOCK" --id bats-1 >"$D/console" 2>&1 &
	PID=$!
	wait_socket
}

wait_socket() {
	local i
	for i in $(seq 400); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$PID" 2>/dev/null || { cat "$D/console"; return 1; }
		sleep 0.05
	done
	echo "no socket after 20 s"
	return 1
}

# api METHOD PATH [BODY]: sets $code and $resp.
api() {
	local args=(-sS --max-time 10 --unix-socket "$SOCK" -o "$D/resp" -w '%{http_code}'
		-X "$1" "http://localhost$2")
	if [ $# -ge 3 ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$3")
	fi
	code=$(curl "${args[@]}")
	resp=$(cat "$D/resp")
}

# ok METHOD PATH [BODY]: the request must succeed.
ok() {
	api "$@"
	case $code in
	2??) ;;
	*) echo "$1 $2: want 2xx, got $code: $resp"; return 1 ;;
	esac
}

# rejects METHOD PATH BODY|- NEEDLE: 400 with a JSON fault_message containing NEEDLE.
rejects() {
	if [ "$3" = - ]; then api "$1" "$2"; else api "$1" "$2" "$3"; fi
	if [ "$code" != 400 ]; then
		echo "$1 $2 $3: want 400, got $code: $resp"
		return 1
	fi
	if [[ "$resp" != '{"fault_message": '* ]]; then
		echo "$1 $2: not a fault_message body: $resp"
		return 1
	fi
	if [[ "$resp" != *"$4"* ]]; then
		echo "$1 $2 $3: fault_message lacks '$4': $resp"
		return 1
	fi
	# ... and the stand-in logged it as a rejection.
	tail -n1 "$FC_STANDIN_LOG" | grep -q '"verdict": "rejected"'
}

boot_sequence() {
	ok PUT /logger "{\"log_path\": \"$D/fc.log\", \"level\": \"Info\"}"
	ok PUT /metrics "{\"metrics_path\": \"$D/fc.metrics\"}"
	ok PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 256}'
	ok PUT /boot-source "{\"kernel_image_path\": \"$D/vmlinux\", \"boot_args\": \"console=ttyS0 reboot=k\"}"
	ok PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	ok PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "bgtest0", "guest_mac": "02:fc:00:00:00:02"}'
	ok PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$D/v.sock\"}"
	ok PUT /actions '{"action_type": "InstanceStart"}'
}

@test "a conforming boot sequence is accepted and the VM runs" {
	start_standin
	ok GET /
	[[ "$resp" == *'"state": "Not started"'* ]]
	boot_sequence
	ok GET /
	[[ "$resp" == *'"state": "Running"'* ]]
	[[ "$resp" == *'"id": "bats-1"'* ]]
	grep -q 'banger-standin: guest running' "$D/console"
	[ -S "$D/v.sock" ]
	! grep -v '"verdict": "ok"' "$FC_STANDIN_LOG"
	[ "$(wc -l <"$FC_STANDIN_LOG")" -eq 10 ]
}

@test "unknown paths are rejected as Firecracker does" {
	start_standin
	rejects GET /nope - "Invalid request method and/or path: GET nope."
	rejects PUT /drive/rootfs '{"drive_id": "rootfs", "is_root_device": true}' "Invalid request method and/or path"
	rejects PUT /drives '{"drive_id": "rootfs", "is_root_device": true}' "Invalid request method and/or path"
	rejects PUT /machine-config/extra '{"vcpu_count": 1, "mem_size_mib": 128}' "Invalid request method and/or path"
}

@test "methods the definition does not list are rejected" {
	start_standin
	rejects PATCH /actions '{"action_type": "InstanceStart"}' "Invalid request method and/or path: PATCH actions."
	rejects GET /actions - "Invalid request method and/or path: GET actions."
	rejects DELETE /machine-config - "Invalid request method and/or path: DELETE machine-config."
	rejects POST /boot-source "{\"kernel_image_path\": \"$D/vmlinux\"}" "Invalid request method and/or path"
}

@test "a missing required field is rejected" {
	start_standin
	rejects PUT /machine-config '{"vcpu_count": 1}' "missing field \`mem_size_mib\`"
	rejects PUT /boot-source '{"boot_args": "console=ttyS0"}' "missing field \`kernel_image_path\`"
	rejects PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_read_only\": false}" "missing field \`is_root_device\`"
	rejects PUT /network-interfaces/eth0 '{"iface_id": "eth0"}' "missing field \`host_dev_name\`"
	rejects PUT /vsock '{"guest_cid": 3}' "missing field \`uds_path\`"
	rejects PUT /actions '{}' "missing field \`action_type\`"
	# virtio-block needs path_on_host and is_read_only (the definition's own words)
	rejects PUT /drives/rootfs '{"drive_id": "rootfs", "is_root_device": true}' "is required for a virtio-block drive"
}

@test "a field the definition does not list is rejected" {
	start_standin
	rejects PUT /boot-source "{\"kernel_path\": \"$D/vmlinux\"}" "unknown field \`kernel_path\`"
	rejects PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128, "memory": 1}' "unknown field \`memory\`"
	rejects PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false, \"read_only\": true}" "unknown field \`read_only\`"
}

@test "wrong JSON types are rejected (integer, number, boolean, string)" {
	start_standin
	rejects PUT /machine-config '{"vcpu_count": "2", "mem_size_mib": 128}' "invalid type for \`vcpu_count\`: string"
	rejects PUT /machine-config '{"vcpu_count": 2.0, "mem_size_mib": 128}' "invalid type for \`vcpu_count\`: number 2.0, expected integer"
	rejects PUT /machine-config '{"vcpu_count": true, "mem_size_mib": 128}' "invalid type for \`vcpu_count\`: boolean"
	rejects PUT /boot-source "{\"kernel_image_path\": \"$D/vmlinux\", \"boot_args\": 5}" "invalid type for \`boot_args\`: integer 5, expected string"
	rejects PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": \"true\", \"is_read_only\": false}" "invalid type for \`is_root_device\`: string"
	rejects PUT /vsock "{\"guest_cid\": null, \"uds_path\": \"$D/v.sock\"}" "invalid type for \`guest_cid\`: null"
	rejects PUT /actions '["InstanceStart"]' "invalid type for the body: array"
}

@test "values outside an enum are rejected" {
	start_standin
	rejects PUT /actions '{"action_type": "Reboot"}' 'unknown variant `Reboot` for `action_type`'
	rejects PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false, \"cache_type\": \"None\"}" 'unknown variant `None` for `cache_type`'
	rejects PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T3"}' 'unknown variant `T3` for `cpu_template`'
	# 'Off' is a Logger level (YAML 1.1 would have read it as false); levels are case-insensitive.
	ok PUT /logger "{\"log_path\": \"$D/fc.log\", \"level\": \"Off\"}"
	ok PUT /logger "{\"log_path\": \"$D/fc.log\", \"level\": \"debug\"}"
	rejects PUT /logger "{\"log_path\": \"$D/fc.log\", \"level\": \"Verbose\"}" 'unknown variant `Verbose` for `level`'
}

@test "minimum and maximum are enforced, nested schemas too" {
	start_standin
	rejects PUT /machine-config '{"vcpu_count": 0, "mem_size_mib": 128}' "\`vcpu_count\` = 0 is below the minimum 1"
	rejects PUT /machine-config '{"vcpu_count": 33, "mem_size_mib": 128}' "\`vcpu_count\` = 33 is above the maximum 32"
	rejects PUT /vsock "{\"guest_cid\": 2, \"uds_path\": \"$D/v.sock\"}" "\`guest_cid\` = 2 is below the minimum 3"
	rejects PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "mtu": 67}' "\`mtu\` = 67 is below the minimum 68"
	rejects PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 100}}}' "missing field \`refill_time\` in \`rx_rate_limiter.bandwidth\`"
	rejects PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"ops": {"size": -1, "refill_time": 100}}}' "\`rx_rate_limiter.ops.size\` = -1 is below the minimum 0"
	ok PUT /network-interfaces/eth0 '{"iface_id": "eth0", "host_dev_name": "tap0", "mtu": 1500, "rx_rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}'
}

@test "the id in the path must match the id in the body" {
	start_standin
	rejects PUT /drives/rootfs "{\"drive_id\": \"root\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}" "The id from the path does not match the id from the body!"
	rejects PUT /network-interfaces/eth0 '{"iface_id": "eth1", "host_dev_name": "tap0"}' "The id from the path does not match the id from the body!"
	rejects PUT /drives/root-fs "{\"drive_id\": \"root-fs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}" "API Resource IDs can only contain alphanumeric characters and underscores."
}

@test "bodies that are not JSON, empty PUTs and GETs with a body are rejected" {
	start_standin
	rejects PUT /machine-config '{"vcpu_count": 1,' "An error occurred when deserializing the json body of a request"
	rejects PUT /machine-config - "Empty PUT request."
	rejects GET / '{"x": 1}' "GET request cannot have a body."
}

@test "InstanceStart needs a boot source; machine-config has defaults" {
	start_standin
	rejects PUT /actions '{"action_type": "InstanceStart"}' "Cannot start microvm without kernel configuration."
	ok GET /machine-config
	[[ "$resp" == *'"vcpu_count": 1'* ]]
	[[ "$resp" == *'"mem_size_mib": 128'* ]]
	ok PUT /boot-source "{\"kernel_image_path\": \"$D/vmlinux\"}"
	ok PUT /actions '{"action_type": "InstanceStart"}'
}

@test "configuration after InstanceStart is rejected" {
	start_standin
	boot_sequence
	rejects PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}' "The requested operation is not supported after starting the microVM."
	rejects PUT /boot-source "{\"kernel_image_path\": \"$D/vmlinux\"}" "not supported after starting the microVM"
	rejects PUT /drives/work "{\"drive_id\": \"work\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": false, \"is_read_only\": false}" "not supported after starting the microVM"
	rejects PUT /logger "{\"log_path\": \"$D/fc.log\"}" "not supported after starting the microVM"
	rejects PUT /actions '{"action_type": "InstanceStart"}' "not supported after starting the microVM"
	# post-boot operations are fine now
	ok PATCH /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\"}"
	ok PUT /actions '{"action_type": "FlushMetrics"}'
}

@test "post-boot operations are rejected before InstanceStart" {
	start_standin
	rejects PUT /actions '{"action_type": "SendCtrlAltDel"}' "The requested operation is not supported before starting the microVM."
	rejects PATCH /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\"}" "not supported before starting the microVM"
	rejects PATCH /vm '{"state": "Paused"}' "not supported before starting the microVM"
}

@test "files the VMM opens must exist; metrics initialise once; root drive is unique" {
	start_standin
	rejects PUT /boot-source "{\"kernel_image_path\": \"$D/missing\"}" "Boot source error: The kernel file cannot be opened: No such file or directory"
	rejects PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/missing\", \"is_root_device\": true, \"is_read_only\": false}" "Drive config error: Unable to create the virtio block device"
	rejects PUT /logger "{\"log_path\": \"$D/missing.log\"}" "Logger error: Failed to open target file: No such file or directory"
	ok PUT /metrics "{\"metrics_path\": \"$D/fc.metrics\"}"
	rejects PUT /metrics "{\"metrics_path\": \"$D/fc.metrics\"}" "Reinitialization of metrics not allowed"
	ok PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}"
	rejects PUT /drives/other "{\"drive_id\": \"other\", \"path_on_host\": \"$D/rootfs.ext4\", \"is_root_device\": true, \"is_read_only\": false}" "A root block device already exists!"
	ok PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$D/v.sock\"}"
	: >"$D/taken.sock"
	rejects PUT /vsock "{\"guest_cid\": 3, \"uds_path\": \"$D/taken.sock\"}" "Error binding to the host-side Unix socket"
}

@test "SendCtrlAltDel after boot ends the VMM with status 0; SIGTERM ends it too" {
	start_standin
	boot_sequence
	ok PUT /actions '{"action_type": "SendCtrlAltDel"}'
	st=0
	wait "$PID" || st=$?
	PID=
	[ "$st" -eq 0 ]
	grep -q 'ctrl-alt-del: guest rebooting' "$D/console"
	rm -f "$SOCK"
	start_standin
	kill -TERM "$PID"
	st=0
	wait "$PID" || st=$?
	PID=
	[ "$st" -eq 143 ]
}

@test "it refuses to start over an existing socket, as Firecracker does" {
	: >"$SOCK"
	run "$STANDIN" --api-sock "$SOCK"
	[ "$status" -eq 1 ]
	[[ "$output" == *"Failed to open the API socket at: $SOCK"* ]]
}

@test "fault injection: FC_STANDIN_FAIL and FC_STANDIN_DIE_AFTER" {
	start_standin FC_STANDIN_FAIL="PUT /machine-config;PUT /vsock"
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128}'
	[ "$code" = 400 ]
	[[ "$resp" == *"standin: injected failure for PUT /machine-config"* ]]
	tail -n1 "$FC_STANDIN_LOG" | grep -q '"verdict": "injected"'
	ok PUT /boot-source "{\"kernel_image_path\": \"$D/vmlinux\"}"
	kill -KILL "$PID"
	wait "$PID" || true
	rm -f "$SOCK"

	start_standin FC_STANDIN_DIE_AFTER=2
	ok GET /
	ok GET /version
	st=0
	wait "$PID" || st=$?
	PID=
	[ "$st" -eq 1 ]
	run curl -sS --max-time 5 --unix-socket "$SOCK" http://localhost/
	[ "$status" -ne 0 ]
}

@test "fault injection: FC_STANDIN_HANG and FC_STANDIN_NO_SOCKET" {
	start_standin FC_STANDIN_HANG="PUT /logger"
	run curl -sS --max-time 1 --unix-socket "$SOCK" -X PUT -d "{\"log_path\": \"$D/fc.log\"}" http://localhost/logger
	[ "$status" -eq 28 ] # curl: operation timed out
	ok GET /             # other requests are still served
	tail -n1 "$FC_STANDIN_LOG" | grep -q '"path": "/"'
	grep -q '"verdict": "hung"' "$FC_STANDIN_LOG"
	kill -KILL "$PID"
	wait "$PID" || true
	rm -f "$SOCK"

	FC_STANDIN_NO_SOCKET=1 "$STANDIN" --api-sock "$SOCK" &
	PID=$!
	# It stays up without ever creating the socket.
	for _ in $(seq 20); do
		kill -0 "$PID"
		[ ! -e "$SOCK" ]
		sleep 0.05
	done
}

#!/bin/bash
# run-tests.sh STAGE TEST... - run test programs (cmocka binaries, bats files),
# print one line per test program and a summary; exit 1 if any failed.
#
# A program exiting 77 is a skip. cmocka tests that skip print a line
# "SKIP: <reason>" before calling skip(); bats prints "# skip (reason)". Skips
# are listed with their reasons and never counted as passes.
set -u
stage=$1
shift
pass=0 fail=0 skip=0
failed=() skipped=()
logdir=${BUILD:-build}/test-logs/$stage
mkdir -p "$logdir"
for t in "$@"; do
	name=$(basename "$t")
	log=$logdir/$name.log
	start=$(date +%s.%N)
	case "$t" in
	*.bats) bats --tap "$t" >"$log" 2>&1 ;;
	*) "$t" >"$log" 2>&1 ;;
	esac
	rc=$?
	secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
	n_skip=$(grep -cE '^(SKIP: |ok .* # skip)' "$log")
	if [ $rc -eq 77 ]; then
		skip=$((skip + 1))
		skipped+=("$name: $(grep -m1 -E '^SKIP: ' "$log" | sed 's/^SKIP: //')")
		printf '%-12s SKIP  %-40s %6ss\n' "$stage" "$name" "$secs"
	elif [ $rc -ne 0 ]; then
		fail=$((fail + 1))
		failed+=("$name")
		printf '%-12s FAIL  %-40s %6ss  (log: %s)\n' "$stage" "$name" "$secs" "$log"
		tail -n 40 "$log" | sed 's/^/    | /'
	else
		pass=$((pass + 1))
		printf '%-12s ok    %-40s %6ss%s\n' "$stage" "$name" "$secs" \
			"$([ "$n_skip" -gt 0 ] && echo "  ($n_skip skipped inside)")"
	fi
	while IFS= read -r line; do
		skipped+=("$name: $line")
	done < <(grep -E '^SKIP: |^ok .* # skip' "$log" | sed -e 's/^SKIP: //' -e 's/^ok [0-9]* //')
done
echo "== $stage: $pass passed, $fail failed, $skip skipped programs"
if [ ${#skipped[@]} -gt 0 ]; then
	echo "== $stage: skipped (these are not passes):"
	printf '   - %s\n' "${skipped[@]}" | sort -u
fi
[ $fail -eq 0 ]

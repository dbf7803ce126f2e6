#!/bin/bash
# check-plan-purity.sh PLAN_OBJECT - prove plan.c does no I/O: every symbol the
# object needs from elsewhere must be on this allowlist of memory/string
# functions and pure spec helpers. No sqlite, no file calls, no syscalls.
set -eu
obj=$1
allowed='^(strcmp|strncmp|strlen|memset|memcpy|qsort|bsearch|free|xcalloc|xmalloc|spec_compare|__stack_chk_fail|__asan_.*|__ubsan_.*|__sanitizer_.*)$'
undefined=$(nm -u "$obj" | awk '{print $NF}')
bad=$(printf '%s\n' "$undefined" | grep -Ev "$allowed" || true)
if [ -n "$bad" ]; then
	echo "plan.o uses symbols outside the pure allowlist:" >&2
	printf '  %s\n' $bad >&2
	exit 1
fi
echo "plan.o is pure: needs only $(printf '%s ' $undefined)"

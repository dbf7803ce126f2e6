# lib.sh - shell functions shared by the image scripts (sourced, not run).

# mod_closure MODS NAME... - print, in load order (dependencies first, each
# once), the paths relative to MODS (a lib/modules/<release> directory with
# modules.dep) of the named modules and everything they depend on. Names use
# '_' ("dm_mod" finds kernel/drivers/md/dm-mod.ko). Fails on an unknown name.
mod_closure() {
	_mods=$1
	shift
	_order=""
	for _m in "$@"; do
		_p=$(awk -F: -v n="$_m" '{
			f = $1; sub(/.*\//, "", f); sub(/\.ko(\.(xz|zst|gz))?$/, "", f); gsub(/-/, "_", f)
			if (f == n) { print $1; exit }
		}' "$_mods/modules.dep")
		if [ -z "$_p" ]; then
			echo "module $_m not found in $_mods" >&2
			return 1
		fi
		_mod_add "$_mods" "$_p"
	done
	for _p in $_order; do
		echo "$_p"
	done
}

_mod_add() {
	case " $_order " in *" $2 "*) return 0 ;; esac
	# Recursion: 'local' is not POSIX but dash and busybox sh have it.
	# shellcheck disable=SC3043
	local _d
	for _d in $(awk -F: -v p="$2" '$1 == p { print $2; exit }' "$1/modules.dep"); do
		_mod_add "$1" "$_d"
	done
	_order="$_order $2"
}

# mod_is_builtin MODS NAME - true when NAME is built into the kernel.
mod_is_builtin() {
	awk -v n="$2" '{ f = $1; sub(/.*\//, "", f); sub(/\.ko$/, "", f); gsub(/-/, "_", f)
		if (f == n) found = 1 } END { exit !found }' "$1/modules.builtin"
}

# mod_copy SRC DST - copy a module, decompressing .ko.xz/.ko.zst/.ko.gz into
# DST (which names the plain .ko), so the guest's insmod needs no decompressor.
mod_copy() {
	case $1 in
	*.ko.xz) xz -dc "$1" >"$2" ;;
	*.ko.zst) zstd -q -dc "$1" >"$2" ;;
	*.ko.gz) gzip -dc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

# mod_plain PATH - PATH without a compression suffix.
mod_plain() {
	case $1 in
	*.ko.xz | *.ko.gz) echo "${1%.*}" ;;
	*.ko.zst) echo "${1%.zst}" ;;
	*) echo "$1" ;;
	esac
}

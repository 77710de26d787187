#!/bin/sh
# Records the files `xrun host` reads into DIR, so the host can be profiled elsewhere with
# `xrun host --from DIR` (and used as a test fixture). Reads only; writes only under DIR.
# Listings (/proc/self/ns, /sys/module, qemu binaries) become empty placeholder files.
#
#   tests/data/hosts/record.sh DIR
set -eu
out=${1:?usage: record.sh DIR}
mkdir -p "$out"
rel=$(uname -r)

copy() { # copy a host file if readable
	[ -r "$1" ] || return 0
	mkdir -p "$out$(dirname "$1")"
	cat "$1" >"$out$1" 2>/dev/null || rm -f "$out$1"
}
touch_at() { # an empty placeholder (mode $2) at a host path
	mkdir -p "$out$(dirname "$1")"
	: >"$out$1"
	chmod "${2:-644}" "$out$1"
}

copy /proc/cpuinfo
copy /sys/devices/system/cpu/online
copy /proc/filesystems
copy /proc/cgroups
copy /proc/self/cgroup
copy /proc/modules
copy /etc/os-release
copy /proc/sys/kernel/seccomp/actions_avail
copy /proc/sys/kernel/unprivileged_userns_clone
copy /proc/sys/kernel/apparmor_restrict_unprivileged_userns
copy /sys/module/apparmor/parameters/enabled
copy "/lib/modules/$rel/modules.builtin"
copy "/lib/modules/$rel/modules.dep"
for f in /proc/config.gz "/boot/config-$rel" /boot/config; do
	if [ -r "$f" ]; then copy "$f"; break; fi
done
for f in /proc/sys/user/max_*_namespaces; do copy "$f"; done

# Only the status lines the profile uses.
mkdir -p "$out/proc/self"
grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status >"$out/proc/self/status" || true
# Only the mounts the profile uses (cgroups, binfmt_misc, selinuxfs).
awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
     t ~ /^(cgroup|cgroup2|binfmt_misc|selinuxfs)$/' /proc/self/mountinfo >"$out/proc/self/mountinfo"
awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } } t == "cgroup2" { print $5 }' \
	/proc/self/mountinfo | while read -r mp; do copy "$mp/cgroup.controllers"; done
awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } } t == "binfmt_misc" { print $5 }' \
	/proc/self/mountinfo | while read -r mp; do
	for f in "$mp"/*; do copy "$f"; done
done

for n in /proc/self/ns/*; do touch_at "/proc/self/ns/$(basename "$n")"; done
for m in /sys/module/*; do touch_at "/sys/module/$(basename "$m")/uevent"; done
[ -e /dev/kvm ] && touch_at /dev/kvm

# qemu binaries: in PATH and the extra directories xrun searches.
path_json=""
oldifs=$IFS
IFS=:
for d in $PATH; do
	case $d in /*) path_json="$path_json${path_json:+, }\"$d\"" ;; esac
done
IFS=$oldifs
for d in $(echo "$PATH" | tr ':' ' ') /usr/bin /usr/libexec/qemu-binfmt; do
	for f in "$d"/qemu-* "$d"/*-binfmt-P; do
		[ -f "$f" ] && [ -x "$f" ] && touch_at "$f" 755
	done
done

# arm64: does the kernel accept personality(PER_LINUX32)? Only with AArch32 EL0 and
# CONFIG_COMPAT (xrun's probe asks the same question).
aarch32=null
copy /sys/devices/system/cpu/aarch32_el0
if [ "$(uname -m)" = aarch64 ]; then
	if setarch linux32 true 2>/dev/null; then aarch32=true; else aarch32=false; fi
fi

cat >"$out/source.json" <<EOF
{
  "uname": {
    "sysname": "$(uname -s)",
    "nodename": "$(uname -n)",
    "release": "$rel",
    "version": "$(uname -v)",
    "machine": "$(uname -m)"
  },
  "page_size": $(getconf PAGESIZE),
  "path": [$path_json],
  "aarch32_el0": $aarch32
}
EOF
echo "recorded into $out"

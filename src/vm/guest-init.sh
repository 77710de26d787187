#!/bin/busybox sh
# xrun guest init (PID 1 of the VM), built into the guest initrd by ci/guest-image and shipped
# again as /init in every run's cpio (so it always matches the host's side of the protocol).
#
# Protocol with the host (src/vm/runcpio.rs writes the per-run cpio appended to the initrd):
#   /xrun/argv/NNNNNN   one file per argument, exact bytes (a trailing newline is kept)
#   /xrun/env/NNNNNN    one file per KEY=VALUE
#   /xrun/workdir       working directory inside the rootfs (default /)
#   /xrun/user          numeric uid:gid, or empty for root
#   /xrun/hostname      the hostname
#   /xrun/modules       extra modules to load, one name per line, dependencies first
#   /xrun/writable      present: the disk with serial xrun-rw is ext4 and holds upper/ and work/
#   /xrun/stdin         present: stdin comes from port org.xrun.stdin
#   /xrun/tty           "ROWS COLS": -t, the command runs on the virtio console /dev/hvc0 as its
#                       controlling terminal (stdout and stderr together)
#   /xrun/net           one line per network interface, in order (eth0, eth1, …):
#                       "MAC ADDR/PREFIX GATEWAY MTU" (GATEWAY "-": none; the first gateway
#                       becomes the default route); the NIC with that MAC is renamed ethN,
#                       given the address and brought up. lo is always up.
#   /xrun/resolv.conf   bind-mounted over the container's /etc/resolv.conf
#   /xrun/hosts         bind-mounted over the container's /etc/hosts
#   /xrun/readonly      present: the container's root is remounted read-only once set up
#   /xrun/tmpfs         one line per --tmpfs: "OPTIONS PATH" (OPTIONS "-": the defaults)
#   /xrun/volumes       one line per -v: "TAG ro|rw PATH": the 9p share TAG mounted at PATH
#   /xrun/pids          --pids-limit: pids.max of the container's cgroup (cgroup2, mounted at
#                       the container's /sys/fs/cgroup); the command and every exec join it
#   /xrun/execslots     N: exec slots 0..N-1, each four ports org.xrun.xI.{ctl,in,out,err}
#                       and a virtio console org.xrun.xI.tty (hvcI, hvc(I+1) with -t),
#                       plugged by the host on first use (in slot order, console first)
# Disks are found by virtio serial (xrun-rootfs: erofs, xrun-rw: ext4); ports by name
# (org.xrun.stdout, org.xrun.stderr, org.xrun.exit). The exit status is written to the exit port
# as decimal text, after a line "S" once the command starts (the host bounds the boot until
# then); 125 means the init itself failed (its reason goes to the stderr port and the
# console). Then the VM reboots; qemu runs with -no-reboot, so it exits.
# The control port org.xrun.ctl carries lines from the host: "K SIGNUM" (signal the command)
# and "W ROWS COLS" (resize its terminal).
# exec (src/vm/exec.rs): the host connects a slot's ports, then writes on its ctl port one
# line "R BASE64" (a cpio with argv/NNNNNN, env/NNNNNN, workdir, user, stdin, tty), then
# "K SIGNUM" and "W ROWS COLS" lines; the guest answers "S" once the process runs and its exit
# status when it ended (all of its output was taken by the host before: port writes wait for
# the host); the host says "D" and the guest "E" once it stopped reading the port, then the
# host disconnects. The process runs in the container's root and cgroup like the command
# (stage 2 in a private mount namespace); the host going away kills it.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

exitport=
errport=
finish() { # STATUS
  if [ -n "$exitport" ]; then echo "$1" > "$exitport"; fi
  # Only the writable layer disk has anything to flush (the rest is tmpfs, read-only erofs
  # and uncached 9p).
  [ -e /xrun/writable ] && sync
  reboot -f
  sleep 5
}
fail() {
  echo "xrun-init: $*" > /dev/console
  if [ -n "$errport" ]; then echo "xrun: guest: $*" > "$errport"; fi
  finish 125
}
readval() { # FILE -> $v, exact bytes
  v="$(cat "$1"; echo x)"; v="${v%x}"
}

for f in /etc/xrun/modules.base /xrun/modules; do
  [ -s $f ] || continue
  while read -r l; do
    for m in $l; do insmod "/lib/modules/$m.ko" 2>/dev/console || fail "cannot load module $m"; done
  done < $f
done

# Named virtio ports and disks appear asynchronously: wait for them (bounded).
# (Shell built-ins only in these loops: every fork is expensive under TCG.)
port() { # NAME -> $r = /dev/vportXpY
  r=
  for p in /sys/class/virtio-ports/*; do
    n=; { read -r n < "$p/name"; } 2>/dev/null
    if [ "$n" = "$1" ]; then r="/dev/${p##*/}"; [ -e "$r" ]; return; fi
  done
  return 1
}
disk() { # SERIAL -> $r = /dev/vdX
  r=
  for b in /sys/block/vd*; do
    n=; { read -r n < "$b/serial"; } 2>/dev/null
    if [ "$n" = "$1" ]; then r="/dev/${b##*/}"; [ -e "$r" ]; return; fi
  done
  return 1
}
i=0
while :; do
  port org.xrun.stdout && outport=$r && port org.xrun.stderr && errport=$r \
    && port org.xrun.exit && exitport=$r && port org.xrun.ctl && ctlport=$r \
    && disk xrun-rootfs && rootdev=$r && break
  i=$((i + 1))
  [ $i -gt 1000 ] && fail "virtio ports or rootfs disk did not appear"
  usleep 5000
done

mount -t erofs -o ro "$rootdev" /mnt/lower || fail "cannot mount the rootfs image"
if [ -e /xrun/writable ]; then
  i=0
  until disk xrun-rw && rwdev=$r; do
    i=$((i + 1)); [ $i -gt 300 ] && fail "writable disk did not appear"; usleep 10000
  done
  mount -t ext4 "$rwdev" /mnt/rw || fail "cannot mount the writable disk"
else
  mount -t tmpfs -o mode=0755 rw /mnt/rw
fi
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot \
  || fail "cannot mount the overlay"
for d in proc sys dev; do [ -d /newroot/$d ] || mkdir -p /newroot/$d; done
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
if [ -s /xrun/hostname ]; then readval /xrun/hostname; hostname "$v"; fi

# Network: lo always; each NIC found by its MAC (virtio-net probes asynchronously), renamed to
# a temporary name first so ethN names can be handed out in any order.
ip link set lo up
if [ -s /xrun/net ]; then
  n=0
  while read -r mac addr gw mtu; do
    i=0; dev=
    while [ -z "$dev" ]; do
      for d in /sys/class/net/*; do
        a=; { read -r a < "$d/address"; } 2>/dev/null
        [ "$a" = "$mac" ] && dev=${d##*/} && break
      done
      [ -n "$dev" ] && break
      i=$((i + 1)); [ $i -gt 500 ] && fail "network interface $mac did not appear"; usleep 10000
    done
    ip link set dev "$dev" name "xrun$n" || fail "cannot rename network interface $dev"
    n=$((n + 1))
  done < /xrun/net
  n=0; defgw=
  while read -r mac addr gw mtu; do
    dev=eth$n
    ip link set dev "xrun$n" name "$dev" || fail "cannot rename network interface xrun$n"
    [ -n "$mtu" ] && ip link set dev "$dev" mtu "$mtu"
    ip addr add "$addr" dev "$dev" || fail "cannot set address $addr on $dev"
    ip link set dev "$dev" up || fail "cannot bring $dev up"
    if [ "$gw" != - ] && [ -z "$defgw" ]; then
      ip route add default via "$gw" dev "$dev" || fail "cannot add the default route via $gw"
      defgw=$gw
    fi
    n=$((n + 1))
  done < /xrun/net
fi
for f in resolv.conf hosts; do
  [ -e /xrun/$f ] || continue
  mkdir -p /newroot/etc
  if [ -L /newroot/etc/$f ] || [ ! -f /newroot/etc/$f ]; then
    rm -rf /newroot/etc/$f; : > /newroot/etc/$f
  fi
  mount --bind /xrun/$f /newroot/etc/$f || fail "cannot mount /etc/$f"
done

# --tmpfs and -v (9p shares), inside the container's root.
if [ -s /xrun/tmpfs ]; then
  while read -r o p; do
    [ "$o" = - ] && o=rw,nosuid,nodev,noexec
    mkdir -p "/newroot$p" && mount -t tmpfs -o "$o" tmpfs "/newroot$p" || fail "cannot mount a tmpfs at $p"
  done < /xrun/tmpfs
fi
if [ -s /xrun/volumes ]; then
  while read -r tag mode p; do
    o=trans=virtio,version=9p2000.L,msize=262144,cache=none
    [ "$mode" = ro ] && o=$o,ro
    mkdir -p "/newroot$p" 2>/dev/null || [ -e "/newroot$p" ] || fail "cannot make the mount point $p"
    mount -t 9p -o "$o" "$tag" "/newroot$p" || fail "cannot mount volume $p (9p share $tag; does the guest kernel have 9p?)"
  done < /xrun/volumes
fi
# The container's cgroup (cgroup2): pids.max; the container sees it as its /sys/fs/cgroup.
cg=
if [ -s /xrun/pids ] && mkdir -p /cg && mount -t cgroup2 none /cg 2>/dev/null; then
  cg=/cg/c
  echo +pids > /cg/cgroup.subtree_control && mkdir -p $cg || fail "no pids cgroup controller in the guest"
  read -r v < /xrun/pids; echo "$v" > $cg/pids.max || fail "cannot set pids.max $v"
  [ -d /newroot/sys/fs/cgroup ] && mount --bind $cg /newroot/sys/fs/cgroup
elif [ -s /xrun/pids ]; then
  fail "no cgroup2 in the guest kernel for --pids-limit"
fi

# Stage 2 runs inside the new root from a busybox on a private mount that it detaches before
# executing the command, so the container sees its own files only. /.xrun stays as an empty
# directory: exec mounts its helper there in a mount namespace of its own.
mkdir -p /newroot/.xrun /helper
ln /bin/busybox /helper/busybox
if [ -d /xrun ]; then cp -a /xrun /helper/run; else mkdir /helper/run; fi
mount --bind /helper /newroot/.xrun
cat > /helper/stage2 <<'STAGE2'
# (Shell built-ins where possible: every fork and exec is expensive under TCG.)
readval() { v=; IFS= read -r -d '' v < "$1"; }
wd=/; [ -s /.xrun/run/workdir ] && { readval /.xrun/run/workdir; wd=$v; }
ug=; [ -s /.xrun/run/user ] && { readval /.xrun/run/user; ug=$v; }
set --
for f in /.xrun/run/env/*; do [ -e "$f" ] || continue; readval "$f"; set -- "$@" "$v"; done
nenv=$#
for f in /.xrun/run/argv/*; do [ -e "$f" ] || continue; readval "$f"; set -- "$@" "$v"; done
[ $# -gt $nenv ] || { echo "xrun: no command given" >&2; exit 125; }
# Find the program the way execvp would, with the container's PATH. The environment can be
# set by this shell itself (no `env -i`) when every entry is NAME=VALUE with a plain name.
cpath=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
plain=1
i=0; for e in "$@"; do
  i=$((i + 1)); [ $i -gt $nenv ] && break
  case "$e" in PATH=*) cpath=${e#PATH=} ;; esac
  case "$e" in
    *=*) case "${e%%=*}" in ''|[0-9]*|*[!A-Za-z0-9_]*|LINENO|RANDOM|SECONDS|PPID|OPTIND|IFS) plain= ;; esac ;;
    *) plain= ;;
  esac
done
i=0; for a in "$@"; do i=$((i + 1)); [ $i -gt $nenv ] && { prog=$a; break; }; done
[ "$wd" = / ] || mkdir -p "$wd" 2>/dev/null
cd "$wd" || { echo "xrun: cannot enter working directory $wd" >&2; exit 126; }
case "$prog" in
  */*) path=$prog ;;
  *) path=; IFS=:; for d in $cpath; do [ -z "$d" ] && d=.; if [ -f "$d/$prog" ] && [ -x "$d/$prog" ]; then path=$d/$prog; break; fi; done; unset IFS ;;
esac
if [ -z "$path" ] || [ ! -e "$path" ]; then echo "xrun: exec: \"$prog\": executable file not found in \$PATH" >&2; exit 127; fi
if [ -d "$path" ] || [ ! -x "$path" ]; then echo "xrun: exec: \"$prog\": permission denied" >&2; exit 126; fi
# This shell's pid is the command's (exec all the way): once written, the init delivers the
# host's signals to it (until then they wait, so none hits this script instead).
echo $$ > /.xrun/run/pid
# (ash would run a file without "#!" or ELF header as a script itself: that goes through
# start-stop-daemon, which fails on it like execve.)
h=; read -r -n 2 h < "$path" 2>/dev/null; [ "$h" = '#!' ] || [ "$h" = $'\177E' ] || plain=
if [ -n "$plain" ] && [ -z "$ug" ] && [ ! -e /.xrun/run/tty ]; then
  # The common case: this shell clears its environment (what it exports itself and what it
  # inherited: HOME, TERM, PATH, PWD, OLDPWD, SHLVL, XRUN_CG), exports the container's, and
  # executes the program with its argv[0].
  umount -l /.xrun 2>/dev/null
  unset HOME TERM PATH PWD OLDPWD SHLVL XRUN_CG
  i=0; for e in "$@"; do i=$((i + 1)); [ $i -gt $nenv ] && break; export "$e"; done
  shift $nenv
  a0=$1; shift
  exec -a "$a0" "$path" "$@"
fi
# Otherwise: env -i ENV… [setsid -c] start-stop-daemon -S -p NONE -x PATH -a ARGV0 [-c UID:GID] -- ARGS…
n=$#; i=0
for a in "$@"; do
  i=$((i + 1))
  if [ $i -eq 1 ]; then set -- "$@" env -i; fi
  if [ $i -le $nenv ]; then set -- "$@" "$a"; continue; fi
  if [ $i -eq $((nenv + 1)) ]; then
    # -t: a new session with the terminal on stdin as its controlling tty.
    [ -e /.xrun/run/tty ] && set -- "$@" setsid -c
    set -- "$@" start-stop-daemon -S -q -p /.xrun-none -x "$path" -a "$a"
    [ -n "$ug" ] && set -- "$@" -c "$ug"
    set -- "$@" --
    continue
  fi
  set -- "$@" "$a"
done
shift $n
umount -l /.xrun 2>/dev/null
exec "$@"
STAGE2

# Processes join the container's cgroup (if any) through this, then exec ARGS.
cat > /helper/enter <<'ENTER'
[ -n "$XRUN_CG" ] && echo $$ > "$XRUN_CG/cgroup.procs"
unset XRUN_CG
exec "$@"
ENTER
export XRUN_CG=$cg
[ -e /xrun/readonly ] && { mount -o remount,ro /newroot || fail "cannot make the root read-only"; }

# exec slots: one dispatcher polls every plugged slot's ctl port (a read there returns at
# once while no host is connected) and starts each request in the background.
xexec() { # SLOT REQUEST (fd 3: the slot's ctl port; $xi/$xo/$xe its other ports)
  h=/helper-x$1
  rm -rf $h; mkdir -p $h/run
  ln /bin/busybox $h/busybox; cp /helper/stage2 $h/stage2
  echo "$2" | base64 -d | (cd $h/run && cpio -i -d 2>/dev/null) || { echo 125 >&3; return; }
  # stdin is open before "S": the host ends it (EOF) only after "S".
  t=
  if [ -e $h/run/tty ]; then
    # -t: the slot's virtio console, kept open (fd 5) across the first-open size reset.
    t=/dev/hvc$(($1 + xtoff)); xo=$t; xe=$t
    exec 4<> $t 5<> $t
    usleep 20000
    read -r rows cols < $h/run/tty
    [ "${rows:-0}" -gt 0 ] && stty -F $t rows "$rows" cols "$cols"
  elif [ -e $h/run/stdin ]; then exec 4< "$xi"; else exec 4< /dev/null; fi
  # The copied mount table may still hold the main command's helper on /newroot/.xrun (an
  # exec right after the start, before its stage 2 detached it): drop it here first.
  sh /helper/enter unshare -m sh -c 'while umount -l /newroot/.xrun 2>/dev/null; do :; done; mount --bind "$1" /newroot/.xrun && exec chroot /newroot /.xrun/busybox sh /.xrun/stage2' \
    sh $h <&4 > "$xo" 2> "$xe" 3<&- 4<&- 5<&- &
  xp=$!
  exec 4<&-
  echo S >&3
  ( while read -r op a b; do
      case "$op" in
        K) [ -e $h/done ] || { read -r pid < $h/run/pid && kill -"$a" "$pid"; } 2>/dev/null ;;
        W) [ -n "$t" ] && stty -F $t rows "$a" cols "$b" 2>/dev/null ;;
        D) break ;;
        # A new request: this exec's host is gone; hand the request to the dispatcher.
        R) echo "$a" > /xpend$1; break ;;
      esac
    done <&3
    # The host went away before the end: a process still running goes too.
    [ -e $h/done ] || { read -r pid < $h/run/pid && kill -9 "$pid"; } 2>/dev/null
  ) &
  xr=$!
  wait $xp; code=$?
  : > $h/done
  # (Writes in the background: a write waits while no host is connected; the host ignores
  # lines before its "S".)
  echo $code >&3 &
  wait $xr
  echo E >&3 &
  exec 5<&-
  rm -rf $h
}
xdispatch() { # SLOTS (port() sets $n, $p, $r: other names here)
  xn=$1
  mkfifo /xsleep; exec 8<> /xsleep
  # The host plugs a slot's devices on its first use, in slot order and the control port
  # last: slot I is served once its control port appears (looked for only once slot I-1
  # is, so an idle VM reads a handful of sysfs names per round).
  while :; do
    i=0; xprev=1
    while [ $i -lt $xn ]; do
      eval "xup=\$xup$i"
      if [ -z "$xup" ] && [ -n "$xprev" ] && port org.xrun.x$i.ctl; then
        eval "exec $((i + 10))<> $r; xup$i=1"; xup=1
      fi
      xprev=$xup
      if [ -n "$xup" ] && [ ! -e /xbusy$i ]; then
        op=
        if [ -e /xpend$i ]; then read -r req < /xpend$i; rm -f /xpend$i; op=R
        else eval "read -r op req <&$((i + 10))"; fi
        if [ "$op" = R ]; then
          : > /xbusy$i
          port org.xrun.x$i.in; xi=$r; port org.xrun.x$i.out; xo=$r; port org.xrun.x$i.err; xe=$r
          ( eval "exec 3<&$((i + 10))"; xexec $i "$req"; rm -f /xbusy$i ) &
        fi
      fi
      i=$((i + 1))
    done
    read -r -t 0.05 op <&8
  done
}
xtoff=0; [ -e /xrun/tty ] && xtoff=1
if [ -s /xrun/execslots ]; then read -r v < /xrun/execslots; xdispatch "$v" < /dev/null > /dev/null 2> /dev/console & fi

in=/dev/null; out=$outport; err=$errport; tty=
if [ -e /xrun/stdin ]; then port org.xrun.stdin && in=$r; fi
if [ -e /xrun/tty ]; then
  i=0
  until [ -e /dev/hvc0 ]; do
    i=$((i + 1)); [ $i -gt 300 ] && fail "the terminal (virtio console) did not appear"; usleep 10000
  done
  tty=/dev/hvc0; in=$tty; out=$tty; err=$tty
  # The virtio console resets its size to 0x0 (asynchronously) on every first open: keep it
  # open here (fd 9, not passed on) and let the reset pass before setting the size.
  exec 9<> $tty
  usleep 20000
  read -r rows cols < /xrun/tty
  [ "${rows:-0}" -gt 0 ] && stty -F $tty rows "$rows" cols "$cols"
fi

# Signals and terminal sizes from the host, until the VM ends.
control() {
  while read -r op a b; do
    case "$op" in
      K)
        i=0
        until [ -s /helper/run/pid ]; do
          i=$((i + 1)); [ $i -gt 1000 ] && break; usleep 10000
        done
        read -r pid < /helper/run/pid && kill -"$a" "$pid" 2>/dev/null ;;
      W) [ -n "$tty" ] && stty -F $tty rows "$a" cols "$b" 2>/dev/null ;;
    esac
  done < "$ctlport"
}
control &

echo S > "$exitport"
# (Through /helper/enter only when there is a cgroup to join: one exec less.)
if [ -n "$cg" ]; then set -- sh /helper/enter chroot; else set -- chroot; fi
"$@" /newroot /.xrun/busybox sh /.xrun/stage2 < "$in" > "$out" 2> "$err" 9<&-
finish $?

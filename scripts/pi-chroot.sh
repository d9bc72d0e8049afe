#!/usr/bin/env bash
# Chroot into a root filesystem exported by `rpibuild rootfs`, on the Pi or on any Linux host.
#
# Usage: pi-chroot.sh [options] ROOT [-- COMMAND [ARG...]]
#   ROOT   HOST:/DIR (mounted over NFS, v3 without locking, at --mountpoint) or a local folder
#   COMMAND runs inside the root (default: an interactive shell); its exit status is ours.
# Options:
#   -m, --mountpoint DIR   where an NFS root is mounted (default /mnt/rpibuild-root)
#   -o, --nfs-options OPT  NFS mount options (default vers=3,nolock: the Pi OS has no statd running)
#   --no-resolv            do not copy this host's /etc/resolv.conf into the root
#   --boot DIR             the Pi's boot partition (config.txt), bound read-only at /boot/firmware
#                          inside (default: /boot/firmware or /boot here, if it holds config.txt)
#   --no-boot              do not bind the boot partition
#   --cleanup              only undo what an earlier run left behind (mounts, resolv.conf), then exit
#   -h, --help
#
# Binds /dev (recursively, so the GPU's /dev/vcio and /dev/mem are there), mounts /proc and
# /sys, copies resolv.conf so the root has DNS, and chroots in. Every mount below ROOT is
# undone on exit, error, Ctrl-C or TERM (a trap); a run killed with SIGKILL leaves mounts that
# the next run (or --cleanup) removes first. On an x86 host the root's ARM binaries run through
# the kernel's binfmt_misc + QEMU (`rpibuild qemu install`); set QEMU_CPU=cortex-a7 (armv7) or
# cortex-a53 (arm64) to emulate the Pi's own core.
set -euo pipefail

readonly saved_suffix=.pi-chroot-saved
readonly copied_marker=.pi-chroot-copied
mountpoint_dir=/mnt/rpibuild-root
nfs_options=vers=3,nolock
copy_resolv=1
boot_dir=auto
cleanup_only=0
source_spec=""
command_args=()

log() { printf 'pi-chroot: %s\n' "$*" >&2; }
die() { printf 'pi-chroot: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ "$#" -gt 0 ]; do
    case $1 in
        -m | --mountpoint) [ "$#" -ge 2 ] || die "$1 needs a folder"; mountpoint_dir=$2; shift 2 ;;
        -o | --nfs-options) [ "$#" -ge 2 ] || die "$1 needs options"; nfs_options=$2; shift 2 ;;
        --no-resolv) copy_resolv=0; shift ;;
        --boot) [ "$#" -ge 2 ] || die "$1 needs a folder"; boot_dir=$2; shift 2 ;;
        --no-boot) boot_dir=""; shift ;;
        --cleanup) cleanup_only=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; command_args=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *)
            [ -z "$source_spec" ] || die "one ROOT only (put the command after --)"
            source_spec=$1
            shift
            ;;
    esac
done
[ -n "$source_spec" ] || { usage >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run as root (mount and chroot need it): sudo $0 ..."

# A ROOT with a colon that is not a local folder is an NFS export.
is_nfs=0
if [[ $source_spec == *:* && ! -d $source_spec ]]; then
    is_nfs=1
    root=$mountpoint_dir
else
    [ -d "$source_spec" ] || die "$source_spec is neither a folder nor HOST:/DIR"
    root=$(cd "$source_spec" && pwd -P)
fi
root=${root%/}
if [ -z "$root" ] || [ "$root" = / ]; then die "refusing to chroot into / (give the exported root)"; fi

# Mount points at or below $1 ($2=1: include $1 itself), deepest first. /proc/self/mounts
# escapes spaces as \040; a mount stacked twice is listed twice, hence the loop in unmount_below.
mounts_below() {
    local path=$1 self=${2:-0}
    awk -v p="$path" -v self="$self" '{
        m = $2; gsub(/\\040/, " ", m)
        if ((self == 1 && m == p) || index(m, p "/") == 1) print m
    }' /proc/self/mounts | sort -r
}

# Unmount everything below $1 (and $1 itself with $2=1); lazily when busy (a process of the
# chroot may still hold a file), so nothing stays attached.
unmount_below() {
    local path=$1 self=${2:-0} point left
    local -a points
    for _ in 1 2 3 4 5 6 7 8; do
        mapfile -t points < <(mounts_below "$path" "$self")
        [ "${#points[@]}" -gt 0 ] || return 0
        for point in "${points[@]}"; do
            umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true
        done
    done
    left=$(mounts_below "$path" "$self" | tr '\n' ' ')
    [ -z "$left" ] || { log "could not unmount: $left"; return 1; }
}

# Put back the root's own resolv.conf (or remove ours) if a run copied the host's in.
restore_resolv() {
    local target=$root/etc/resolv.conf
    if [ -e "$target$copied_marker" ]; then
        rm -f "$target" "$target$copied_marker"
        if [ -e "$target$saved_suffix" ] || [ -L "$target$saved_suffix" ]; then
            mv -f "$target$saved_suffix" "$target"
        fi
    fi
}

# Undo whatever an earlier run (or this one) set up; safe to call when nothing is mounted.
undo_all() {
    local status=0
    [ -d "$root" ] || return 0
    if [ "$is_nfs" -eq 1 ]; then
        unmount_below "$root" 0 || status=1
        # resolv.conf lives on the NFS root: restore it before unmounting that.
        if mountpoint -q "$root"; then restore_resolv; fi
        unmount_below "$root" 1 || status=1
    else
        unmount_below "$root" 0 || status=1
        restore_resolv
    fi
    return "$status"
}

child=""
# shellcheck disable=SC2317  # on_signal and on_exit run from traps
on_signal() {
    # Forward to the command (it may ignore it, e.g. an interactive shell on Ctrl-C).
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -"$1" "$child" 2>/dev/null || true
    fi
}

# shellcheck disable=SC2317
on_exit() {
    local status=$?
    trap - EXIT INT TERM HUP
    set +e
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    undo_all || status=1
    if [ "$is_nfs" -eq 1 ] && [ "${created_mountpoint:-0}" -eq 1 ]; then
        rmdir "$root" 2>/dev/null
    fi
    release_lock
    exit "$status"
}

# One session per root: a second one would take the first one's mounts for leftovers. The
# lock is held (fd 9) as long as this script runs; the command inside does not inherit it.
# The file is removed on exit while still locked; a run that locked a file removed meanwhile
# (by a session that just ended) tries again, so two runs never hold "the" lock at once.
lock_dir=/run/lock
[ -d "$lock_dir" ] || lock_dir=${TMPDIR:-/tmp}
lock_file=$lock_dir/pi-chroot${root//\//%}.lock
while :; do
    exec 9>"$lock_file"
    flock -n 9 || die "another pi-chroot.sh session is using $root: leave that one first"
    if [ "$lock_file" -ef /proc/self/fd/9 ]; then break; fi
done
# shellcheck disable=SC2317  # runs from the EXIT trap
release_lock() { rm -f "$lock_file"; }
trap release_lock EXIT

if [ "$cleanup_only" -eq 1 ]; then
    undo_all && log "nothing left mounted under $root"
    exit
fi

# Leftovers of a run that was killed (SIGKILL, power loss) go first: idempotent.
if [ -n "$(mounts_below "$root" 0)" ] || [ -e "$root/etc/resolv.conf$copied_marker" ]; then
    log "removing what an earlier run left under $root"
    undo_all || die "cannot clean up the earlier run's mounts under $root"
fi

trap on_exit EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

created_mountpoint=0
if [ "$is_nfs" -eq 1 ]; then
    if [ ! -d "$root" ]; then
        mkdir -p "$root"
        created_mountpoint=1
    fi
    if mountpoint -q "$root"; then unmount_below "$root" 1; fi
    command -v mount.nfs >/dev/null || die "no NFS client here: apt-get install nfs-common"
    log "mounting $source_spec on $root ($nfs_options)"
    mount -t nfs -o "$nfs_options" "$source_spec" "$root" \
        || die "cannot mount $source_spec (is it in the server's /etc/exports, with no_root_squash?)"
fi
[ -x "$root/bin/sh" ] || [ -L "$root/bin/sh" ] || die "$root has no /bin/sh: is it a root filesystem?"

for dir in dev proc sys; do mkdir -p "$root/$dir"; done
# rslave: unmounting our copies must never propagate back and unmount the host's /dev/pts.
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --make-rslave "$root/sys"

# The Pi's config.txt (gpu_mem, overlays) lives on its SD card, not in the image: let
# `python -m torch_qpu doctor` inside see it, read-only.
if [ "$boot_dir" = auto ]; then
    boot_dir=""
    for candidate in /boot/firmware /boot; do
        if [ -f "$candidate/config.txt" ]; then boot_dir=$candidate; break; fi
    done
fi
if [ -n "$boot_dir" ]; then
    [ -d "$boot_dir" ] || die "--boot $boot_dir is not a folder"
    mkdir -p "$root/boot/firmware"
    mount --bind "$boot_dir" "$root/boot/firmware"
    mount -o remount,bind,ro "$root/boot/firmware"
fi

if [ "$copy_resolv" -eq 1 ] && [ -e /etc/resolv.conf ]; then
    target=$root/etc/resolv.conf
    mkdir -p "$root/etc"
    [ ! -e "$target$copied_marker" ] || restore_resolv  # an earlier run's copy: keep the saved original
    if [ -e "$target" ] || [ -L "$target" ]; then mv -f "$target" "$target$saved_suffix"; fi
    : >"$target$copied_marker"
    cp -L /etc/resolv.conf "$target" || log "could not copy resolv.conf (DNS may not work inside)"
fi

# The image's ENV (venv on PATH) does not survive an export; set it as the image did.
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
environment=(HOME=/root "TERM=${TERM:-linux}" LANG=C.UTF-8)
if [ -x "$root/opt/rpibuild/venv/bin/python" ]; then
    path=/opt/rpibuild/venv/bin:$path
    environment+=(VIRTUAL_ENV=/opt/rpibuild/venv)
fi
environment+=("PATH=$path")
[ -z "${QEMU_CPU:-}" ] || environment+=("QEMU_CPU=$QEMU_CPU")

if [ "${#command_args[@]}" -eq 0 ]; then
    if [ -x "$root/bin/bash" ]; then command_args=(/bin/bash -i); else command_args=(/bin/sh -i); fi
    log "entering $root (exit the shell to leave; everything is unmounted then)"
fi

# The command runs in the background so a TERM to this script is handled at once (bash runs
# traps only between foreground commands); its stdin is passed explicitly (a background job
# would get /dev/null) and SIGINT/SIGQUIT, which bash ignores for background jobs, are reset.
exec 3<&0
signals=()
if env --default-signal=INT true 2>/dev/null; then signals=("--default-signal=INT,QUIT"); fi
env "${signals[@]}" chroot "$root" /usr/bin/env -i "${environment[@]}" "${command_args[@]}" <&3 3<&- 9>&- &
child=$!
exec 3<&-
status=0
while :; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || break  # still running: wait was cut short by a signal
done
child=""
exit "$status"

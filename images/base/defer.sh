#!/bin/sh
# An mmdebstrap hook of rpibuild's: keep file-placing work of a foreign-architecture bootstrap
# away from QEMU.
#
# Every maintainer script of a foreign bootstrap runs under QEMU. Two kinds of them cost most
# of a base's minutes and only write files: byte-compiling Python (py3compile, and the
# interpreter packages' own py_compile runs) and building the CA bundle
# (update-ca-certificates). As an essential hook, "divert" puts no-op stand-ins in their
# place (dpkg diversions, before the remaining packages are installed); as a customize hook,
# "restore" puts the real programs back. rpibuild then does that work on the build platform
# (finish.py), so the base ends up as a plain bootstrap would have left it.
#
# Usage (mmdebstrap runs it): sh defer.sh divert|restore ROOT
set -eu

action=$1
root=$2
suffix=.rpibuild-real

# The interpreters the suite has (python3.N-minimal ships /usr/bin/python3.N), from the
# bootstrap's own apt (its configuration is in MMDEBSTRAP_APT_CONFIG).
interpreters() {
    APT_CONFIG=$MMDEBSTRAP_APT_CONFIG apt-cache pkgnames python3. \
        | sed -n 's|^python3\.\([0-9][0-9]*\)-minimal$|/usr/bin/python3.\1|p' | sort -u
}

deferred() {
    echo /usr/bin/py3compile
    echo /usr/sbin/update-ca-certificates
    interpreters
}

divert() {
    path=$1
    dpkg-divert --root "$root" --package rpibuild --rename --divert "$path$suffix" --add "$path" >/dev/null
    mkdir -p "$root$(dirname "$path")"
    case "$path" in
        /usr/bin/python3.*)
            # Skips only the byte-compiling runs of the interpreter packages' postinst
            # ("python3.N -E -S [-O] /usr/lib/python3.N/py_compile.py FILES"); anything else
            # runs the real interpreter.
            cat >"$root$path" <<EOF
#!/bin/sh
case "\$*" in "-E -S /usr/lib/python3."*"/py_compile.py "* | "-E -S -O /usr/lib/python3."*"/py_compile.py "*) exit 0 ;; esac
exec $path$suffix "\$@"
EOF
            ;;
        *) printf '#!/bin/sh\nexit 0\n' >"$root$path" ;;
    esac
    chmod 0755 "$root$path"
}

restore() {
    path=$1
    rm -f "$root$path"
    dpkg-divert --root "$root" --package rpibuild --rename --divert "$path$suffix" --remove "$path" >/dev/null
}

case "$action" in
    divert | restore)
        for path in $(deferred); do "$action" "$path"; done
        ;;
    *)
        echo "defer.sh: unknown action $action (divert or restore)" >&2
        exit 2
        ;;
esac

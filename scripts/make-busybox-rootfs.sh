#!/usr/bin/env bash
# Makes a minimal root filesystem from Debian's busybox-static in DIR:
# /bin/busybox with its applet links, /etc/passwd and /etc/group (root, nobody, app),
# and /tmp. Used as the base image of the fixtures and tests; nothing binary is committed.
set -euo pipefail
dir=${1:?usage: make-busybox-rootfs.sh DIR}
bb=$(command -v busybox || true)
[ -n "$bb" ] || { echo "make-busybox-rootfs: busybox not found: install the Debian package busybox-static" >&2; exit 1; }
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home/app"
cp "$bb" "$dir/bin/busybox"
for c in $("$dir/bin/busybox" --list); do
  [ "$c" = busybox ] || ln -sf busybox "$dir/bin/$c"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\n' > "$dir/etc/group"
chmod 1777 "$dir/tmp"
chown 1000:1000 "$dir/home/app"

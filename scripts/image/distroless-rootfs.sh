#!/usr/bin/env bash
# The root filesystem of gcr.io/distroless/cc-debian12:nonroot, made from Debian 12's own
# packages: the stand-in scripts/build-image.sh builds the Dockerfile's last stage on.
# It can be the base of an image with that last stage made without the Dockerfile's
# slow build, as the real-node e2e tests are to run (issue 24, point 1).
#
#   scripts/image/distroless-rootfs.sh OUT.tar [DEB_DIR]
#
# Recipe after GoogleContainerTools/distroless (static, base and cc for debian12):
# the files of base-files, netbase, tzdata, libc6, libssl3, libgcc-s1, libgomp1,
# libstdc++6 and gcc-12-base; ca-certificates' certificates as one bundle,
# /etc/ssl/certs/ca-certificates.crt; /etc/passwd with root, nobody and nonroot (65532),
# /etc/group, /home/nonroot (65532, 0700), /root (0700), /tmp (1777), an os-release and
# nsswitch.conf, merged /usr. No shell, no package manager, no dpkg database. The image
# config (USER 65532, WORKDIR /home/nonroot, PATH, SSL_CERT_FILE) is the caller's.
#
# The .deb files come from the machine's apt sources (`apt-get download`, apt's own
# client; run `apt-get update` first on a fresh machine) into DEB_DIR (default: beside
# OUT.tar) and are reused from there. The archive is reproducible: sorted, owned by
# number, every mtime the epoch. Needs root (file owners), dpkg-deb and GNU tar.
set -euo pipefail
out=${1:?usage: distroless-rootfs.sh OUT.tar [DEB_DIR]}
debs=${2:-$(dirname "$out")/debs}
packages=(base-files netbase tzdata ca-certificates libc6 libssl3 libgcc-s1 libgomp1
  libstdc++6 gcc-12-base)

mkdir -p "$debs"
missing=()
for p in "${packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # As root, apt cannot drop to its _apt user for a directory _apt cannot write: say
  # so explicitly instead of warning.
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "${missing[@]}")
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# Merged /usr, as distroless's usrmerge.tar: Debian 12's packages still ship /lib/…
for d in bin lib lib64 sbin; do
  mkdir -p "$root/usr/$d"
  ln -s "usr/$d" "$root/$d"
done
for p in "${packages[@]}"; do
  deb=$(compgen -G "$debs/${p}_*.deb" | sort | tail -1)
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root"
done

# What distroless leaves out of the packages: documentation but the copyright files.
rm -rf "$root"/usr/share/{man,info,lintian,locale} "$root"/usr/share/doc/*/changelog*
# One bundle of the Mozilla certificates, as update-ca-certificates would write it.
mkdir -p "$root/etc/ssl/certs"
find "$root/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat \
  > "$root/etc/ssl/certs/ca-certificates.crt"

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
GROUP
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n' \
  > "$root/etc/nsswitch.conf"
rm -f "$root/etc/os-release"
cat > "$root/etc/os-release" <<'RELEASE'
PRETTY_NAME="Distroless (stand-in made from Debian 12 packages)"
NAME="Debian GNU/Linux"
ID="debian"
VERSION_ID="12"
VERSION="Debian GNU/Linux 12 (bookworm)"
RELEASE
install -d -m 0700 "$root/root"
install -d -m 0755 "$root/home"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"

mkdir -p "$(dirname "$out")"
tar -C "$root" --sort=name --numeric-owner --mtime=@0 --format=gnu -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "distroless-rootfs: $out ($(du -h "$out" | cut -f1); ${packages[*]})"

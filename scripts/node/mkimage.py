#!/usr/bin/env python3
"""Write a single-layer OCI image archive from files of this host: no registry, no docker build.

The e2e tests' node (tests/support/e2e/node/) runs pods from images made here and imported
with `ctr -n k8s.io images import FILE`; scripts/node/images.sh holds the recipes.

Adapted from ../shared/kube-e2e/node/make-node-image.py (busybox plus a symlink per applet,
a deterministic OCI layout tar) and the node prototype's mkimage.py (executables with their
shared libraries, trees, users). The layer holds a static busybox (Debian's busybox-static)
unless --no-busybox, plus:

  --bin SRC[:DEST]        an ELF executable and every shared library `ldd` lists (with the
                          loader), at their host paths; symbolic links resolved
  --lib PATH              a shared library (dlopen'd ones: NSS, xtables modules) and its deps
  --tree SRC:DEST         a directory, recursively (ELF files in it get their deps too)
  --file SRC:DEST[:MODE]  a plain file
  --text DEST:CONTENT     a file with this content (\\n escapes); mode 755 if it starts with #!
  --symlink DEST:TARGET, --dir DEST[:MODE]
  --group LINE, --passwd LINE   lines added to /etc/group and /etc/passwd
  --env K=V, --entrypoint JSON, --cmd JSON, --user USER, --workdir DIR
  --variant NAME=USER     one more image in the same archive: the same layer, run as USER

Deterministic: fixed times, sorted entries, so the same inputs give the same digests.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

MTIME = 946684800  # 2000-01-01
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def ldd(path):
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)\s*\(", line)
        if m:
            libs.append(m.group(1))
    return libs


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


class Layer:
    """The files of the one layer, by path: (kind, data or link target, mode)."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p and p not in self.entries:
                self.entries[p] = ("dir", None, mode if i == len(parts) else 0o755)

    def parent(self, path):
        d = os.path.dirname(path.strip("/"))
        if d:
            self.dir(d)

    def file(self, path, data, mode):
        self.parent(path)
        self.entries[path.strip("/")] = ("file", data, mode)

    def symlink(self, path, target):
        self.parent(path)
        self.entries[path.strip("/")] = ("sym", target, 0o777)

    def host_file(self, src, dest=None, mode=None):
        real = os.path.realpath(src)
        with open(real, "rb") as f:
            data = f.read()
        self.file(dest or src, data, mode if mode is not None else os.stat(real).st_mode & 0o7777)

    def host_elf(self, src, dest=None):
        self.host_file(src, dest)
        real = os.path.realpath(src)
        if is_elf(real):
            for lib in ldd(real):
                if lib.strip("/") not in self.entries:
                    self.host_file(lib)

    def tree(self, src, dest):
        for root, dirs, files in os.walk(src):
            d = os.path.normpath(os.path.join(dest, os.path.relpath(root, src)))
            self.dir(d)
            for name in files + [x for x in dirs if os.path.islink(os.path.join(root, x))]:
                s, t = os.path.join(root, name), os.path.join(d, name)
                if os.path.islink(s):
                    self.symlink(t, os.readlink(s))
                elif is_elf(s):
                    self.host_elf(s, t)
                else:
                    self.host_file(s, t)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(self.entries):
                kind, data, mode = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime, ti.mode = MTIME, mode
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif kind == "sym":
                    ti.type, ti.linkname = tarfile.SYMTYPE, data
                    tf.addfile(ti)
                else:
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def compact(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_layer(args):
    layer = Layer()
    for d in ["bin", "dev", "etc", "proc", "sys", "var", "var/run", "root", "run"]:
        layer.dir(d)
    layer.dir("tmp", 0o1777)
    if not args.no_busybox:
        layer.host_file(args.busybox, "bin/busybox")
        applets = subprocess.run([args.busybox, "--list"], check=True, capture_output=True, text=True)
        for a in sorted(set(applets.stdout.split())):
            if a != "busybox" and "/" not in a:
                layer.symlink("bin/" + a, "busybox")
    passwd = ["root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/:/bin/false", *args.passwd]
    group = ["root:x:0:", "nobody:x:65534:", *args.group]
    layer.file("etc/passwd", ("\n".join(passwd) + "\n").encode(), 0o644)
    layer.file("etc/group", ("\n".join(group) + "\n").encode(), 0o644)
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
    for spec in args.dir:
        path, _, mode = spec.partition(":")
        layer.dir(path, int(mode, 8) if mode else 0o755)
    for spec in args.bin:
        src, _, dest = spec.partition(":")
        layer.host_elf(src, dest or None)
    for path in args.lib:
        layer.host_elf(path)
    for spec in args.tree:
        src, dest = spec.split(":", 1)
        layer.tree(src, dest)
    for spec in args.file:
        parts = spec.split(":")
        layer.host_file(parts[0], parts[1], int(parts[2], 8) if len(parts) > 2 else None)
    for spec in args.text:
        dest, content = spec.split(":", 1)
        data = content.encode().decode("unicode_escape").encode()
        layer.file(dest, data, 0o755 if data.startswith(b"#!") else 0o644)
    for spec in args.symlink:
        dest, target = spec.split(":", 1)
        layer.symlink(dest, target)
    return layer.tar()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="full image reference, e.g. localhost/e2e/busybox:1")
    ap.add_argument("--out", required=True, help="the OCI archive to write (.tar)")
    ap.add_argument("--busybox", default="/bin/busybox", help="a static busybox")
    ap.add_argument("--no-busybox", action="store_true")
    for repeated in ("bin", "lib", "tree", "file", "text", "symlink", "dir", "env", "group", "passwd"):
        ap.add_argument("--" + repeated, action="append", default=[])
    ap.add_argument("--entrypoint", help="JSON list")
    ap.add_argument("--cmd", default='["/bin/sh"]', help="JSON list")
    ap.add_argument("--user")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=USER",
        help="one more image in the archive: the same layer, run as USER",
    )
    ap.add_argument("--workdir", default="/")
    args = ap.parse_args()

    layer_digest, layer = blob(build_layer(args))
    blobs = [(layer_digest, layer)]
    manifests = []
    variants = [(args.name, args.user)] + [tuple(v.split("=", 1)) for v in args.variant]
    for name, user in variants:
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env]
        config = {"Env": env, "Cmd": json.loads(args.cmd), "WorkingDir": args.workdir}
        if args.entrypoint:
            config["Entrypoint"] = json.loads(args.entrypoint)
        if user:
            config["User"] = user
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "scripts/node/mkimage.py", "created": "2000-01-01T00:00:00Z"}],
            "created": "2000-01-01T00:00:00Z",
        }
        config_digest, config_bytes = blob(compact(image_config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
        }
        manifest_digest, manifest_bytes = blob(compact(manifest))
        blobs += [(config_digest, config_bytes), (manifest_digest, manifest_bytes)]
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }
        )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", compact(index))]
    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as out:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
            out.addfile(ti, io.BytesIO(data))
        for d in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mtime, ti.mode = tarfile.DIRTYPE, MTIME, 0o755
            out.addfile(ti)
        for digest, data in blobs:
            ti = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
            ti.size, ti.mtime, ti.mode = len(data), MTIME, 0o644
            out.addfile(ti, io.BytesIO(data))
    print(f"{', '.join(n for n, _ in variants)}: {len(layer)} bytes -> {args.out}")


if __name__ == "__main__":
    main()

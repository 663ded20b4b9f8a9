"""The reference stack's container image, built locally without a registry or a Dockerfile.

The image is only a root filesystem with the host's statically linked busybox (a shell,
`wget` for the HEALTHCHECK, `sleep`, ...). Python is not in it: the services run the host's
interpreter and virtualenv, bind-mounted read-only at the same paths (`python_mounts`), so
the image stays ~2 MB, builds in well under a second and never goes stale when the code
changes. The tag carries a hash of the image's content, so a rebuild is only ever needed when
busybox or this recipe changes, and `ensure_image` is idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound

__all__ = [
    "IMAGE_KIND_LABEL",
    "IMAGE_REPOSITORY",
    "OWNER",
    "OWNER_LABEL",
    "BindMount",
    "ImageError",
    "build_rootfs",
    "busybox_path",
    "ensure_image",
    "image_tag",
    "library_mounts",
    "owned_images",
    "python_mounts",
    "remove_image",
]

IMAGE_REPOSITORY = "afo-refstack-base"
# Every Docker object the reference stack creates carries OWNER_LABEL=OWNER, so that cleanup
# can select exactly ours and never touch anything else on the engine.
OWNER_LABEL = "io.afo-runbook.owner"
OWNER = "afo-refstack"
IMAGE_KIND_LABEL = "io.afo-runbook.image"
RECIPE_VERSION = "1"  # bump when the rootfs layout below changes

# Applets the services and checks use (the HEALTHCHECK's wget, a shell for debugging with
# `docker exec`, and what a crash-loop test command needs).
APPLETS = (
    "sh", "wget", "cat", "sleep", "ls", "echo", "env", "ps", "grep", "true", "false",
    "id", "kill", "head", "tail", "test", "mkdir", "rm", "wc", "pwd", "hostname", "nc",
)  # fmt: skip
_ETC_USERS = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class ImageError(RuntimeError):
    """The image cannot be built, found or removed; the message says why."""


# ----------------------------------------------------------------------------- rootfs


def busybox_path() -> Path:
    """The host's busybox, which must be statically linked (the image has no libc of its own
    for it: the host's libraries are mounted for Python only)."""
    for candidate in (os.environ.get("AFO_BUSYBOX"), "/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if _is_dynamic_elf(path):
                raise ImageError(f"{path} is dynamically linked; install busybox-static")
            return path
    raise ImageError("no busybox found (apt-get install busybox-static, or set AFO_BUSYBOX)")


def _is_dynamic_elf(path: Path) -> bool:
    """True if the ELF file asks for a program interpreter (PT_INTERP), i.e. is dynamic."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # only 64-bit ELF is expected here
        return False
    little = data[5] == 1
    order = "little" if little else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for index in range(phnum):
        start = phoff + index * phentsize
        if int.from_bytes(data[start : start + 4], order) == 3:  # PT_INTERP
            return True
    return False


def _add(tf: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"",
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0  # fixed metadata: the same inputs give the same bytes, hence the same tag
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        info.linkname = link
        tf.addfile(info)


def build_rootfs(busybox: Path | None = None) -> bytes:
    """The image's root filesystem as an uncompressed tar, byte-for-byte reproducible."""
    binary = (busybox or busybox_path()).read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for directory in ("bin", "dev", "etc", "proc", "sys", "usr", "usr/lib", "usr/lib64",
                          "root", "run"):
            _add(tf, directory, tarfile.DIRTYPE, 0o755)
        _add(tf, "tmp", tarfile.DIRTYPE, 0o1777)
        _add(tf, "bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for applet in APPLETS:
            _add(tf, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        # The host's interpreter asks for /lib64/ld-linux-*.so.2 and its libraries live
        # under /usr/lib (merged /usr): these links make the mounted /usr/lib* visible there.
        _add(tf, "lib", tarfile.SYMTYPE, 0o777, link="usr/lib")
        _add(tf, "lib64", tarfile.SYMTYPE, 0o777, link="usr/lib64")
        _add(tf, "etc/passwd", tarfile.REGTYPE, 0o644, _ETC_USERS.encode())
        _add(tf, "etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
        _add(tf, "etc/hosts", tarfile.REGTYPE, 0o644, _HOSTS.encode())
    return buf.getvalue()


def _changes(content_hash: str) -> list[str]:
    return [
        "ENV PATH=/bin",
        'CMD ["/bin/sh"]',
        f"LABEL {OWNER_LABEL}={OWNER}",
        f"LABEL {IMAGE_KIND_LABEL}=base",
        f"LABEL io.afo-runbook.content-hash={content_hash}",
    ]


def image_tag(rootfs: bytes) -> str:
    """`afo-refstack-base:<hash>`: the hash covers the rootfs and the image recipe."""
    digest = hashlib.sha256(rootfs)
    digest.update(RECIPE_VERSION.encode())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:16]}"


# ----------------------------------------------------------------------------- the image


def ensure_image(client: docker.DockerClient) -> str:
    """Tag of the base image, importing it first if the engine does not have it yet.

    Serialised across processes on this host (pytest-xdist workers, parallel CLI runs):
    two concurrent imports would leave an untagged duplicate behind.
    """
    from filelock import FileLock

    rootfs = build_rootfs()
    tag = image_tag(rootfs)
    lock = Path(tempfile.gettempdir()) / f"afo-refstack-image-{tag.rsplit(':', 1)[1]}.lock"
    with FileLock(str(lock), timeout=60):
        if _owned_image(client, tag) is not None:
            return tag
        try:
            client.api.import_image_from_data(
                rootfs,
                repository=IMAGE_REPOSITORY,
                tag=tag.rsplit(":", 1)[1],
                changes=_changes(tag.rsplit(":", 1)[1]),
            )
        except APIError as exc:
            raise ImageError(f"cannot import {tag}: {exc.explanation or exc}") from None
        if _owned_image(client, tag) is None:
            raise ImageError(f"imported {tag}, but the engine does not show it")
    return tag


def _owned_image(client: docker.DockerClient, tag: str) -> dict[str, Any] | None:
    """The image's inspect data if `tag` exists and is ours; an alien image of that name is
    an error, never reused nor removed."""
    try:
        attrs = client.api.inspect_image(tag)
    except (ImageNotFound, NotFound):
        return None
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(OWNER_LABEL) != OWNER:
        raise ImageError(f"{tag} exists but is not ours (no {OWNER_LABEL}={OWNER} label)")
    return attrs


def owned_images(client: docker.DockerClient) -> list[str]:
    """Tags of every base image we built (any content hash)."""
    tags: list[str] = []
    for image in client.api.images(filters={"label": f"{OWNER_LABEL}={OWNER}"}):
        tags += [t for t in image.get("RepoTags") or [] if t.startswith(IMAGE_REPOSITORY + ":")]
    return sorted(tags)


def remove_image(client: docker.DockerClient, tag: str) -> bool:
    """Remove our image `tag`. False if it is gone already or still used by a container
    (never forced: a container of someone else's run may still need it)."""
    try:
        if _owned_image(client, tag) is None:
            return False
        client.api.remove_image(tag, force=False, noprune=False)
    except (ImageNotFound, NotFound):
        return False
    except APIError as exc:
        if exc.status_code == 409:  # in use by a container
            return False
        raise ImageError(f"cannot remove {tag}: {exc.explanation or exc}") from None
    return True


# ----------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class BindMount:
    """A host path bind-mounted at the same path inside the container."""

    path: str
    read_only: bool = True

    def volume_spec(self) -> dict[str, str]:
        return {"bind": self.path, "mode": "ro" if self.read_only else "rw"}


def library_mounts() -> list[str]:
    """The host library directories the interpreter and the venv's extensions load from.

    `ldd` of the pyenv interpreter, of its lib-dynload modules and of the venv's compiled
    extensions (pydantic_core, yaml, markupsafe, charset_normalizer) resolves everything to
    /lib/<multiarch> = /usr/lib/<multiarch>, plus the loader /lib64/ld-linux-*.so.2, a link
    in /usr/lib64. glibc's built-in search path covers the multiarch directory, so no
    /etc/ld.so.cache is needed. Other hosts: /usr/lib whole when there is no multiarch dir.
    """
    lib = Path("/lib")
    if lib.exists() and not (lib.is_symlink() and lib.resolve() == Path("/usr/lib")):
        raise ImageError("the host has no merged /usr (/lib is not a link to /usr/lib); "
                         "the image's lib -> usr/lib layout needs one")
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    arch_dir = Path("/usr/lib") / multiarch if multiarch else Path("/usr/lib")
    found = [str(arch_dir if arch_dir.is_dir() else Path("/usr/lib"))]
    if Path("/usr/lib64").is_dir():
        found.append("/usr/lib64")
    return found


def python_mounts(python: str | None = None) -> list[BindMount]:
    """What the services need from the host, read-only, at the same paths: the libraries,
    the interpreter and the venv of `python` (default: this one) and the package's source
    tree (an editable install maps `afo_runbook` there). Nested paths fold into their parent.
    """
    spec = find_spec("afo_runbook")
    if spec is None or not spec.submodule_search_locations:
        raise ImageError("cannot locate the afo_runbook package")
    package_dir = Path(next(iter(spec.submodule_search_locations))).resolve()
    prefix, base_prefix = interpreter_prefixes(python or sys.executable)
    paths = [*library_mounts(), base_prefix, prefix, str(package_dir)]
    resolved = sorted({str(Path(p).resolve()) for p in paths} | {str(Path(p)) for p in paths})
    kept: list[str] = []
    for path in resolved:
        if not any(Path(path).is_relative_to(parent) for parent in kept):
            kept.append(path)
    return [BindMount(path) for path in kept]


@functools.cache
def interpreter_prefixes(python: str) -> tuple[str, str]:
    """(sys.prefix, sys.base_prefix) of another interpreter: its venv and its installation."""
    if not Path(python).exists() or Path(python).resolve() == Path(sys.executable).resolve():
        # (a missing interpreter still gets a container, which then fails with its log)
        return sys.prefix, sys.base_prefix
    try:
        answer = subprocess.run([python, "-c", "import sys; print(sys.prefix); "
                                 "print(sys.base_prefix)"], capture_output=True, text=True,
                                timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageError(f"cannot ask {python} for its prefixes: {exc}") from None
    prefix, base_prefix = answer.stdout.split()
    return prefix, base_prefix

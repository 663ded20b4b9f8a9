"""The local base image: reproducible rootfs, ours by label, reused, and enough to run the
services with the host's interpreter mounted (checked against `ldd`)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from afo_runbook.refstack.image import (
    IMAGE_REPOSITORY,
    OWNER,
    OWNER_LABEL,
    ImageError,
    build_rootfs,
    ensure_image,
    image_tag,
    python_mounts,
    remove_image,
)

pytestmark = pytest.mark.timeout(60)


def test_rootfs_is_reproducible_and_has_what_the_services_need(static_busybox: Path) -> None:
    rootfs = build_rootfs()
    assert rootfs == build_rootfs()  # same bytes, same tag: reuse instead of rebuilding
    with tarfile.open(fileobj=io.BytesIO(rootfs)) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["bin/busybox"].isfile()
    for applet in ("sh", "wget", "cat", "sleep", "ls"):
        assert members[f"bin/{applet}"].issym()
        assert members[f"bin/{applet}"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777
    assert members["lib"].linkname == "usr/lib"
    assert members["lib64"].linkname == "usr/lib64"
    for directory in ("proc", "sys", "dev", "etc"):
        assert members[directory].isdir()
    assert "etc/passwd" in members
    assert image_tag(rootfs).startswith(f"{IMAGE_REPOSITORY}:")


def test_the_image_is_ours_and_reused(docker_client: docker.DockerClient,
                                      base_image: str) -> None:
    attrs = docker_client.api.inspect_image(base_image)
    assert attrs["Config"]["Labels"][OWNER_LABEL] == OWNER
    assert attrs["Size"] < 5 * 1024 * 1024
    began = time.monotonic()
    assert ensure_image(docker_client) == base_image
    assert time.monotonic() - began < 2
    assert docker_client.api.inspect_image(base_image)["Id"] == attrs["Id"]  # not rebuilt


def test_busybox_applets_run_in_the_image(docker_client: docker.DockerClient,
                                          make_container: Callable[..., str]) -> None:
    container = make_container(["/bin/sh", "-c", "ls /bin/wget && cat /etc/passwd && "
                                "test -d /tmp && echo image-ok"])
    assert docker_client.api.wait(container, timeout=20)["StatusCode"] == 0
    assert b"image-ok" in docker_client.api.logs(container)


def test_remove_image_only_removes_an_unused_image_of_ours(
    docker_client: docker.DockerClient, session_labels: dict[str, str], static_busybox: Path,
) -> None:
    tag = f"{IMAGE_REPOSITORY}:test-{time.time_ns()}"
    repository, name = tag.rsplit(":", 1)
    docker_client.api.import_image_from_data(
        build_rootfs(), repository=repository, tag=name,
        changes=[f"LABEL {OWNER_LABEL}={OWNER}"])
    user = None
    try:
        user = docker_client.api.create_container(tag, ["/bin/true"], labels=session_labels)
        assert remove_image(docker_client, tag) is False  # in use: never forced
        docker_client.api.remove_container(user["Id"], force=True)
        assert remove_image(docker_client, tag) is True
        assert remove_image(docker_client, tag) is False  # gone already
    finally:
        if user is not None:
            with suppress(NotFound):
                docker_client.api.remove_container(user["Id"], force=True)
        if docker_client.api.images(name=tag):
            docker_client.api.remove_image(tag, force=True)


def test_an_alien_image_under_our_name_is_refused(docker_client: docker.DockerClient,
                                                  static_busybox: Path) -> None:
    tag = f"{IMAGE_REPOSITORY}:alien-{time.time_ns()}"
    repository, name = tag.rsplit(":", 1)
    docker_client.api.import_image_from_data(build_rootfs(), repository=repository, tag=name)
    try:
        with pytest.raises(ImageError, match="not ours"):
            remove_image(docker_client, tag)
        assert docker_client.api.images(name=tag)
    finally:
        docker_client.api.remove_image(tag, force=True)


def test_mounts_are_read_only_and_cover_the_interpreter_and_venv() -> None:
    mounts = python_mounts()
    paths = [Path(m.path) for m in mounts]
    assert all(m.read_only for m in mounts)
    for needed in (sys.base_prefix, sys.prefix, sys.executable, Path(sys.executable).resolve()):
        assert any(Path(needed).is_relative_to(p) for p in paths), needed
    assert Path("/") not in paths
    assert Path("/usr") not in paths
    assert Path("/etc") not in paths


def _ldd_libraries(binary: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    found: set[Path] = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.add(Path(parts[2]))
        elif parts and parts[0].startswith("/"):  # the loader itself
            found.add(Path(parts[0]))
    return found


@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd on this host")
def test_every_library_ldd_resolves_is_inside_a_mount() -> None:
    """The minimal mount set is enough: every shared library the interpreter, the stdlib's
    and the venv's compiled modules load resolves (after links) inside a mounted dir."""
    binaries = [Path(sys.executable).resolve()]
    binaries += sorted(Path(sysconfig.get_path("platstdlib"), "lib-dynload").glob("*.so"))
    binaries += sorted(Path(sys.prefix).rglob("*.so"))
    mounts = [Path(m.path) for m in python_mounts()]
    outside: set[str] = set()
    for binary in binaries:
        for library in _ldd_libraries(binary):
            # The path as the container sees it: through lib -> usr/lib, lib64 -> usr/lib64.
            seen = Path("/usr" + str(library)) if str(library).startswith(("/lib/", "/lib64/")) \
                else library
            real = library.resolve()
            if not any(seen.is_relative_to(m) for m in mounts) or not any(
                    real.is_relative_to(m) for m in mounts):
                outside.add(f"{binary.name}: {library}")
    assert not outside, sorted(outside)

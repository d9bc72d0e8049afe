"""A second Docker engine for the tests, in a network namespace of its own (shared by the BuildKit
and compile tests): started, reached on a unix socket, stopped and removed by its context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def own_network_namespace(name: str) -> Iterator[list[str]]:
    """A network namespace of the test's own, routed out through the host (NAT).

    A second dockerd must not share this host's network namespace: without a bridge of its
    own it deletes the host engine's docker0 (moby removes the default bridge interface
    when started with --bridge=none), and with one it would rewrite the host's iptables.
    In its own namespace it has its own docker0 and iptables, and reaches the package
    mirrors through a veth pair and the host's NAT, as the builds need.
    """
    host_if, ns_if, subnet = f"{name[:10]}-h", f"{name[:10]}-n", "10.231.7.0/30"
    rules = [
        ["-t", "nat", "POSTROUTING", "-s", subnet, "-j", "MASQUERADE"],
        ["FORWARD", "-i", host_if, "-j", "ACCEPT"],
        ["FORWARD", "-o", host_if, "-j", "ACCEPT"],
    ]

    def rule(action: str, spec: list[str]) -> list[str]:
        table = spec[:2] if spec[0] == "-t" else []
        rest = spec[2:] if table else spec
        return ["iptables", *table, action, *rest]

    # nsenter switches only the network namespace (`ip netns exec` also remounts /sys,
    # hiding the cgroup mounts dockerd needs).
    inside = ["nsenter", f"--net=/var/run/netns/{name}"]
    added: list[list[str]] = []
    _sh("ip", "netns", "add", name)
    try:
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh("ip", "link", "set", ns_if, "netns", name)
        _sh("ip", "addr", "add", "10.231.7.1/30", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        _sh(*inside, "ip", "addr", "add", "10.231.7.2/30", "dev", ns_if)
        _sh(*inside, "ip", "link", "set", ns_if, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        _sh(*inside, "ip", "route", "add", "default", "via", "10.231.7.1")
        for spec in rules:
            _sh(*rule("-I", spec))
            added.append(spec)
        yield inside
    finally:
        for spec in added:
            subprocess.run(rule("-D", spec), capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@contextlib.contextmanager
def second_engine(root: Path) -> Iterator[str]:
    """A second dockerd, in a network namespace of its own, serving a unix socket in ``root``."""
    socket = root / "docker.sock"
    with (
        own_network_namespace(f"rpb{os.getpid() % 100000}") as inside,
        (root / "dockerd.log").open("w") as log,
    ):
        process = subprocess.Popen(
            [
                *inside,
                "dockerd",
                f"--host=unix://{socket}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        host = f"unix://{socket}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ping = subprocess.run(["docker", "-H", host, "info"], capture_output=True, check=False)
                if ping.returncode == 0:
                    break
                assert process.poll() is None, (root / "dockerd.log").read_text()
                time.sleep(1)
            else:
                pytest.fail("the second dockerd did not start:\n" + (root / "dockerd.log").read_text())
            yield host
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def second_engine_context(name: str) -> Iterator[tuple[str, str]]:
    """A second engine (second_engine) and a docker context naming it, as `--builder NAME`
    reaches it: yields (engine address, context name); both gone afterwards."""
    root = Path("/var/tmp") / f"rpibuild-{name}-{os.getpid()}"  # short: unix socket paths are limited
    root.mkdir(parents=True)
    context = f"rpibuild-test-{name}-{os.getpid()}"
    try:
        with second_engine(root) as host:
            subprocess.run(
                ["docker", "context", "create", context, "--docker", f"host={host}"],
                check=True,
                capture_output=True,
            )
            yield host, context
    finally:
        subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)

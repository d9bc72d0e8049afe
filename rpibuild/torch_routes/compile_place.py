"""Where the torch compile runs: on the engine behind the selected builder, with how many jobs,
and which distcc helpers share it.

The compile is hours of CPU; a user who selects a build server with ``--builder`` wants it
there, not on the laptop that started the build. The engine behind the builder (a docker
context over ssh:// or tcp://, or a buildx node's engine) runs the compile container; on any
engine but this host's own, its build folder and ccache are named volumes on that engine
(``debian_compile``), since host folders cannot be mounted across machines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.engine import Engine
from rpibuild.errors import ConfigError

DISTCC_HOSTS_ENV = "RPIBUILD_DISTCC_HOSTS"
# distcc's own default job limit for a host without /LIMIT (its man page: "/LIMIT ... default 4").
DISTCC_DEFAULT_LIMIT = 4
DISTCC_DEFAULT_PORT = 3632


@dataclass(frozen=True)
class DistccHelper:
    """One distcc helper: a distccd (rpibuild's distcc-helper image) the compile may send jobs to."""

    host: str
    port: int
    limit: int

    @classmethod
    def parse(cls, text: str) -> DistccHelper:
        grammar.distcc_host(text)
        hostport, _, limit = text.partition("/")
        host, _, port = hostport.partition(":")
        return cls(host, int(port or DISTCC_DEFAULT_PORT), int(limit or DISTCC_DEFAULT_LIMIT))

    @property
    def spec(self) -> str:
        """The entry in distcc's DISTCC_HOSTS."""
        return f"{self.host}:{self.port}/{self.limit}"


def distcc_helpers(profile: Profile, env: dict[str, str] | None = None) -> tuple[DistccHelper, ...]:
    """The profile's ``torch.distcc_hosts``, or ``RPIBUILD_DISTCC_HOSTS`` (space-separated)
    when set; an entry that is not ``HOST[:PORT][/LIMIT]`` is a usage error (exit 2)."""
    environ = os.environ if env is None else env
    given = environ.get(DISTCC_HOSTS_ENV)
    entries = given.split() if given is not None else list(profile.torch.distcc_hosts)
    helpers = []
    for entry in entries:
        try:
            helpers.append(DistccHelper.parse(entry))
        except ValueError as exc:
            where = DISTCC_HOSTS_ENV if given is not None else "torch.distcc_hosts"
            raise ConfigError(f"{entry!r} {exc}", field=where) from None
    return tuple(helpers)


@dataclass(frozen=True)
class CompilePlace:
    """The engine the compile runs on and what it runs with."""

    engine: Engine
    cpus: int
    jobs: int
    helpers: tuple[DistccHelper, ...] = ()

    @property
    def host_folders(self) -> bool:
        """Build folder and ccache in this host's folders (this host's engine), else in named
        volumes on the compile's engine."""
        return self.engine.is_local

    def describe(self) -> str:
        """One line for doctor and the progress line: where, how many jobs, with whom."""
        where = "this host's engine" if self.engine.is_local else f"the engine at {self.engine.address}"
        text = f"{where} ({self.cpus} CPUs), {self.jobs} jobs"
        if self.helpers:
            names = ", ".join(h.spec for h in self.helpers)
            text += f", distcc helpers: {names}"
        return text


def compile_place(engine: Engine, profile: Profile, *, env: dict[str, str] | None = None) -> CompilePlace:
    """Where ``engine``'s builder has the compile run; jobs: ``torch.max_jobs``, else the
    engine's CPUs plus every helper's job limit (distcc's slots)."""
    target = engine.compile_engine()
    helpers = distcc_helpers(profile, env)
    cpus = target.cpus()
    jobs = profile.torch.max_jobs or cpus + sum(helper.limit for helper in helpers)
    return CompilePlace(target, cpus, jobs, helpers)


def bring_image(source: Engine, place: CompilePlace, image: str, on_line: Callable[[str], None]) -> None:
    """Make sure ``image`` (built on ``source``) is on the compile's engine: a docker-container
    builder loads its result into this host's engine, not into its node's."""
    target = place.engine
    if target is source or target.address == source.address or target.image(image) is not None:
        return
    on_line(f"compile: copying the torch-source image to {target.address}")
    target.load_stream(source.save_image(image))
    if target.image(image) is None:
        from rpibuild.errors import EngineError

        raise EngineError(f"the torch-source image did not arrive on {target.address}")

"""The build plan: what a build of a profile will do, computed once, before anything runs.

From the validated profile and the host's facts: the stages in order and where each runs,
the bases it needs, the torch route, the pinned sources, the BuildKit secrets (by name),
the cache keys, the tags and the labels. ``rpibuild plan`` prints it; the build, doctor and
artifacts read it instead of asking the profile the same questions again, and tests assert
on it without an engine. A plain value: frozen dataclasses, ``as_dict()`` for ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpibuild.build import base
from rpibuild.config.model import Profile
from rpibuild.engine.buildx import Builder
from rpibuild.planning import naming, render
from rpibuild.planning.bases import Bases, plan_bases
from rpibuild.planning.stages import TORCH_BUILD_STAGES, StagePlan, plan_stages
from rpibuild.redact import mask_urls
from rpibuild.torch_routes import route_of
from rpibuild.torch_routes.debian import StoredWheel, stored_wheel

# Where a keyed route's wheel comes from (Plan.torch_wheel_from).
STORE = "store"  # rpibuild's cache on this host
REGISTRY = "registry"  # torch.wheel_store: registry, and the registry has it
COMPILE = "compile"  # nowhere: the build compiles it
REGISTRY_OR_COMPILE = "registry or compile"  # the registry not asked (rpibuild.build.wheel_share)


@dataclass(frozen=True)
class BasePlan:
    """A base image the build starts FROM."""

    role: str  # "target" (build stages), "runtime" or "build platform"
    reference: str
    platform: str
    how: str  # "bootstrap" (mmdebstrap or debootstrap, content-keyed tag) or "pull"
    key: str  # the bootstrap's content key ("" for a pulled image)


@dataclass(frozen=True)
class SourcePlan:
    """Something fetched from outside the build context, and how it is pinned."""

    name: str
    origin: str
    pin: str


@dataclass(frozen=True)
class Plan:
    profile: str
    platform: str
    stages: StagePlan
    bases: tuple[BasePlan, ...]
    sources: tuple[SourcePlan, ...]
    secrets: tuple[str, ...]  # BuildKit secret ids (never their contents)
    keys: dict[str, str]
    torch_wheel: StoredWheel | None  # torch.source debian: the stored wheel the build reuses
    tags: tuple[str, ...]
    # The profiles whose bases the build starts from (packages folded in): base.ensure_base takes them.
    base_profiles: Bases
    labels: dict[str, str] = field(default_factory=dict)
    # The builder's facts; None when the plan was made without asking the engine.
    builder: Builder | None = None
    builder_unknown: str = ""  # why the builder was not asked, when it was not
    # A keyed route's wheel: STORE, REGISTRY, COMPILE or REGISTRY_OR_COMPILE ("" for other
    # routes, and for a build that stops at a compile stage); with torch.wheel_store: registry,
    # the artifact's reference and what the registry said.
    torch_wheel_from: str = ""
    torch_wheel_remote: str = ""
    torch_wheel_note: str = ""

    @property
    def torch_key(self) -> str:
        return self.keys.get("torch wheel", "")

    def as_dict(self) -> dict[str, object]:
        plan = self.stages
        return {
            "profile": self.profile,
            "platform": self.platform,
            "cross": plan.cross,
            "build_platform": plan.build_platform,
            "torch": {
                "route": plan.route.name,
                "installed_natively": plan.torch_installed_natively,
                "compiled_on": plan.route.compiled_on or None,
                "stored_wheel": str(self.torch_wheel.wheel) if self.torch_wheel else None,
                "wheel_from": self.torch_wheel_from or None,
                "wheel_registry": self.torch_wheel_remote or None,
                "wheel_note": self.torch_wheel_note or None,
            },
            "stages": [
                {"name": s.name, "platform": s.platform, "emulated": s.emulated, "place": s.place}
                for s in plan.stages
            ],
            "verify_cpu": plan.verify_cpu,
            "builder": self.builder.as_dict() if self.builder else None,
            "bases": [vars(b) for b in self.bases],
            "sources": [vars(s) for s in self.sources],
            "secrets": list(self.secrets),
            "keys": self.keys,
            "tags": list(self.tags),
            "labels": self.labels,
        }

    def lines(self) -> list[str]:
        """The plan for a person to read."""
        plan = self.stages
        route = plan.route
        torch = route.name
        if route.compiled_on:
            torch += f", compiled on the {route.compiled_on}"
        if plan.torch_installed_natively:
            torch += ", installed by the build platform's pip"
        torch += self._wheel_words()
        out = [
            f"profile   {self.profile} ({self.platform})",
            "build     "
            + (f"cross: C++ compiled on {plan.build_platform}" if plan.cross else "everything on the target"),
            f"torch     {torch}",
            "builder   " + self._builder_line(),
            "stages",
            *(f"  {s.name:<16} {s.place}" for s in plan.stages),
            f"verify    as {plan.verify_cpu or 'the host CPU'}",
            "bases",
            *(f"  {b.role:<16} {b.reference} ({b.how}, {b.platform})" for b in self.bases),
            "sources",
            *(f"  {s.name:<16} {s.origin} ({s.pin})" for s in self.sources),
            "secrets   " + (", ".join(self.secrets) or "none"),
            "keys",
            *(f"  {name:<20} {value}" for name, value in self.keys.items()),
            "tags",
            *(f"  {tag}" for tag in self.tags),
            "labels",
            *(f"  {name}={value}" for name, value in self.labels.items()),
        ]
        return out

    def _wheel_words(self) -> str:
        """Where the wheel comes from, for the plan's torch line."""
        remote, note = self.torch_wheel_remote, self.torch_wheel_note
        if self.torch_wheel is not None:
            return f", stored wheel {self.torch_wheel.wheel}"
        if self.torch_wheel_from == REGISTRY:
            return f", wheel fetched from the registry: {remote} ({note})"
        if self.torch_wheel_from == COMPILE and remote:
            return f", wheel compiled by the build (stored neither here nor at {remote})"
        if self.torch_wheel_from == COMPILE:
            return ", wheel compiled by the build (not stored here)"
        if self.torch_wheel_from == REGISTRY_OR_COMPILE:
            words = f", wheel fetched from {remote or 'the registry'} if it is there, else compiled"
            return words + (f"; {note}" if note else "")
        return ""

    def _builder_line(self) -> str:
        builder = self.builder
        if builder is None:
            return f"not asked ({self.builder_unknown or 'no engine'}): target stages assumed under QEMU"
        native = ", ".join(builder.native_platforms) or "none known"
        return f"{builder.name} (driver {builder.driver}), native: {native}"


def make_plan(
    profile: Profile,
    *,
    target: str | None = None,
    builder: Builder | None = None,
    builder_unknown: str = "",
) -> Plan:
    """Plan a build of ``profile`` (stopping at ``target``, a stage name, when given) on
    ``builder`` (whose native platforms decide which stages run under QEMU).

    A build that stops at one of torch's compile stages neither reuses a stored wheel nor
    compiles one; any other looks the wheel up in the store by its key.
    """
    native = builder.native_platforms if builder else ()
    unstored = plan_stages(profile, native=native)
    torch_key = render.torch_wheel_key(profile, unstored)
    reuses = bool(torch_key) and target not in TORCH_BUILD_STAGES
    wheel = stored_wheel(torch_key) if reuses else None
    stages = plan_stages(profile, torch_stored=True, native=native) if wheel is not None else unstored
    wheel_from = ""
    if reuses:
        shared = profile.torch.wheel_store == "registry"
        wheel_from = STORE if wheel is not None else REGISTRY_OR_COMPILE if shared else COMPILE
    wheel_packages = stages.route.debian_packages(profile, wheel.wheel if wheel else None)
    base_profiles = plan_bases(profile, stages, wheel_packages)
    bases = [_base(role, base_profile) for role, base_profile in base_profiles.roles()]
    keys = {f"base {b.role}": b.key for b in bases if b.key}
    if torch_key:
        keys["torch wheel"] = torch_key
    return Plan(
        profile=profile.name,
        platform=profile.platform,
        stages=stages,
        bases=tuple(bases),
        sources=_sources(profile),
        secrets=tuple(render.secrets(profile)),
        keys=keys,
        torch_wheel=wheel,
        tags=naming.image_tags(profile),
        labels=naming.image_labels(profile),
        builder=builder,
        builder_unknown=builder_unknown,
        base_profiles=base_profiles,
        torch_wheel_from=wheel_from,
    )


def render_planned(
    profile: Profile, plan: Plan, *, base_ref: str | None = None, qpulib_src: Path | None = None
) -> render.Rendered:
    """The Dockerfile and context the plan describes: its stages, its wheel key, its stored wheel
    (rendering asks the profile nothing the plan has decided)."""
    return render.render(
        profile,
        base_ref=base_ref,
        qpulib_src=qpulib_src,
        stored_torch=plan.torch_wheel.wheel if plan.torch_wheel else None,
        torch_key=plan.torch_key,
        stage_plan=plan.stages,
        bases=plan.base_profiles,
    )


def _base(role: str, profile: Profile) -> BasePlan:
    pulled = profile.base.image is not None
    return BasePlan(
        role=role,
        reference=base.base_reference(profile),
        platform=profile.platform,
        how="pull" if pulled else "bootstrap",
        key="" if pulled else base.base_key(profile)[:16],
    )


def _sources(profile: Profile) -> tuple[SourcePlan, ...]:
    out = []
    origin = route_of(profile.torch.source).origin(profile.torch)
    if origin is not None:
        where, pin = origin
        out.append(SourcePlan("torch", mask_urls(where), pin))
    qpulib = profile.qpulib
    if qpulib.enabled and qpulib.path:
        out.append(SourcePlan("qpulib", str(Path(qpulib.path)), "local tree, not pinned"))
    elif qpulib.enabled:
        url = mask_urls(qpulib.url.format(commit=qpulib.commit))
        out.append(SourcePlan("qpulib", url, f"tree sha256 {qpulib.tree_sha256 or 'not pinned'}"))
    return tuple(out)

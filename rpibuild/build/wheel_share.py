"""``torch.wheel_store: registry`` in a build: a wheel compiled once per team, not once per host.

A build that has no stored wheel for its key asks the profile's registry (the artifact of
rpibuild.publish.wheel_artifact, tagged with the key) before it compiles; a wheel found there is
pulled, every byte checked, into the local store, and the build goes on as with any stored
wheel. After a build that passed, a wheel the registry lacks (compiled now, or stored before
the setting was on) is pushed there for the next host.

The failures are not symmetric, on purpose. Before the compile a registry that has no such
artifact means "compile", as without the setting; one that cannot be asked (unreachable,
refused login, TLS) or serves a wheel that does not match its record stops the build with
exit 6 and the fix, rather than starting hours of compiling that the registry was there to
save. After the build, a failed push is a warning: the wheel is in the local store, the image
is built, and the next build pushes it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rpibuild.build.sources import cache_dir
from rpibuild.config.model import Profile
from rpibuild.engine import BuildEvent, StageTiming
from rpibuild.errors import BuildError, RegistryError
from rpibuild.planning.plan import COMPILE, REGISTRY, REGISTRY_OR_COMPILE, Plan
from rpibuild.planning.stages import plan_stages
from rpibuild.publish import wheel_artifact
from rpibuild.publish.errors import DigestMismatch
from rpibuild.torch_routes.debian import StoredWheel, store, store_dir

FETCH_STAGE = "torch-fetch"
PUSH_STAGE = "torch-push"


@dataclass(frozen=True)
class Shared:
    """The wheel's artifact in the registry, as the build left it."""

    reference: str
    digest: str = ""
    pushed: bool = False  # pushed by this build (False: it was there already, or the push failed)
    error: str = ""  # why the push failed (a warning: the wheel is stored locally)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def shared(profile: Profile) -> bool:
    return profile.torch.wheel_store == "registry"


def resolve(profile: Profile, plan: Plan) -> Plan:
    """The plan with the registry asked where it says "registry or compile": whether the build
    will fetch the wheel or compile it. A registry that cannot be asked is said, not raised
    (``rpibuild plan`` and ``doctor`` describe; the build decides)."""
    if plan.torch_wheel_from != REGISTRY_OR_COMPILE:
        return plan
    where = wheel_artifact.location(profile, plan.torch_key)
    try:
        remote = wheel_artifact.find(where, retries=0)
    except RegistryError as exc:
        what = (
            "its artifact is refused"
            if isinstance(exc, DigestMismatch)
            else "the registry could not be asked"
        )
        note = f"{what}, a build stops there (exit 6): {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        return replace(plan, torch_wheel_remote=where.reference, torch_wheel_note=note)
    if remote is None:
        return replace(plan, torch_wheel_from=COMPILE, torch_wheel_remote=where.reference)
    # The build fetches it, so its stages are those of a stored wheel: no compile stages.
    native = plan.builder.native_platforms if plan.builder else ()
    return replace(
        plan,
        stages=plan_stages(profile, torch_stored=True, native=native),
        torch_wheel_from=REGISTRY,
        torch_wheel_remote=where.reference,
        torch_wheel_note=f"sha256 {remote.sha256}",
    )


def fetch(
    profile: Profile, key: str, announce: Callable[[BuildEvent], None]
) -> tuple[StoredWheel | None, Shared | None, StageTiming | None]:
    """Pull the wheel of ``key`` into the local store if the registry has it.

    Returns (stored wheel, its artifact, the fetch's timing); (None, None, None) when the
    profile does not share wheels, (None, None, timing) when the registry has no such wheel.
    Raises a RegistryError (exit 6) when the registry cannot be asked or the artifact does not
    match its record; nothing is stored then.
    """
    if not shared(profile):
        return None, None, None
    started = time.monotonic()
    where = wheel_artifact.location(profile, key)
    announce(BuildEvent(FETCH_STAGE, 1, 2, f"look up {where.reference}", True))
    remote = wheel_artifact.find(where)
    if remote is None:
        announce(BuildEvent(FETCH_STAGE, 2, 2, f"not in the registry: compiling (key {key})", True))
        timing = StageTiming(FETCH_STAGE, time.monotonic() - started, steps=1)
        announce(BuildEvent(FETCH_STAGE, 0, 0, "", False, finished=timing))
        return None, None, timing
    size = remote.wheel["size"]
    announce(BuildEvent(FETCH_STAGE, 2, 2, f"pull {remote.wheel_name} ({size} bytes, sha256 checked)", True))
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Beside the store (same file system); the temporary folder takes a failed pull with it.
    with tempfile.TemporaryDirectory(prefix="rpibuild-fetch-", dir=cache_dir()) as tmp:
        pulled = wheel_artifact.pull(remote, Path(tmp) / "out")
        try:
            stored = store(key, profile.torch.version, pulled)
        except (OSError, FileNotFoundError) as exc:
            message = f"the fetched torch wheel could not be stored in {store_dir()}: {exc}"
            raise BuildError(message, stage=FETCH_STAGE) from None
    if stored.sha256 != remote.sha256:  # the store copied it: a disk that changes bytes
        shutil.rmtree(stored.wheel.parent, ignore_errors=True)
        raise DigestMismatch(f"the stored copy of {remote.wheel_name} is not the wheel fetched; removed")
    timing = StageTiming(FETCH_STAGE, time.monotonic() - started, steps=1)
    announce(BuildEvent(FETCH_STAGE, 0, 0, "", False, finished=timing))
    return stored, Shared(where.reference, remote.digest), timing


def publish(
    profile: Profile, key: str, stored: StoredWheel, announce: Callable[[BuildEvent], None]
) -> tuple[Shared | None, StageTiming | None]:
    """Push the stored wheel of ``key`` unless the registry has one for the key already.

    A wheel already there stays (another host may have compiled the same key first; a compile
    is not bit-for-bit reproducible, and both are good). A failure is returned, not raised.
    """
    if not shared(profile):
        return None, None
    started = time.monotonic()
    where = wheel_artifact.location(profile, key)
    announce(BuildEvent(PUSH_STAGE, 1, 2, f"look up {where.reference}", True))
    try:
        remote = wheel_artifact.find(where)
        if remote is not None:
            announce(BuildEvent(PUSH_STAGE, 2, 2, "there already: left as it is", True))
            result = Shared(where.reference, remote.digest)
        else:
            announce(BuildEvent(PUSH_STAGE, 2, 2, f"push {stored.wheel.name} with its build record", True))
            record = wheel_artifact.record_of(
                key, profile.torch.version, profile.platform, stored.wheel, stored.runtime_packages
            )
            pushed = wheel_artifact.push(where, record, stored.wheel, stored.runtime_packages)
            result = Shared(where.reference, pushed.digest, pushed=True)
    except RegistryError as exc:
        fix = f" ({exc.hint})" if exc.hint else ""
        result = Shared(where.reference, error=f"{exc.message}{fix}")
    timing = StageTiming(PUSH_STAGE, time.monotonic() - started, steps=1)
    announce(BuildEvent(PUSH_STAGE, 0, 0, "", False, finished=timing))
    return result, timing

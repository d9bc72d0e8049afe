"""``rpibuild push``."""

from __future__ import annotations

import click

from rpibuild.cli.options import (
    emit_json,
    json_option,
    manifest_name,
    profiles_option,
    push_options,
    registry_host,
    registry_namespace,
)


@click.command()
@profiles_option("Profile whose image to push (repeat with --manifest) [default: pi3b-arm64].")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a profile field, e.g. --set registry.namespace=team (repeatable).",
)
@json_option
@click.option(
    "--registry",
    metavar="HOST[:PORT]",
    callback=registry_host,
    help="Registry [default: the profile's registry.url].",
)
@click.option(
    "--namespace",
    callback=registry_namespace,
    help="Namespace in the registry [default: registry.namespace].",
)
@click.option(
    "--insecure", is_flag=True, default=None, help="Plain HTTP registry [default: registry.insecure]."
)
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="PEM of a private CA.")
@click.option(
    "--manifest",
    metavar="NAME:TAG",
    callback=manifest_name,
    help="Push one multi-platform tag: each profile as NAME:TAG-<platform>, then a manifest list.",
)
@push_options("")
def push(
    profiles: tuple[str, ...],
    overrides: tuple[str, ...],
    as_json: bool,
    registry: str | None,
    namespace: str | None,
    insecure: bool | None,
    ca_cert: str | None,
    manifest: str | None,
    sbom: bool,
    retries: int,
) -> None:
    """Push every tag of the profile's image to its registry, verified.

    Tags are pushed as REGISTRY/NAMESPACE/REPO:TAG (a namespace replaces the first part of
    image.repository). Transient failures are retried with backoff; afterwards the manifest is
    read back from the registry and its digest and platform compared with the local image.
    Temporary tags are removed, success or not. Log in first: `rpibuild login`. Each pushed
    image gets its SBOM attached (tag sha256-<hex>.sbom; `oras discover` lists it).

    With --manifest NAME:TAG and several -p (e.g. armv7 and arm64), one tag serves every
    platform: a Pi pulls the image of its own architecture.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.engine import DockerEngine
    from rpibuild.errors import ConfigError
    from rpibuild.planning.naming import image_tags
    from rpibuild.publish.registry import push_manifest_list, push_profile
    from rpibuild.publish.release import attach_sboms
    from rpibuild.publish.target import target_for

    loaded = [load_profile(p, overrides).profile for p in profiles or (None,)]
    if len(loaded) > 1 and not manifest:
        raise ConfigError("several profiles need --manifest NAME:TAG", field="--profile")
    target = target_for(loaded[0], url=registry, namespace=namespace, insecure=insecure, ca_cert=ca_cert)
    engine = DockerEngine.connect()
    with console.status(f"pushing to {target.host}") as update:

        def progress(line: str) -> None:
            update(line)
            if "retry" in line:
                console.warn(line)

        if manifest:
            listed, members = push_manifest_list(
                engine, loaded, manifest, target, retries=retries, on_progress=progress
            )
            if sbom:
                groups = [(p, image_tags(p)[0], [m]) for p, m in zip(loaded, members, strict=True)]
                members = attach_sboms(engine, target, groups)
            pushed = [*members]
            results: list[dict[str, object]] = [
                {
                    "reference": listed.reference,
                    "digest": listed.digest,
                    "platform": [m.platform_name for m in members],
                },
                *(m.as_dict() for m in members),
            ]
        else:
            pushed = []
            for prof in loaded:
                done = push_profile(engine, prof, target, retries=retries, on_progress=progress)
                pushed += attach_sboms(engine, target, [(prof, image_tags(prof)[0], done)]) if sbom else done
            results = [p.as_dict() for p in pushed]
    if as_json:
        emit_json(results)
        return
    for item in pushed:
        console.info(f"[green]pushed[/green] {item.reference} ({item.platform_name})")
        click.echo(f"{item.reference}@{item.digest}")
    if manifest:
        head = results[0]
        console.info(f"[green]manifest list[/green] {head['reference']}: {head['platform']}")
        click.echo(f"{head['reference']}@{head['digest']}")

"""``rpibuild login``."""

from __future__ import annotations

import sys

import click

from rpibuild.cli.options import profile_options, registry_host


@click.command()
@profile_options
@click.argument("registry", required=False, metavar="[REGISTRY]", callback=registry_host)
@click.option("-u", "--username", help="User name [default: the profile's registry.username].")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (else registry.password_env / registry.password).",
)
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="The registry speaks plain HTTP (else the profile's registry.insecure).",
)
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="PEM of a private CA.")
def login(
    profile: str | None,
    overrides: tuple[str, ...],
    registry: str | None,
    username: str | None,
    password_stdin: bool,
    insecure: bool | None,
    ca_cert: str | None,
) -> None:
    """Log in to REGISTRY (host[:port]; default: the profile's registry.url).

    rpibuild checks that the registry is reachable and speaks TLS as configured, then hands
    the credentials to `docker login --password-stdin`, which checks them through the engine
    and stores them in docker's own store: $DOCKER_CONFIG/config.json (default ~/.docker) or
    the credential helper it names; never in rpibuild's files or logs. There is no password
    option, so a password never shows up in the process list or shell history.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.errors import RegistryError
    from rpibuild.publish.errors import RegistryAuthError
    from rpibuild.publish.registry import login
    from rpibuild.publish.target import profile_password, target_for

    loaded = load_profile(profile, overrides) if (profile or overrides or not registry) else None
    prof = loaded.profile if loaded else None
    target = target_for(prof, url=registry, insecure=insecure, ca_cert=ca_cert)
    user = username or (prof.registry.username if prof else None)
    if not user:
        raise RegistryAuthError("no user name", hint="pass -u USER or set registry.username")
    password = sys.stdin.read().rstrip("\r\n") if password_stdin else profile_password(prof) or ""
    if not password:
        raise RegistryAuthError(
            "no password",
            hint="pipe it to --password-stdin, or name an environment variable in registry.password_env",
        )
    try:
        where = login(target, user, password)
    except RegistryError as exc:
        # Belt and braces: no message may carry the password, whoever built it.
        exc.message = exc.message.replace(password, "***")
        raise
    console.info(
        f"[green]login succeeded[/green] for {console.escape(user)} at {console.escape(target.host)} "
        f"(stored in {console.escape(where)})"
    )

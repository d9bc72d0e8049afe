"""``rpibuild config show|validate|list|schema``."""

from __future__ import annotations

import click

from rpibuild.cli.options import emit_json, json_option, profile_options


@click.group()
def config() -> None:
    """Inspect and validate build profiles (configs/*.yaml)."""


@config.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List the profiles shipped in configs/."""
    from rpibuild.config import DEFAULT_PROFILE, available_profiles

    names = available_profiles()
    if as_json:
        emit_json(names)
        return
    for name in names:
        click.echo(name + ("  (default)" if name == DEFAULT_PROFILE else ""))


@config.command()
@profile_options
@json_option
def show(profile: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the fully merged profile (parents, --set and ${ENV} applied; secrets masked)."""
    import yaml

    from rpibuild.config import load_profile
    from rpibuild.redact import mask_data

    loaded = load_profile(profile, overrides)
    data = mask_data(loaded.profile.model_dump(mode="json"))
    if as_json:
        emit_json(data)
    else:
        click.echo(f"# {loaded.path}" + "".join(f"\n#   extends {p}" for p in loaded.chain[1:]))
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@config.command()
@profile_options
def validate(profile: str | None, overrides: tuple[str, ...]) -> None:
    """Validate a profile; exit 2 with file, line and field if it is wrong.

    Checks everything render and build would: the schema, the files it names (wheel, CA
    bundle is PEM, keyring, source trees) and the image tags filled in.
    """
    from rpibuild import console
    from rpibuild.config import load_profile
    from rpibuild.config.checks import check_buildable

    loaded = load_profile(profile, overrides)
    check_buildable(loaded)
    prof = loaded.profile
    console.info(f"[green]ok[/green] {console.escape(loaded.path)} ({prof.name}, {prof.platform})")


@config.command()
def schema() -> None:
    """Print the JSON Schema of a profile file (the same as docs/profile.schema.json).

    Point your editor's YAML language server at it, e.g. a first line
    `# yaml-language-server: $schema=../docs/profile.schema.json` in a profile. It checks
    field names and types as you type; `rpibuild config validate` checks everything.
    """
    from rpibuild.config.schema import schema_text

    click.echo(schema_text(), nl=False)

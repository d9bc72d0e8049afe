"""Masking credentials in URLs and making control characters visible, wherever text is shown."""

from __future__ import annotations

import pytest

from rpibuild import console
from rpibuild.redact import mask_data, mask_urls, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://bob:hunter2@proxy:3128", "http://***@proxy:3128"),
        ("https://token@github.com/x.git", "https://***@github.com/x.git"),
        ("pip: https://u:p%40ss@idx.example/simple ok", "pip: https://***@idx.example/simple ok"),
        ("careless http://u:p@ss@host/x", "careless http://***@host/x"),
        ("socks5h://u:p@h:1080 and git+ssh://git:k@h/r", "socks5h://***@h:1080 and git+ssh://***@h/r"),
        ("no credentials http://host/a@b", "no credentials http://host/a@b"),
        ("mail bob@example.com", "mail bob@example.com"),
    ],
)
def test_mask_urls(text: str, shown: str) -> None:
    assert mask_urls(text) == shown


def test_printable_and_mask_data() -> None:
    assert printable("a\nb\x1b[2J\u2028c") == "a\\u000ab\\u001b[2J\\u2028c"
    data = {"a": ["http://u:p@h/x", 3], "b": {"c": "https://t@h"}}
    assert mask_data(data) == {"a": ["http://***@h/x", 3], "b": {"c": "https://***@h"}}


def test_console_escape_makes_markup_text(capsys) -> None:
    console.info(f"[green]ok[/green] {console.escape('[/red] http://u:p@h/ [bold]')}")
    err = capsys.readouterr().err
    assert "[/red] http://***@h/ [bold]" in err


def test_a_remembered_password_is_masked_even_without_its_url() -> None:
    from rpibuild.redact import remember_credentials

    remember_credentials("https://ci:Pa55-w0rd-x@mirror.example/x")
    remember_credentials("https://ghp0123456789abcdefTOKEN@github.example/r.git")
    remember_credentials("https://user@host.example/")  # a plain user name: not a secret
    text = "InvalidURL: nonnumeric port: 'Pa55-w0rd-x@mirror.example' ghp0123456789abcdefTOKEN"
    assert mask_urls(text) == "InvalidURL: nonnumeric port: '***@mirror.example' ***"
    assert mask_urls("the user said") == "the user said"

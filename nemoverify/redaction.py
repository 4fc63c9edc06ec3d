"""Credentials never reach any output: messages, reports, errors, whatever a library put in them."""

from __future__ import annotations

import os
import re

SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
)
# A SAS signature or an account key inside a URL or a connection string, whatever its encoding or
# parameter order (a library may rebuild the query string it was given). The patterns here are
# compiled by the first text that could hold what they match (re's cache): most runs redact nothing.
_SECRET_PARAMETERS = r"(?i)\b(sig=|AccountKey=|SharedAccessSignature=)[^&;\s'\"]+"


# A URL's userinfo (`https://user:secret@host`) and the values of its query (`?token=...`), wherever
# a URL appears in a message: an endpoint URL carries credentials that no variable name announces.
# A URL runs to what ends one in text, JSON or XML (whitespace, quotes, a backslash, <, >). Its
# userinfo runs to its last @: people write passwords with @, / or ? unescaped, and a library
# quotes them back as given. Without a ':' before that @ (user:password), an @ after a / is the
# path's (s3://bucket/model@v2, https://host:9000/x?by=a@b), not userinfo.
_URL = r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<token>[^\s'\"<>\\]*)"
_HOST_PORT = r"[^:/?#@]*:\d+(?:[/?#]|$)"  # host:9000/...: the @ further on is not userinfo's
_QUERY_VALUE = r"(?P<key>[?&;](?:[^=&;#]*=)?)[^&;#]+"


def _redact_url(match: re.Match[str]) -> str:
    token = match["token"]
    at = token.rfind("@")
    before = token[:at]
    userinfo = at >= 0 and (
        not re.search(r"[/?#]", before) or (":" in before and not re.match(_HOST_PORT, token))  # user:pa/ss@host
    )
    rest = token[at + 1 :] if userinfo else token
    path, mark, query = rest.partition("?")
    query = re.sub(_QUERY_VALUE, r"\g<key>***", mark + query) if mark else ""
    return f"{match['scheme']}{'***@' if userinfo else ''}{path}{query}"


# Where an endpoint is given with its credentials in it: their userinfo is redacted as given, whatever
# characters it holds (a space or a quote ends a URL in text, not a password).
ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "RUNAI_STREAMER_S3_ENDPOINT",
    "STORAGE_EMULATOR_HOST",
    "CLOUD_STORAGE_EMULATOR_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


def _userinfo(value: str) -> str | None:
    """The userinfo of an endpoint as written: up to its last @ (a scheme before it or not)."""
    rest = value.split("://", 1)[-1]
    at = rest.rfind("@")
    return rest[:at] if at > 0 else None


def redact(text: str) -> str:
    """Credentials never reach output, reports or errors, whatever a library put in its message: the
    values of the variables that hold them, the userinfo of the endpoints given in variables, SAS
    signatures and account keys, and in every URL its userinfo and its query values."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
            if name == "AZURE_STORAGE_SAS_TOKEN" and value.startswith("?"):
                text = text.replace(value[1:], "***")
    for name in ENDPOINT_VARIABLES:
        userinfo = _userinfo(os.environ.get(name) or "")
        if userinfo:
            text = text.replace(userinfo + "@", "***@")
    text = re.sub(_URL, _redact_url, text) if "://" in text else text
    return re.sub(_SECRET_PARAMETERS, r"\1***", text) if "=" in text else text  # each secret parameter has its =

"""Redaction of store locations and command lines: credentials never reach a store, a sidecar or a message."""
from __future__ import annotations

import pytest

from smoothcert.store.locations import REDACTED, redact

CASES = [
    # user information: user and password both go, with the last '@' before the path as the delimiter
    ("s3://KEYID:SECRET@bucket/x.zarr", "s3://bucket/x.zarr"),
    ("s3://user@bucket/x.zarr", "s3://bucket/x.zarr"),
    ("s3://k:p@ss@bucket/x.zarr", "s3://bucket/x.zarr"),
    ("https://u:p@host:9000/a/b.zarr", "https://host:9000/a/b.zarr"),
    ("ftp://u:p%40ss@host", "ftp://host"),
    ("https://u:pa ss@host/x", "https://host/x"),                       # a raw space: removed all the same
    # query strings: credential-like values replaced, other parameters kept, fragment kept
    ("https://host/x.zarr?X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2F1&versionId=7#f",
     f"https://host/x.zarr?X-Amz-Signature={REDACTED}&X-Amz-Credential={REDACTED}&versionId=7#f"),
    ("https://host/x?token=t0k&region=eu", f"https://host/x?token={REDACTED}&region=eu"),
    ("az://c/x?sv=2020&sig=zzz&api_key=k&X-Amz-Security-Token=s",
     f"az://c/x?sv=2020&sig={REDACTED}&api_key={REDACTED}&X-Amz-Security-Token={REDACTED}"),
    ("https://u:p@host/my folder/x.zarr?token=t", f"https://host/my folder/x.zarr?token={REDACTED}"),
    ("http://h/x?email=a@b", "http://h/x?email=a@b"),
    # no credentials: unchanged
    ("s3://bucket/x.zarr", "s3://bucket/x.zarr"),
    ("s3://bucket", "s3://bucket"),
    ("file:///data/x.zarr", "file:///data/x.zarr"),
    # local paths, with spaces, '@', ':' and '?' in them: unchanged
    ("/home/me/my stores/run@2/x:y.zarr", "/home/me/my stores/run@2/x:y.zarr"),
    ("relative/dir with space/s.zip", "relative/dir with space/s.zip"),
    ("weird?token=x.zarr", "weird?token=x.zarr"),
    ("C:\\Users\\me\\s.zarr", "C:\\Users\\me\\s.zarr"),
    # a command line: every URL in it, and nothing else
    ("smoothcert certify s3://KEYID:SECRET@bucket/x.zarr --method cohen --out s3://u:p@b/o.csv",
     "smoothcert certify s3://bucket/x.zarr --method cohen --out s3://b/o.csv"),
    ("smoothcert certify 'https://h/x.zarr?token=abc' --theta=0.5 --out /tmp/a@b.csv",
     f"smoothcert certify 'https://h/x.zarr?token={REDACTED}' --theta=0.5 --out /tmp/a@b.csv"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_redact_removes_user_information_and_credential_query_values_only(text, expected):
    assert redact(text) == expected
    assert redact(expected) == expected                                  # idempotent


def test_redact_leaves_no_secret_of_any_case():
    secrets = ("SECRET", "p@ss", "abc123", "t0k", "zzz", "KEYID")
    for text, _ in CASES:
        out = redact(text)
        for s in secrets:
            if s in text and "://" in text:
                assert s not in out, (text, out)


def test_redact_takes_paths_and_other_objects():
    from pathlib import Path

    assert redact(Path("/tmp/x y/s.zarr")) == "/tmp/x y/s.zarr"
    assert redact("") == ""

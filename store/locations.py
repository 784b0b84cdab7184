"""Store locations as they may be shown or recorded: credentials removed (``redact``).

Every location or command line that smoothcert writes into a store (``merged_from``,
``compacted_from``, a merge's data check), a sidecar (``store``, ``command``),
a calibration file or a message goes through :func:`redact` first. It is the
only redaction in the package.

What is removed, in every ``scheme://`` URL found anywhere in the text:

- the user information: everything between ``://`` and the **last** ``@``
  before the first ``/``, ``?`` or ``#`` that follows it, i.e. ``user@``,
  ``user:password@``, and a password that itself holds a raw ``@``
  (``s3://k:p@ss@bucket/x`` gives ``s3://bucket/x``). The user name goes
  with the password: an access key id is half a credential. A raw space is
  not allowed in a URL; a user information that seems to hold one is removed
  all the same, up to that last ``@`` (a mangled record rather than a leaked
  password);
- the values of query parameters whose names look like credentials
  (case-insensitive, the name contains ``token``, ``sig``, ``secret``,
  ``passw``, ``pwd``, ``key``, ``credential`` or ``auth``: ``?token=``,
  ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
  Azure's ``sig``, ``api_key``, ...): the value becomes ``REDACTED``, the
  name stays, so the record still says that the URL was signed. Such a
  ``?NAME=`` or ``&NAME=`` is redacted anywhere after the first ``://`` of
  the text (a URL whose path holds a space is still covered); a value ends
  at ``&``, ``#``, a quote or whitespace. Other parameters (``versionId``,
  ``region``, ...) are kept.

Host, port, path and fragment are kept. Text that is not a URL, local paths
included (with spaces, ``@`` or ``:`` in them), comes back unchanged.
"""
from __future__ import annotations

import re

REDACTED = "REDACTED"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_AUTHORITY_END = re.compile(r"[/?#]")
_PARAM = re.compile(r"([?&])([^=&#\s'\"]*)=([^&#\s'\"]*)")
_SECRET_NAME = re.compile(r"token|sig|secret|passw|pwd|key|credential|auth", re.IGNORECASE)


def _param(m) -> str:
    sep, name, value = m.groups()
    return f"{sep}{name}={REDACTED}" if value and _SECRET_NAME.search(name) else m.group(0)


def redact(text) -> str:
    """``text`` (a location, a command line, any string) with the credentials of every URL in it removed.

    See the module docstring for exactly what is removed. ``redact`` is
    idempotent, and the identity on text without ``scheme://``.
    """
    s = str(text)
    first = _SCHEME.search(s)
    if first is None:
        return s
    out, pos = [], 0
    m = first
    while m is not None:                           # user information of every URL
        out.append(s[pos:m.end()])
        pos = m.end()
        end = _AUTHORITY_END.search(s, pos)
        at = s.rfind("@", pos, len(s) if end is None else end.start())
        if at >= 0:
            pos = at + 1                            # drop user[:password]@
        m = _SCHEME.search(s, pos)
    out.append(s[pos:])
    s = "".join(out)
    head = first.end()
    return s[:head] + _PARAM.sub(_param, s[head:])  # credential-like query values, from the first URL on

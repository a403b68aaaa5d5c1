"""Schemathesis hooks for .ci/schemathesis (loaded through `hooks` in schemathesis.toml).

`POST /v1/webhook/register` makes the simulator deliver events to the registered URL, so a
generated URL would have it try hosts anywhere on the internet (public addresses, multicast).
Before such a request is sent, a `url` the document accepts is replaced by this daemon's own
receiver (`RESPOOL_ST_RECEIVER`): the body stays valid, the run stays on loopback. A `url` the
document refuses is left alone, so the negative cases still test the pattern. The URL pattern
itself is held to `url::Url::parse` by the Rust property tests in `src/api/params.rs`.
"""

from __future__ import annotations

import os
import re

import schemathesis

RECEIVER = os.environ.get("RESPOOL_ST_RECEIVER", "")
_PATTERN: re.Pattern[str] | None = None


def _url_pattern(case) -> re.Pattern[str]:
    global _PATTERN
    if _PATTERN is None:
        raw = case.operation.schema.raw_schema
        pattern = raw["components"]["schemas"]["RegisterRequest"]["properties"]["url"]["pattern"]
        _PATTERN = re.compile(pattern)
    return _PATTERN


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not RECEIVER or case.method.upper() != "POST" or case.path != "/v1/webhook/register":
        return
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        return
    # fullmatch: Python's `$` also matches before a final newline, which the server refuses.
    if _url_pattern(case).fullmatch(body["url"]):
        body["url"] = RECEIVER

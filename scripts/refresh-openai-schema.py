#!/usr/bin/env python3
"""Refresh respool's copy of OpenAI's contract for `POST /responses`.

respool validates the pass-through part of every job against the request body schema of
`POST /responses` (`#/components/schemas/CreateResponse`) from OpenAI's published OpenAPI
document (https://github.com/openai/openai-openapi). This script takes that document, keeps
only `CreateResponse` and every schema it reaches through `$ref`, and writes them with where
they came from to `src/contract/openai-create-response.json`:

    {"source": {"repository", "commit", "date", "openapi_version", "info_version"},
     "components": {"schemas": {...}}}

so that `$ref: "#/components/schemas/X"` resolves unchanged. The output is deterministic
(sorted keys, two-space indent, UTF-8, a final newline): the same document gives the same
bytes, and a refresh's diff shows only what OpenAI changed.

Usage (python3, standard library only):

    # the newest document on openai-openapi's default branch (asks GitHub for the commit)
    scripts/refresh-openai-schema.py

    # a given commit
    scripts/refresh-openai-schema.py --commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3

    # a local copy (a clone, or a download): say which commit and date it is
    scripts/refresh-openai-schema.py openapi.json \\
        --commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3 --date 2026-08-21

    # check that the vendored file is what the document gives (exit 1 if not)
    scripts/refresh-openai-schema.py openapi.json --commit ... --date ... --check

Then run `cargo test --lib contract::` and the tests of the jobs you care about: a field OpenAI
changed may make an existing job invalid, which is what the refresh is for.
"""

import argparse
import json
import os
import sys
import urllib.request

REPOSITORY = "https://github.com/openai/openai-openapi"
RAW_URL = "https://raw.githubusercontent.com/openai/openai-openapi/{ref}/openapi.json"
COMMIT_API = "https://api.github.com/repos/openai/openai-openapi/commits/{ref}"
ROOT = "CreateResponse"
PREFIX = "#/components/schemas/"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    os.pardir,
    "src",
    "contract",
    "openai-create-response.json",
)


def fetch(url):
    request = urllib.request.Request(url, headers={"User-Agent": "respool-refresh-openai-schema"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def load(source):
    if source.startswith(("http://", "https://")):
        return json.loads(fetch(source))
    with open(source, encoding="utf-8") as f:
        return json.load(f)


def commit_info(ref):
    """The full SHA and the committer date (YYYY-MM-DD) of `ref` in openai-openapi."""
    info = json.loads(fetch(COMMIT_API.format(ref=ref)))
    return info["sha"], info["commit"]["committer"]["date"][:10]


def refs(node):
    """Every `$ref` string in a JSON value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def schema_name(ref):
    if not ref.startswith(PREFIX):
        raise SystemExit(f"unsupported $ref {ref!r}: only {PREFIX}NAME is handled")
    name = ref[len(PREFIX):].split("/", 1)[0]
    return name.replace("~1", "/").replace("~0", "~")


def closure(schemas, root):
    """`root` and every schema it reaches through `$ref`, by name."""
    seen = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise SystemExit(f"$ref to a schema the document does not have: {name}")
        seen[name] = schemas[name]
        todo.extend(schema_name(r) for r in refs(schemas[name]))
    return seen


def render(document, commit, date):
    body = (
        document.get("paths", {})
        .get("/responses", {})
        .get("post", {})
        .get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
    )
    if body.get("$ref") != PREFIX + ROOT:
        raise SystemExit(
            f"POST /responses no longer takes {PREFIX}{ROOT} (it takes {body!r}): "
            "respool's validator needs a look before this refresh"
        )
    schemas = closure(document["components"]["schemas"], ROOT)
    out = {
        "source": {
            "repository": REPOSITORY,
            "commit": commit,
            "date": date,
            "openapi_version": document.get("openapi"),
            "info_version": document.get("info", {}).get("version"),
        },
        "components": {"schemas": schemas},
    }
    return json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source",
        nargs="?",
        help="a path or URL of OpenAI's openapi.json (default: the document at --commit, "
        "or on the default branch, of openai/openai-openapi)",
    )
    parser.add_argument("--commit", help="the openai-openapi commit the document is from")
    parser.add_argument("--date", help="that commit's date, YYYY-MM-DD")
    parser.add_argument("--out", default=DEFAULT_OUT, help="the file to write")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if --out differs from what the document gives",
    )
    args = parser.parse_args()

    commit, date = args.commit, args.date
    if args.source is None:
        if commit is None or date is None:
            # Pin the default branch to a commit first, so the document and its label agree.
            commit, date = commit_info(commit or "main")
        source = RAW_URL.format(ref=commit)
    else:
        source = args.source
        if commit is None or date is None:
            raise SystemExit("with a path or URL, give --commit and --date: the file says neither")

    text = render(load(source), commit, date)
    out = os.path.normpath(args.out)
    if args.check:
        try:
            with open(out, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{out} is not what {source} gives: run without --check to refresh it")
            return 1
        print(f"{out} is current ({commit[:7]}, {date})")
        return 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    count = len(json.loads(text)["components"]["schemas"])
    print(f"wrote {out}: {count} schemas from {commit[:7]} ({date})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

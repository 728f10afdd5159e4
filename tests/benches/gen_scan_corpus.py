#!/usr/bin/env python3
"""Generates a deterministic corpus for the credential-scanner benchmark (tests/benches/scan.sh).

The corpus (`OUT_DIR/tree`) looks like what the agent scans on a server: source trees (Python,
JavaScript, Go, Rust), configuration (YAML, JSON, INI, .env) and logs, spread over 20 shards
(`shard-00` … `shard-19`, so a tool too slow for the whole corpus can run on one shard, 5 %).
Secrets are planted about one per 200 KB, each starting on its own line, and listed in
`OUT_DIR/manifest.jsonl` (outside the tree; `path` relative to the tree, `line`, `kind`,
`secret`; all values are random, none is live).

Usage: gen_scan_corpus.py OUT_DIR [--size-mb 512] [--seed 20261125]
The directory is reused when its `manifest.jsonl` records the same size and seed.
"""

import argparse
import json
import os
import random
import shutil
import string
import sys

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def rand(rng, n, alphabet=ALNUM):
    return "".join(rng.choice(alphabet) for _ in range(n))


def uuid4(rng):
    h = rand(rng, 32, HEX)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def b64url(rng, n):
    return rand(rng, n, ALNUM + "-_")


def planted_secret(rng, kind):
    """Returns (line, secret) for a planted credential of `kind`."""
    if kind == "aws_access_key_id":
        s = "AKIA" + rand(rng, 16, B32)
        return f"aws_access_key_id = {s}", s
    if kind == "aws_secret_access_key":
        s = rand(rng, 40, ALNUM + "+/")
        return f"aws_secret_access_key = {s}", s
    if kind == "github_token":
        s = "ghp_" + rand(rng, 36)
        return f'GITHUB_TOKEN="{s}"', s
    if kind == "slack_bot_token":
        s = f"xoxb-{rand(rng, 12, string.digits)}-{rand(rng, 13, string.digits)}-{rand(rng, 24)}"
        return f"SLACK_BOT_TOKEN={s}", s
    if kind == "stripe_live_key":
        s = "sk_live_" + rand(rng, 32)
        return f'stripe.api_key = "{s}"', s
    if kind == "railway_token":
        s = uuid4(rng)
        return f"RAILWAY_TOKEN={s}", s
    if kind == "postgres_url":
        pw = rand(rng, 18)
        s = f"postgres://app:{pw}@db-{rand(rng, 6, string.ascii_lowercase)}.internal:5432/rentals"
        return f"DATABASE_URL={s}", s
    if kind == "jwt":
        header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        s = f"{header}.eyJ{b64url(rng, 60)}.{b64url(rng, 43)}"
        return f"Authorization: Bearer {s}", s
    if kind == "password_assignment":
        s = rand(rng, 14) + rng.choice("!#%&*+") + rand(rng, 3, string.digits)
        return f'DB_PASSWORD="{s}"', s
    if kind == "private_key":
        body = "\n".join(rand(rng, 64, ALNUM + "+/") for _ in range(8))
        s = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
        return s, s
    raise ValueError(kind)


KINDS = [
    "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_bot_token", "stripe_live_key",
    "railway_token", "postgres_url", "jwt", "password_assignment", "private_key",
]

WORDS = ("booking customer invoice rental vehicle account payment schedule driver report amount "
         "status total price item order session cache queue worker handler request response "
         "config retry timeout limit offset record backup volume region tenant").split()


def ident(rng):
    return "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


def code_lines(rng, n):
    templates = [
        lambda: f"def {ident(rng)}({ident(rng)}, {ident(rng)}):",
        lambda: f"    return {ident(rng)}.{ident(rng)}({ident(rng)}) + {rng.randint(0, 999)}",
        lambda: f"    if {ident(rng)} is None or len({ident(rng)}) > {rng.randint(1, 64)}:",
        lambda: f"        raise ValueError(\"{ident(rng).replace('_', ' ')} is invalid\")",
        lambda: f"const {ident(rng)} = await fetch(`/api/{rng.choice(WORDS)}/${{id}}`);",
        lambda: f"function {ident(rng)}({ident(rng)}) {{ return {ident(rng)}.map((x) => x.{rng.choice(WORDS)}); }}",
        lambda: f"func {ident(rng).title().replace('_', '')}(ctx context.Context, {rng.choice(WORDS)} string) error {{",
        lambda: f"\tlog.Printf(\"{ident(rng).replace('_', ' ')}: %v\", err)",
        lambda: f"pub fn {ident(rng)}(&self, {ident(rng)}: u64) -> Result<{rng.choice(WORDS).title()}, Error> {{",
        lambda: f"    let {ident(rng)} = self.{ident(rng)}.get(&{ident(rng)}).ok_or(Error::NotFound)?;",
        lambda: f"# {ident(rng).replace('_', ' ')}: see the {rng.choice(WORDS)} module for details",
        lambda: "}",
        lambda: "",
        lambda: f"import {rng.choice(WORDS)}.{rng.choice(WORDS)} as {rng.choice(WORDS)}",
        lambda: f"    {ident(rng)} = {ident(rng)}.{ident(rng)}  # token of the {rng.choice(WORDS)}",
        lambda: f"    password_field = form.get(\"{rng.choice(WORDS)}\")",
    ]
    return [rng.choice(templates)() for _ in range(n)]


def config_lines(rng, n):
    templates = [
        lambda: f"{ident(rng)}: {rng.randint(0, 10000)}",
        lambda: f"  {ident(rng)}: \"{rng.choice(WORDS)}-{rng.randint(1, 99)}\"",
        lambda: f"{ident(rng).upper()}={rng.choice(WORDS)}",
        lambda: f"[{rng.choice(WORDS)}.{rng.choice(WORDS)}]",
        lambda: f"  \"{ident(rng)}\": {str(rng.random() < 0.5).lower()},",
        lambda: f"{ident(rng)} = https://{rng.choice(WORDS)}.internal:{rng.randint(1000, 9999)}/{rng.choice(WORDS)}",
        lambda: f"# {ident(rng).replace('_', ' ')}",
    ]
    return [rng.choice(templates)() for _ in range(n)]


def log_lines(rng, n):
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    out = []
    for i in range(n):
        out.append(
            f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z "
            f"{rng.choice(levels)} {rng.choice(WORDS)}.{rng.choice(WORDS)} request_id={rand(rng, 12, HEX)} "
            f"path=/api/{rng.choice(WORDS)}/{rng.randint(1, 99999)} status={rng.choice([200, 200, 201, 204, 404, 500])} "
            f"duration_ms={rng.randint(1, 2000)}"
        )
    return out


FILE_KINDS = [
    # (weight, pool, extensions, min KB, max KB)
    (70, "code", [".py", ".js", ".go", ".rs", ".ts"], 4, 96),
    (24, "config", [".yaml", ".json", ".ini", ".toml", ".env", ".conf"], 1, 24),
    (6, "log", [".log"], 512, 2048),
]


def generate(out, size_mb, seed):
    rng = random.Random(seed)
    pools = {"code": code_lines(rng, 40000), "config": config_lines(rng, 20000), "log": log_lines(rng, 60000)}
    target = size_mb * 1024 * 1024
    plant_every = 200 * 1024
    written = 0
    next_plant = rng.randint(1, plant_every)
    manifest = []
    file_index = 0
    weights = [k[0] for k in FILE_KINDS]
    while written < target:
        _, pool_name, exts, min_kb, max_kb = rng.choices(FILE_KINDS, weights)[0]
        ext = rng.choice(exts)
        shard = f"shard-{file_index % 20:02d}"
        subdir = os.path.join(shard, pool_name, rng.choice(WORDS), rng.choice(WORDS))
        name = f".{rng.choice(WORDS)}{ext}" if ext == ".env" else f"{ident(rng)}_{file_index}{ext}"
        relative = os.path.join(subdir, name)
        size = rng.randint(min_kb, max_kb) * 1024
        pool = pools[pool_name]
        lines = []
        file_bytes = 0
        line_no = 0
        while file_bytes < size:
            if written + file_bytes >= next_plant:
                kind = rng.choice(KINDS)
                text, secret = planted_secret(rng, kind)
                manifest.append({"path": relative, "line": line_no + 1, "kind": kind, "secret": secret})
                next_plant += plant_every
            else:
                text = rng.choice(pool)
            lines.append(text)
            line_no += text.count("\n") + 1
            file_bytes += len(text) + 1
        full = os.path.join(out, "tree", relative)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write("\n".join(lines))
            f.write("\n")
        written += file_bytes
        file_index += 1
    with open(os.path.join(out, "manifest.jsonl"), "w") as f:
        f.write(json.dumps({"size_mb": size_mb, "seed": seed, "files": file_index, "bytes": written}) + "\n")
        for entry in manifest:
            f.write(json.dumps(entry) + "\n")
    return file_index, written, len(manifest)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args()
    manifest_path = os.path.join(args.out, "manifest.jsonl")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            header = json.loads(f.readline())
        if header.get("size_mb") == args.size_mb and header.get("seed") == args.seed:
            print(f"reusing corpus {args.out}: {header['files']} files, {header['bytes'] / 1e6:.0f} MB", file=sys.stderr)
            return
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    files, written, planted = generate(args.out, args.size_mb, args.seed)
    print(f"generated corpus {args.out}: {files} files, {written / 1e6:.0f} MB, {planted} planted secrets", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Credential-scanner benchmark: our scanner (agent/examples/scan_bench.rs, `scan_paths`) against
# ripsecrets and detect-secrets on one generated corpus (tests/benches/gen_scan_corpus.py:
# source trees, configs and logs, >= 500 MB, deterministic seed, a manifest of planted secrets).
#
# Prints throughput of each tool, recall of the planted secrets (matched by path and line), and
# the ratios ours/ripsecrets and ours/detect-secrets. Then recall and precision of each tool on
# two labelled sets: our own tree (tests/fixtures/scan-corpus, scored per line) and
# noseyparker's labelled examples (tests/fixtures/secret-scanning, one file per example,
# scored per example as tests/tests/scan_corpus.rs does). Throughput is measured on a warm page
# cache (the corpus is read once before timing). detect-secrets is too slow for the whole
# corpus, so it runs on one shard (5 %) and its throughput is extrapolated from that; our
# scanner is also timed on that shard so the comparison is like for like.
#
# Usage: tests/benches/scan.sh [CORPUS_DIR]      (default /tmp/lifeboat-scan-corpus, reused)
# Env:   SCAN_CORPUS_MB (default 512), SCAN_THREADS (default 2), SKIP_RIPSECRETS=1,
#        SKIP_DETECT_SECRETS=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CORPUS="${1:-/tmp/lifeboat-scan-corpus}"
SIZE_MB="${SCAN_CORPUS_MB:-512}"
THREADS="${SCAN_THREADS:-2}"
TOOLS="$ROOT/target/bench-tools"
OUT="$ROOT/target/bench-scan"
mkdir -p "$TOOLS" "$OUT"

python3 "$ROOT/tests/benches/gen_scan_corpus.py" "$CORPUS" --size-mb "$SIZE_MB"
TREE="$CORPUS/tree"
SUBSET="$TREE/shard-00"

echo "== building scan_bench (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p lifeboat-agent --example scan_bench
BENCH="$ROOT/target/release/examples/scan_bench"

if [[ "${SKIP_RIPSECRETS:-0}" != 1 && ! -x "$TOOLS/bin/ripsecrets" ]]; then
    echo "== installing ripsecrets into $TOOLS" >&2
    cargo install ripsecrets --locked --root "$TOOLS" --quiet
fi
if [[ "${SKIP_DETECT_SECRETS:-0}" != 1 && ! -x "$TOOLS/venv/bin/detect-secrets" ]]; then
    echo "== installing detect-secrets into $TOOLS/venv" >&2
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet detect-secrets
fi

now() { date +%s.%N; }

echo "== warming the page cache" >&2
find "$TREE" -type f -exec cat {} + > /dev/null

echo "== lifeboat (best of 3, $THREADS threads)" >&2
: > "$OUT/lifeboat-runs.jsonl"
for _ in 1 2 3; do
    "$BENCH" --threads "$THREADS" --sightings-out "$OUT/lifeboat-sightings.jsonl" "$TREE" >> "$OUT/lifeboat-runs.jsonl"
done
: > "$OUT/lifeboat-subset-runs.jsonl"
for _ in 1 2 3; do
    "$BENCH" --threads "$THREADS" "$SUBSET" >> "$OUT/lifeboat-subset-runs.jsonl"
done

RIPSECRETS_SECONDS=""
if [[ "${SKIP_RIPSECRETS:-0}" != 1 ]]; then
    echo "== ripsecrets (whole corpus)" >&2
    start=$(now)
    "$TOOLS/bin/ripsecrets" "$TREE" > "$OUT/ripsecrets.txt" || true   # exits 1 when it finds secrets
    RIPSECRETS_SECONDS=$(echo "$(now) - $start" | bc)
fi

DETECT_SECONDS=""
if [[ "${SKIP_DETECT_SECRETS:-0}" != 1 ]]; then
    echo "== detect-secrets (subset: $(basename "$SUBSET"), about 5 % of the corpus)" >&2
    start=$(now)
    (cd "$TREE" && "$TOOLS/venv/bin/detect-secrets" scan --all-files "$(basename "$SUBSET")" > "$OUT/detect-secrets.json")
    DETECT_SECONDS=$(echo "$(now) - $start" | bc)
fi

python3 - "$CORPUS" "$OUT" "$RIPSECRETS_SECONDS" "$DETECT_SECONDS" <<'PY'
import json, os, sys

corpus, out, rip_seconds, detect_seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
tree = os.path.join(corpus, "tree")
with open(os.path.join(corpus, "manifest.jsonl")) as f:
    header = json.loads(f.readline())
    planted = [json.loads(line) for line in f]

def size_of(directory):
    total = 0
    for base, _, files in os.walk(directory):
        for name in files:
            total += os.path.getsize(os.path.join(base, name))
    return total

corpus_bytes = size_of(tree)
subset_bytes = size_of(os.path.join(tree, "shard-00"))

def recall(found, entries):
    """found: set of (relative path, line); a planted secret counts when a report falls on one
    of its lines (a PEM key spans several)."""
    hit = 0
    for entry in entries:
        lines = range(entry["line"], entry["line"] + entry["secret"].count("\n") + 1)
        if any((entry["path"], line) in found for line in lines):
            hit += 1
    return hit / len(entries) if entries else float("nan")

def best(path):
    with open(path) as f:
        runs = [json.loads(line) for line in f]
    return max(runs, key=lambda run: run["gb_per_s"])

ours = best(os.path.join(out, "lifeboat-runs.jsonl"))
ours_subset = best(os.path.join(out, "lifeboat-subset-runs.jsonl"))
with open(os.path.join(out, "lifeboat-sightings.jsonl")) as f:
    ours_found = set()
    for line in f:
        record = json.loads(line)
        ours_found.add((os.path.relpath(record["path"], tree), record["line"]))
subset_planted = [entry for entry in planted if entry["path"].startswith("shard-00/")]

print(f"corpus: {header['files']} files, {corpus_bytes / 1e6:.0f} MB, {len(planted)} planted secrets "
      f"(subset shard-00: {subset_bytes / 1e6:.1f} MB, {len(subset_planted)} planted)")
print(f"lifeboat       {ours['gb_per_s']:.3f} GB/s  ({ours['bytes'] / 1e6:.0f} MB in {ours['seconds']:.2f} s, "
      f"{ours['threads']} threads, {ours['sightings']} sightings)  recall {recall(ours_found, planted):.3f}")
print(f"lifeboat(5 %)  {ours_subset['gb_per_s']:.3f} GB/s on the subset")
ours_per_kind = {}
for entry in planted:
    kind = entry["kind"]
    lines = range(entry["line"], entry["line"] + entry["secret"].count("\n") + 1)
    found = any((entry["path"], line) in ours_found for line in lines)
    total, hits = ours_per_kind.get(kind, (0, 0))
    ours_per_kind[kind] = (total + 1, hits + int(found))
print("  lifeboat recall per planted kind: " + ", ".join(f"{k} {h}/{t}" for k, (t, h) in sorted(ours_per_kind.items())))

rip_gbps = None
if rip_seconds:
    rip_seconds = float(rip_seconds)
    rip_found = set()
    with open(os.path.join(out, "ripsecrets.txt"), errors="replace") as f:
        for line in f:
            parts = line.split(":", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                rip_found.add((os.path.relpath(parts[0], tree), int(parts[1])))
    rip_gbps = corpus_bytes / rip_seconds / 1e9
    print(f"ripsecrets     {rip_gbps:.3f} GB/s  ({corpus_bytes / 1e6:.0f} MB in {rip_seconds:.2f} s)  "
          f"recall {recall(rip_found, planted):.3f}")

detect_gbps = None
if detect_seconds:
    detect_seconds = float(detect_seconds)
    with open(os.path.join(out, "detect-secrets.json")) as f:
        results = json.load(f)["results"]
    detect_found = {(path, finding["line_number"]) for path, findings in results.items() for finding in findings}
    detect_gbps = subset_bytes / detect_seconds / 1e9
    print(f"detect-secrets {detect_gbps:.4f} GB/s  (subset {subset_bytes / 1e6:.1f} MB in {detect_seconds:.2f} s; "
          f"whole corpus extrapolated: {corpus_bytes / (detect_gbps * 1e9):.0f} s)  "
          f"recall on the subset {recall(detect_found, subset_planted):.3f}")

if rip_gbps:
    print(f"ratio lifeboat/ripsecrets     {ours['gb_per_s'] / rip_gbps:.1f}x")
if detect_gbps:
    print(f"ratio lifeboat/detect-secrets {ours_subset['gb_per_s'] / detect_gbps:.1f}x (same subset)")
PY

echo "== labelled sets: our tree and noseyparker's examples" >&2
LABELLED="$OUT/labelled"
rm -rf "$LABELLED" && mkdir -p "$LABELLED/np"
python3 - "$ROOT/tests/fixtures/secret-scanning/labelled-examples.jsonl" "$LABELLED/np" <<'PY'
import json, os, sys
source, out = sys.argv[1], sys.argv[2]
with open(source) as f:
    examples = [json.loads(line) for line in f if line.strip()]
with open(os.path.join(out, "..", "np-index.jsonl"), "w") as index:
    for number, example in enumerate(examples):
        name = f"example-{number:04d}.txt"
        with open(os.path.join(out, name), "w") as f:
            f.write(example["text"] + "\n")
        index.write(json.dumps({"file": name, "label": example["label"], "text": example["text"]}) + "\n")
PY
OWN_TREE="$ROOT/tests/fixtures/scan-corpus/tree"
"$BENCH" --threads "$THREADS" --sightings-out "$LABELLED/lifeboat-own.jsonl" "$OWN_TREE" > /dev/null
"$BENCH" --threads "$THREADS" --sightings-out "$LABELLED/lifeboat-np.jsonl" "$LABELLED/np" > /dev/null
if [[ "${SKIP_RIPSECRETS:-0}" != 1 ]]; then
    "$TOOLS/bin/ripsecrets" "$OWN_TREE" > "$LABELLED/ripsecrets-own.txt" || true
    "$TOOLS/bin/ripsecrets" "$LABELLED/np" > "$LABELLED/ripsecrets-np.txt" || true
fi
if [[ "${SKIP_DETECT_SECRETS:-0}" != 1 ]]; then
    (cd "$OWN_TREE" && "$TOOLS/venv/bin/detect-secrets" scan --all-files . > "$LABELLED/detect-secrets-own.json")
    (cd "$LABELLED/np" && "$TOOLS/venv/bin/detect-secrets" scan --all-files . > "$LABELLED/detect-secrets-np.json")
fi
python3 - "$ROOT" "$LABELLED" <<'PY'
import json, os, sys
root, labelled = sys.argv[1], sys.argv[2]
own_tree = os.path.join(root, "tests/fixtures/scan-corpus/tree")
np_dir = os.path.join(labelled, "np")
with open(os.path.join(root, "tests/fixtures/scan-corpus/labels.jsonl")) as f:
    own_labels = {(entry["path"], entry["line"]) for entry in map(json.loads, filter(str.strip, f))}
with open(os.path.join(labelled, "np-index.jsonl")) as f:
    np_index = [json.loads(line) for line in f]
positive_texts = {entry["text"] for entry in np_index if entry["label"] == "positive"}

def lifeboat(name, base):
    found = set()
    with open(os.path.join(labelled, name)) as f:
        for record in map(json.loads, f):
            found.add((os.path.relpath(record["path"], base), record["line"]))
    return found

def ripsecrets(name, base):
    found = set()
    path = os.path.join(labelled, name)
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split(":", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                found.add((os.path.relpath(parts[0], base), int(parts[1])))
    return found

def detect_secrets(name, base):
    path = os.path.join(labelled, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)["results"]
    return {(os.path.normpath(file), finding["line_number"]) for file, findings in results.items() for finding in findings}

def score_own(found):
    true_positives = len(own_labels & found)
    false_positives = len(found - own_labels)
    recall = true_positives / len(own_labels)
    precision = true_positives / (true_positives + false_positives) if true_positives + false_positives else float("nan")
    return recall, precision

def score_np(found):
    files = {file for file, _ in found}
    positives = [entry for entry in np_index if entry["label"] == "positive"]
    negatives = [entry for entry in np_index if entry["label"] == "negative" and entry["text"] not in positive_texts]
    hits = sum(entry["file"] in files for entry in positives)
    alarms = sum(entry["file"] in files for entry in negatives)
    return hits / len(positives), (hits / (hits + alarms) if hits + alarms else float("nan"))

tools = [
    ("lifeboat", lifeboat("lifeboat-own.jsonl", own_tree), lifeboat("lifeboat-np.jsonl", np_dir)),
    ("ripsecrets", ripsecrets("ripsecrets-own.txt", own_tree), ripsecrets("ripsecrets-np.txt", np_dir)),
    ("detect-secrets", detect_secrets("detect-secrets-own.json", own_tree), detect_secrets("detect-secrets-np.json", np_dir)),
]
print(f"labelled sets: our tree {len(own_labels)} credential lines; noseyparker {len(np_index)} examples")
for name, own, np in tools:
    if own is None:
        continue
    own_recall, own_precision = score_own(own)
    np_recall, np_precision = score_np(np)
    print(f"{name:<15} our tree: recall {own_recall:.3f} precision {own_precision:.3f}   "
          f"noseyparker: recall {np_recall:.3f} precision {np_precision:.3f}")
PY

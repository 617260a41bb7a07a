# Sourced by specialists.sh and gpu_specialist.sh: `only_boost DATASET` prints the train.py --boost
# value that samples that dataset alone (every other dataset of prompts/vocabulary.json 0 times).
only_boost() {
  "${PYTHON:-python3}" - "$1" "$(dirname "${BASH_SOURCE[0]}")/../../prompts/vocabulary.json" <<'PY'
import json, sys
ds, path = sys.argv[1], sys.argv[2]
ids = [d["id"] for d in json.load(open(path))["datasets"]]
if ds not in ids:
    sys.exit(f"only_boost: no dataset {ds} in {path} (known: {', '.join(ids)})")
print(",".join(f"{d}=0" for d in ids if d != ds))
PY
}

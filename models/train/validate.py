"""Validates checkpoints on the val split, as train.py does during a run, and records the result
in each file, so that `export.py --ckpt PATH` carries it into the manifest. For checkpoints made
elsewhere (a GPU run's snapshots).

    python3 models/train/validate.py runs/gpu/snapshot-*.pt
    python3 models/train/validate.py models/promptseg-builtin/weights.pt [--split train]  # recorded nowhere: the shipped file stays as exported
    python3 models/train/validate.py SPECIALIST.pt --datasets isbi2012_em                # one dataset, recorded nowhere
    python3 models/train/validate.py runs/all/snap/snapshot-100.pt --vocabulary prompts/vocabulary.json \
        --tokenizer runs/all                # a model trained on another vocabulary, with the tokenizer its run saved
Prints per checkpoint the validator's score and the mean Dice over the structures the model issue
sets bars for.
"""
import argparse, json, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import load_all, load_vocabulary  # noqa: E402
from net import from_checkpoint  # noqa: E402
from tokenizer import WordPiece  # noqa: E402
from train import ROOT, training_texts  # noqa: E402
import evaluate as ev  # noqa: E402

# the structures the model issues set Dice bars for, as the evaluation suite lists them: those of the
# generalist's datasets (the "bar-structure mean") and those of the newer datasets, on whose images
# the all-datasets network answers (the image_sets of the manifest's own_presence specialists)
BARS = list(json.load(open(os.path.join(ROOT, "eval", "suites", "shared-all.json")))["dice_targets"])
_ENTRY = next(m for m in json.load(open(os.path.join(ROOT, "models", "manifest.json")))["models"] if m["id"] == "promptseg-builtin")
_NEWER_SETS = {d for sp in _ENTRY.get("specialists", []) if sp.get("own_presence") for d in sp.get("image_sets", [])}
SHIPPED_BARS = [k for k in BARS if k.split("/")[0] not in _NEWER_SETS]
NEW_BARS = [k for k in BARS if k.split("/")[0] in _NEWER_SETS]
SHIPPED = os.path.realpath(os.path.join(ROOT, "models", "promptseg-builtin", "weights.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "medseg2d"))
    ap.add_argument("--cache", default=os.path.join(ROOT, "models", ".cache"))
    ap.add_argument("--max-cases", type=int, default=40)
    ap.add_argument("--split", choices=["val", "train"], default="val",
                    help="train: the same figures on training cases, to tell underfitting from a generalisation gap (not recorded in the file)")
    ap.add_argument("--datasets", default="", help="comma-separated dataset ids to validate on alone, e.g. isbi2012_em for a specialist (not recorded in the file)")
    ap.add_argument("--tile-upscale", type=float, default=1, help="tiled datasets: enlarge the native image this many times before tiling (a specialist trained with train.py --upscale; not recorded in the file)")
    ap.add_argument("--vocabulary", default=None, help="the vocabulary the checkpoints were trained on (default prompts/vocabulary.json)")
    ap.add_argument("--tokenizer", default=None, help="a folder with the run's tokenizer.json (train.py writes it to --model-dir; default: built from the vocabulary)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    vocab = load_vocabulary(a.vocabulary)
    tok = WordPiece.load(a.tokenizer) if a.tokenizer else WordPiece.build(training_texts(vocab))
    datasets = load_all(a.data, vocab, a.cache)
    only = [x for x in a.datasets.split(",") if x]
    unknown = sorted(set(only) - {d.id for d in datasets})
    if unknown:
        raise SystemExit(f"--datasets: no such dataset {', '.join(unknown)} (known: {', '.join(d.id for d in datasets)})")
    if only:
        datasets = [d for d in datasets if d.id in only]
    for path in a.ckpts:
        ck = torch.load(path, map_location="cpu")
        model = from_checkpoint(ck)
        with torch.no_grad():
            res = ev.validate(model, datasets, vocab, tok, split=a.split, max_cases=a.max_cases, tile_upscale=a.tile_upscale)
        if a.split == "val" and not only and a.tile_upscale == 1 and os.path.realpath(path) != SHIPPED:  # the committed weights stay as exported
            ck["val"] = res
            torch.save(ck, path)
        loaded = {d.id for d in datasets}
        wanted = [k for k in SHIPPED_BARS if k.split("/")[0] in loaded]
        bars = [res["dice"][k] for k in wanted if k in res["dice"]]
        missing = [k for k in wanted if k not in res["dice"]]  # no present case among those validated
        new = [res["dice"][k] for k in NEW_BARS if k in res["dice"]]
        print(f"{path}: step {ck.get('step')} score {res['score']:.4f} bar-structure mean Dice {sum(bars) / max(len(bars), 1):.4f} "
              f"({len(bars)} of {len(wanted)} structures{'; none present: ' + ', '.join(missing) if missing else ''}) "
              + (f"newer datasets' bar structures {sum(new) / len(new):.4f} ({len(new)}) " if new else "")
              + f"AUROC {res['presence_auroc']:.4f}", flush=True)
        print(f"{a.split} " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()

"""Makes a task-specific network (task_baselines.py's export: model.onnx + meta.json) a redrawing
specialist of the built-in model: copies its graph into the model folder as task_net.<name>.onnx
and writes its entry in the manifest beside that folder (files, sha256, sizes; `specialists`: name,
structures in the net's channel order, how it sees an image, and what it was trained on). The
calibration (`promptseg calibrate`) then decides, structure by structure on val, whether the
pipeline redraws with it (and, where another specialist may redraw the same structure, which of
them: the one that raises val Dice most).

    python3 models/train/add_task_net_specialist.py runs/baselines/drishti_gs1_optic_disc_cup --name optic-nerve-head
"""
import argparse, json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import manifest_path, sha256  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("net", help="a folder with model.onnx and meta.json (task_baselines.py's output)")
    ap.add_argument("--name", required=True, help="the specialist's name (lowercase letters, digits, - and _)")
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "promptseg-builtin"))
    a = ap.parse_args()
    meta = json.load(open(os.path.join(a.net, "meta.json")))
    if meta.get("format") != "promptseg-task-net/1":
        raise SystemExit(f"{a.net}/meta.json is not a task-specific net's (format {meta.get('format')!r})")
    onnx_file = os.path.join(a.net, "model.onnx")
    if sha256(onnx_file) != meta["onnx_sha256"]:
        raise SystemExit(f"{onnx_file} is not the graph meta.json describes (sha256 differs)")
    name = f"task_net.{a.name}.onnx"
    target = os.path.join(a.model_dir, name)
    shutil.copyfile(onnx_file, target + ".tmp")
    os.replace(target + ".tmp", target)
    man_path = manifest_path(a.model_dir)
    man = json.load(open(man_path))
    entry = dict(
        name=a.name, structures=meta["structures"],
        task_net=dict(file=name, input_size=meta["input_size"], tiled=meta["tiled"], **({"tile": meta["tile"]} if meta["tiled"] else {})),
        training=dict(dataset=meta["dataset"], recipe="models/train/task_baselines.py (trained from scratch on the dataset's train split alone; checkpoint chosen on val)",
                      command=meta["command"], checkpoint_step=meta["checkpoint_step"], val_dice=meta["val_dice"], arch=meta["arch"],
                      train=meta["train"], export_check=meta.get("export_check"), onnx_sha256=meta["onnx_sha256"]))
    for m in man["models"]:
        if m["dir"] != os.path.basename(os.path.normpath(a.model_dir)):
            continue
        m["files"][name] = dict(sha256=sha256(target), bytes=os.path.getsize(target))
        m["specialists"] = [s for s in m.get("specialists", []) if s["name"] != a.name] + [entry]
    tmp = man_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1)
    os.replace(tmp, man_path)
    print(f"{target} ({os.path.getsize(target)} bytes) is specialist {a.name} for {', '.join(meta['structures'])}; {man_path} updated")


if __name__ == "__main__":
    main()

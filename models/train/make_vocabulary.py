"""Writes prompts/vocabulary.json: the structure vocabulary shared by training and serving.

Run once when the vocabulary changes (it reads ../shared only for the datasets' own names and
synonyms; the committed JSON is what training and the service use).

    /usr/bin/python3 models/train/make_vocabulary.py            # every dataset in ../shared/data/medseg2d (the served vocabulary)
    /usr/bin/python3 models/train/make_vocabulary.py --generalist -o runs/vocab-14/vocabulary.json
        # only the 14 datasets the generalist was trained on: its training stages' vocabulary
        # (train.py --vocabulary); the all-datasets specialist serves the other datasets' structures

A structure can be labelled in several datasets, even of different modalities (ground-glass
opacity on CT and on radiographs): it is one entry whose `datasets` and `modalities` list them all.
"""
import argparse, json, os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data", "medseg2d")

# Per structure: held-out synonym(s) (evaluation only), parent, laterality, scale, description.
EXTRA = {
    "left_lung": dict(eval=["patient left lung"], parent="lungs", laterality="left", description="The patient's left lung field (image right on a PA chest X-ray)."),
    "right_lung": dict(eval=["patient right lung"], parent="lungs", laterality="right", description="The patient's right lung field (image left on a PA chest X-ray)."),
    "lungs": dict(eval=["lung fields"], description="Both lung fields together.", window="lung"),
    "heart": dict(eval=["heart shadow"], description="The cardiac silhouette.", window="mediastinum"),
    "left_clavicle": dict(eval=[], laterality="left", description="The patient's left collarbone."),
    "right_clavicle": dict(eval=[], laterality="right", description="The patient's right collarbone."),
    "right_ventricle": dict(eval=["right ventricle blood pool"], parent="heart", description="Right ventricular cavity on short-axis cardiac MRI."),
    "myocardium": dict(eval=["left ventricle wall"], parent="heart", description="Left ventricular myocardium (the ring around the LV cavity)."),
    "left_ventricle": dict(eval=["left ventricle blood pool"], parent="heart", description="Left ventricular cavity on short-axis cardiac MRI."),
    "left_atrium": dict(eval=["left atrial blood pool"], parent="heart", description="Left atrial cavity on LGE cardiac MRI."),
    "liver": dict(eval=["the liver"], description="Liver parenchyma on abdominal CT.", window="abdomen"),
    "lung_infection": dict(eval=["infected lung region"], description="COVID-19 pneumonia lesions (all infection) on chest CT.", window="lung"),
    "ground_glass_opacity": dict(eval=["ground-glass opacities"], parent="lung_infection", description="Ground-glass opacity on chest CT.", window="lung"),
    "consolidation": dict(eval=["consolidated lung"], parent="lung_infection", description="Lung consolidation on chest CT.", window="lung"),
    "pulmonary_embolism": dict(eval=["pulmonary embolus"], description="Filling defect (clot) in the pulmonary arteries on CT angiography.", window="mediastinum"),
    "dental_caries": dict(eval=["decayed tooth region"], description="Carious lesions on a panoramic dental radiograph.", window="bone"),
    "retinal_vessels": dict(eval=["blood vessels"], scale="tiled", description="Retinal blood vessel tree on a fundus photograph."),
    "polyp": dict(eval=["colon polyp"], description="Colorectal polyp on a white-light colonoscopy frame."),
    "fetal_head": dict(eval=["fetal head ellipse"], description="Fetal skull region on a 2D ultrasound plane."),
    "cell_membranes": dict(eval=["cell boundaries"], scale="tiled", description="Neuronal cell membranes on serial-section electron microscopy."),
    "flair_abnormality": dict(eval=["low-grade glioma"], description="FLAIR-hyperintense lower-grade glioma region on brain MRI.", window="brain"),
    "cell_nuclei": dict(eval=["cell nucleus"], scale="tiled", description="Cell nuclei on H&E-stained histology."),
    "skin_lesion": dict(eval=["pigmented lesion"], description="Pigmented skin lesion on a dermoscopy image."),
    "optic_disc": dict(eval=["optic papilla"], description="Optic disc (optic nerve head) on a colour fundus photograph centred on it."),
    "optic_cup": dict(eval=["central cup of the disc"], parent="optic_disc", description="Optic cup, the central excavation inside the optic disc."),
    "whole_tumor": dict(eval=["entire glioma extent"], description="Whole glioma on brain MRI: tumour core and peritumoural oedema (the FLAIR abnormality).", window="brain"),
    "peritumoral_edema": dict(eval=["oedema around the glioma"], parent="whole_tumor", description="Peritumoural oedema: the whole tumour less its core, on FLAIR MRI.", window="brain"),
    "tumor_core": dict(eval=["glioma core"], parent="whole_tumor", description="Tumour core (enhancing, necrotic and non-enhancing parts) on post-contrast T1 MRI.", window="brain"),
    "enhancing_tumor": dict(eval=["enhancing part of the glioma"], parent="tumor_core", description="Contrast-enhancing tumour on post-contrast T1 MRI.", window="brain"),
    "necrotic_tumor_core": dict(eval=["necrotic part of the glioma"], parent="tumor_core", description="Necrotic and non-enhancing tumour core on post-contrast T1 MRI.", window="brain"),
    "cardiomediastinum": dict(eval=["mediastinal silhouette"], description="Heart and mediastinum together on a chest radiograph.", drop=["cardiac silhouette"]),
    "airways": dict(eval=["tracheobronchial air column"], description="Trachea and main bronchi on a chest radiograph."),
    "vertebral_body": dict(eval=["lumbar vertebrae"], description="Vertebral bodies (T11 to L5) on sagittal T2 lumbar spine MRI.", window="bone"),
    "foot_ulcer": dict(eval=["diabetic foot wound"], description="Foot ulcer (the wound area) on a clinical photograph."),
    "nerve": dict(eval=["nerve plexus"], description="Peripheral nerve or nerve plexus on regional-anaesthesia ultrasound.", never_negative=True),
    "blood_vessel": dict(eval=["vascular lumen"], description="Artery or vein (one class) on regional-anaesthesia ultrasound.", never_negative=True),
}

# Eval-only phrasings that a larger vocabulary makes ambiguous ("blood vessels" would also name
# blood_vessel): replaced when the structure they would collide with is in the vocabulary.
EVAL_WHEN = {("retinal_vessels", "blood_vessel"): ["retinal blood vessels"]}

# SNOMED CT codes (code, meaning) of the structures that have one we are sure of: DICOM SEG's
# segmented property type; the others are coded in the private scheme 99PROMPTSEG by their slug.
SNOMED = {
    "heart": ("80891009", "Heart"), "liver": ("10200004", "Liver"), "lungs": ("39607008", "Lung"),
    "left_lung": ("44029006", "Left lung"), "right_lung": ("3341006", "Right lung"),
    "left_ventricle": ("87878005", "Left ventricle"), "right_ventricle": ("53085002", "Right ventricle"),
    "left_atrium": ("82471001", "Left atrium"), "myocardium": ("74281007", "Myocardium"),
}

MODALITY_WORDS = {
    "jsrt_scr_cxr": ["chest x-ray", "radiograph", "cxr", "chest film"],
    "dc1000_dental_caries_xray": ["dental x-ray", "panoramic radiograph", "dental radiograph"],
    "covid19_ct_infection_medseg": ["chest ct", "ct scan", "ct slice"],
    "ct_pulmonary_embolism_fumpe": ["ct angiography", "ct scan", "ctpa"],
    "chaos_ct_liver_mini": ["abdominal ct", "ct scan", "ct slice"],
    "lgg_flair_mri": ["brain mri", "flair mri", "mri slice"],
    "acdc_cardiac_mri": ["cardiac mri", "cine mri", "mri slice"],
    "la2018_left_atrium_lge_mri": ["cardiac mri", "lge mri", "mri slice"],
    "hc18_fetal_head_us": ["ultrasound", "fetal ultrasound", "sonogram"],
    "endotect2020_polyp_endoscopy": ["colonoscopy", "endoscopy image", "colonoscopy frame"],
    "ph2_dermoscopy": ["dermoscopy image", "skin photo", "dermatoscopic image"],
    "drive_fundus": ["fundus photo", "retinal image", "fundus image"],
    "monuseg_nuclei_histology": ["histology slide", "h&e image", "pathology image"],
    "isbi2012_em": ["electron microscopy image", "em image", "micrograph"],
    "drishti_gs1_optic_disc_cup": ["fundus photo", "optic disc photograph", "fundus image"],
    "brats2015_deepmedic_t1c": ["brain mri", "t1 post-contrast mri", "mri slice"],
    "brats2015_deepmedic_flair": ["brain mri", "flair mri", "mri slice"],
    "gb_covid_cxr": ["chest x-ray", "radiograph", "cxr", "portable chest film"],
    "lumbar_vb_mri_chu": ["spine mri", "lumbar mri", "sagittal mri"],
    "fuseg_foot_ulcer": ["photograph", "wound photo", "clinical photo"],
    "usgra_nerve_vessel_us": ["ultrasound", "nerve block ultrasound", "sonogram"],
}

# Datasets in one region may show each other's structures unlabelled, so they never serve as
# each other's negatives; EXTRA_NEGATIVES lists same-region structures that a dataset's images
# still never show as such (a chest X-ray has no liver, chamber or CT-finding masks to give).
REGION = {
    "jsrt_scr_cxr": "thorax", "covid19_ct_infection_medseg": "thorax", "ct_pulmonary_embolism_fumpe": "thorax",
    "acdc_cardiac_mri": "thorax", "la2018_left_atrium_lge_mri": "thorax", "chaos_ct_liver_mini": "thorax",
    "dc1000_dental_caries_xray": "teeth", "lgg_flair_mri": "brain", "hc18_fetal_head_us": "fetus",
    "endotect2020_polyp_endoscopy": "colon", "ph2_dermoscopy": "skin", "drive_fundus": "retina",
    "monuseg_nuclei_histology": "tissue", "isbi2012_em": "neural_tissue",
    "drishti_gs1_optic_disc_cup": "retina", "brats2015_deepmedic_t1c": "brain", "brats2015_deepmedic_flair": "brain",
    "gb_covid_cxr": "thorax", "lumbar_vb_mri_chu": "spine", "fuseg_foot_ulcer": "foot", "usgra_nerve_vessel_us": "limb_neck",
}

# Structures of another region that a dataset's images may still show, unlabelled: never that
# dataset's negatives (chest and abdominal CT and radiographs show vertebrae). Structures marked
# never_negative (vessels, nerves) are found in almost any tissue and are nobody's negative.
MAY_SHOW = {d: ["vertebral_body"] for d, r in REGION.items() if r == "thorax"}

# The datasets the generalist was trained on (--generalist); the all-datasets specialist, trained on
# every dataset, serves the structures of the others.
SHIPPED = ("jsrt_scr_cxr", "dc1000_dental_caries_xray", "covid19_ct_infection_medseg", "ct_pulmonary_embolism_fumpe",
           "chaos_ct_liver_mini", "lgg_flair_mri", "acdc_cardiac_mri", "la2018_left_atrium_lge_mri", "hc18_fetal_head_us",
           "endotect2020_polyp_endoscopy", "ph2_dermoscopy", "drive_fundus", "monuseg_nuclei_histology", "isbi2012_em")

# Generic words a clinician or an agent uses for "the abnormal thing in this image": resolved at
# serve time by what the image is (its nearest training set) to the structure the word means there.
GENERIC_WORDS = ["lesion", "lesions", "tumour", "tumours", "tumor", "tumors", "mass", "masses", "abnormality",
                 "abnormalities", "anomaly", "finding", "findings", "nodule", "nodules", "pathology"]
GENERIC_BY_DATASET = {
    "lgg_flair_mri": "flair_abnormality",
    "ph2_dermoscopy": "skin_lesion",
    "endotect2020_polyp_endoscopy": "polyp",
    "covid19_ct_infection_medseg": "lung_infection",
    "ct_pulmonary_embolism_fumpe": "pulmonary_embolism",
    "dc1000_dental_caries_xray": "dental_caries",
    "brats2015_deepmedic_flair": "whole_tumor",
    "brats2015_deepmedic_t1c": "tumor_core",
    "gb_covid_cxr": "ground_glass_opacity",
    "fuseg_foot_ulcer": "foot_ulcer",
}

# Names that mean different structures on different images, read like the generic words where a
# prompt uses them alone: "vessels" on a fundus photograph are the retinal vessels, on a nerve-block
# ultrasound the arteries and veins. Written into the vocabulary when every structure is in it.
SHARED_NAMES = [
    dict(words=["vessel", "vessels", "blood vessels"],
         by_dataset={"drive_fundus": "retinal_vessels", "usgra_nerve_vessel_us": "blood_vessel"}),
]

EXTRA_NEGATIVES = {
    "jsrt_scr_cxr": ["liver", "left_ventricle", "right_ventricle", "myocardium", "left_atrium", "pulmonary_embolism",
                     "lung_infection", "ground_glass_opacity", "consolidation"],
}

TEMPLATES_TRAIN = [
    "{s}", "the {s}", "segment the {s}", "segment {s}", "where is the {s}", "show the {s}",
    "find the {s}", "mask of the {s}", "{s} segmentation", "outline the {s}", "the patient's {s}",
    "segment the {s} in this {m}", "where is the {s} in this {m}?", "delineate the {s}",
    "highlight the {s}", "locate the {s}", "{s} in the {m}", "segment the {s} on the {m}",
]
TEMPLATES_EVAL = [
    "please segment the {s}", "can you find the {s} here", "draw the {s} boundary",
    "{s} region in the image", "identify the {s} in this {m} image",
]
NONSENSE_TRAIN = ["banana", "hello world", "asdf", "pizza", "a cat", "car", "the moon", "qwerty",
                  "keyboard", "lorem ipsum", "nothing", "random text", "xyz", "tree", "guitar",
                  "football", "sky", "dog", "chair", "table", "segment the sandwich", "find the car",
                  "where is the rainbow", "the airplane", "music", "test", "foo bar", "123"]
NONSENSE_EVAL = ["hello", "bicycle", "zzzz", "coffee mug", "ocean waves", "segment the teapot"]

def norm(text):
    """A phrase as the tokenizer sees it, for collision checks: lower case, letters and digits."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("'s", "")))


def structure_entry(slug, given, ds, modality):
    e = EXTRA[slug]
    return dict(slug=slug, name=given["name"].split(" (")[0], synonyms=[], eval_synonyms=list(e["eval"]),
                modality=modality, datasets=[], region=REGION[ds], description=e["description"],
                parent=e.get("parent"), laterality=e.get("laterality"), scale=e.get("scale", "whole"),
                window=e.get("window"), snomed=list(SNOMED[slug]) if slug in SNOMED else None)


def build(ids):
    structures, datasets = {}, []
    for d in ids:
        j = json.load(open(os.path.join(DATA, d, "dataset.json")))
        entry = dict(id=d, modality=j["modality"], region=REGION[d], modality_words=MODALITY_WORDS[d],
                     structures=[s["slug"] for s in j["structures"]], extra_negatives=EXTRA_NEGATIVES.get(d, []))
        datasets.append(entry)
        for s in j["structures"]:
            st = structures.setdefault(s["slug"], structure_entry(s["slug"], s, d, j["modality"]))
            st["datasets"].append(d)
            if j["modality"] != st["modality"]:
                st.setdefault("modalities", [st["modality"]]).append(j["modality"])
            dropped = {norm(x) for x in EXTRA[s["slug"]].get("drop", [])}
            for x in s["synonyms"]:
                if norm(x) not in dropped and norm(x) not in {norm(y) for y in st["synonyms"] + st["eval_synonyms"]}:
                    st["synonyms"].append(x)
    for (slug, other), phrasing in EVAL_WHEN.items():
        if slug in structures and other in structures:
            structures[slug]["eval_synonyms"] = phrasing
    for entry in datasets:
        shown = [s for s in MAY_SHOW.get(entry["id"], []) if s in structures]
        if shown:
            entry["may_show"] = shown
    for st in structures.values():
        if EXTRA[st["slug"]].get("never_negative"):
            st["never_negative"] = True
    check_unambiguous(structures)
    return structures, datasets


def check_unambiguous(structures):
    """Every name and synonym, trained or eval-only, names one structure."""
    owner = {}
    for st in structures.values():
        for x in [st["name"], st["slug"].replace("_", " ")] + st["synonyms"] + st["eval_synonyms"]:
            k = norm(x)
            if owner.setdefault(k, st["slug"]) != st["slug"]:
                raise SystemExit(f"'{x}' names both {owner[k]} and {st['slug']}: give one of them another phrasing")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generalist", action="store_true", help="only the 14 datasets the generalist was trained on, not every dataset in ../shared/data/medseg2d")
    ap.add_argument("--all", action="store_true", help="every dataset (the default; kept for the commands that name it)")
    ap.add_argument("-o", "--out", default=os.path.join(ROOT, "prompts", "vocabulary.json"))
    a = ap.parse_args()
    present = sorted(d for d in os.listdir(DATA) if os.path.isfile(os.path.join(DATA, d, "dataset.json")))
    ids = [d for d in present if d in SHIPPED] if a.generalist else present
    unknown = [d for d in ids if d not in REGION]
    if unknown:
        raise SystemExit(f"no vocabulary entries for {', '.join(unknown)}: add them to MODALITY_WORDS, REGION and EXTRA")
    structures, datasets = build(ids)
    generic = {d: s for d, s in GENERIC_BY_DATASET.items() if d in ids}
    shared = [n for n in SHARED_NAMES if all(d in ids for d in n["by_dataset"])]
    vocab = dict(
        version="2026-11-27.1" if a.generalist else "2026-12-05.1",
        note="Left/right are the patient's sides. eval_synonyms, templates.eval and nonsense.eval are never used in training.",
        windows={"lung": [-600, 1500], "mediastinum": [50, 350], "abdomen": [40, 400], "bone": [400, 1800], "brain": [40, 80]},
        structures=list(structures.values()), datasets=datasets,
        templates=dict(train=TEMPLATES_TRAIN, eval=TEMPLATES_EVAL),
        nonsense=dict(train=NONSENSE_TRAIN, eval=NONSENSE_EVAL),
        generic_words=dict(words=GENERIC_WORDS, by_dataset=generic, **(dict(shared_names=shared) if shared else {})),
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(vocab, open(a.out, "w"), indent=1)
    print("wrote", a.out, len(structures), "structures,", len(datasets), "datasets")


if __name__ == "__main__":
    main()

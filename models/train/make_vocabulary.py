"""Writes prompts/vocabulary.json: the structure vocabulary shared by training and serving.

Run once when the vocabulary changes (it reads ../shared only for the datasets' own names and
synonyms; the committed JSON is what training and the service use).
"""
import json, os, sys

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
}

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
}

# The datasets the shipped model was trained on: the vocabulary serves what the model knows (the
# newer datasets in ../shared join it with the model that is trained on them).
SHIPPED = tuple(MODALITY_WORDS)

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
}

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

def main():
    structures = {}
    datasets = []
    for d in sorted(os.listdir(DATA)):
        p = os.path.join(DATA, d, "dataset.json")
        if not os.path.isfile(p) or d not in SHIPPED:
            continue
        j = json.load(open(p))
        datasets.append(dict(id=d, modality=j["modality"], region=REGION[d], modality_words=MODALITY_WORDS[d],
                             structures=[s["slug"] for s in j["structures"]], extra_negatives=EXTRA_NEGATIVES.get(d, [])))
        for s in j["structures"]:
            e = EXTRA[s["slug"]]
            syn = [x for x in s["synonyms"] if x not in e["eval"]]
            structures[s["slug"]] = dict(
                slug=s["slug"], name=s["name"].split(" (")[0], synonyms=syn, eval_synonyms=e["eval"],
                modality=j["modality"], datasets=[d], region=REGION[d], description=e["description"],
                parent=e.get("parent"), laterality=e.get("laterality"), scale=e.get("scale", "whole"),
                window=e.get("window"), snomed=list(SNOMED[s["slug"]]) if s["slug"] in SNOMED else None,
            )
    vocab = dict(
        version="2026-11-27.1",
        note="Left/right are the patient's sides. eval_synonyms, templates.eval and nonsense.eval are never used in training.",
        windows={"lung": [-600, 1500], "mediastinum": [50, 350], "abdomen": [40, 400], "bone": [400, 1800], "brain": [40, 80]},
        structures=list(structures.values()), datasets=datasets,
        templates=dict(train=TEMPLATES_TRAIN, eval=TEMPLATES_EVAL),
        nonsense=dict(train=NONSENSE_TRAIN, eval=NONSENSE_EVAL),
        generic_words=dict(words=GENERIC_WORDS, by_dataset=GENERIC_BY_DATASET),
    )
    out = os.path.join(ROOT, "prompts", "vocabulary.json")
    json.dump(vocab, open(out, "w"), indent=1)
    print("wrote", out, len(structures), "structures")

if __name__ == "__main__":
    main()

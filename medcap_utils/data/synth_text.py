"""Caption writer for the synthetic demo dataset (used by synth; notebook 00_data_setup).

The content words (modality, region, view, finding, side, location, size, arrow colour) come from
the drawn image; only the phrasing is random: synonyms, abbreviations, word order, an optional
second sentence, and the typographic quirks of ROCOv2 caption files.
"""
MOD_PHRASES = {  # (phrase, weight, abbreviation legend)
    "CT": [("CT", 35, "CT: computed tomography"), ("Computed tomography", 20, None),
           ("Contrast-enhanced CT", 12, "CT: computed tomography"), ("CT scan", 15, "CT: computed tomography"),
           ("Computed tomography (CT)", 10, None), ("Enhanced CT", 8, "CT: computed tomography")],
    "MRI": [("MRI", 35, "MRI: magnetic resonance imaging"), ("T2-weighted MRI", 20, "MRI: magnetic resonance imaging"),
            ("MR image", 12, "MR: magnetic resonance"), ("Magnetic resonance imaging", 15, None),
            ("T2-weighted MR image", 8, "MR: magnetic resonance"), ("MRI scan", 10, "MRI: magnetic resonance imaging")],
    "X-ray": [("X-ray", 35, None), ("Radiograph", 25, None), ("Plain radiograph", 15, None),
              ("Radiography", 10, None), ("X-ray image", 15, None)],
    "Ultrasound": [("Ultrasound", 30, None), ("US", 15, "US: ultrasound"), ("Sonography", 15, None),
                   ("Ultrasonography", 15, None), ("Ultrasound image", 15, None), ("Sonogram", 10, None)],
    "Angiography": [("Angiography", 20, None), ("Angiogram", 20, None), ("Digital subtraction angiography", 15, None),
                    ("DSA", 15, "DSA: digital subtraction angiography"), ("Digitally subtracted angiogram", 15, None),
                    ("Selective angiogram", 15, None)],
    "PET": [("PET", 25, "PET: positron emission tomography"), ("FDG-PET", 25, "FDG: fluorodeoxyglucose"),
            ("PET/CT", 15, "PET: positron emission tomography"), ("18F-FDG PET", 15, "FDG: fluorodeoxyglucose"),
            ("Positron emission tomography (PET)", 20, None)],
}
HEART_US = [("Cardiac ultrasound", 40, None), ("Transthoracic echocardiography (ultrasound)", 20, None),
            ("Echocardiography (US)", 20, "US: ultrasound"), ("Ultrasound", 20, None)]

REGION_NOUN = {"chest": ["chest", "thorax"], "abdomen": ["abdomen"], "head": ["head", "brain"], "pelvis": ["pelvis"],
               "knee": ["knee"], "spine": ["lumbar spine", "spine"], "neck": ["neck"], "heart": ["heart"]}
REGION_ADJ = {"chest": ["chest", "thoracic"], "abdomen": ["abdominal"], "head": ["head", "brain"], "pelvis": ["pelvic"],
              "knee": ["knee"], "spine": ["lumbar spine", "spine"], "neck": ["neck"], "heart": ["cardiac"]}
SPECIAL_REGION = {  # (modality, region) -> (nouns, adjectives)
    ("MRI", "head"): (["brain"], ["brain"]), ("Ultrasound", "neck"): (["thyroid", "neck"], ["thyroid", "neck"]),
    ("Angiography", "head"): (["brain", "head"], ["cerebral", "carotid"]),
    ("Angiography", "heart"): (["coronary arteries"], ["coronary"]),
    ("Angiography", "abdomen"): (["abdomen"], ["abdominal", "visceral"]),
    ("Angiography", "pelvis"): (["pelvis"], ["pelvic", "iliac"]),
}
VIEW_WORDS = {"axial": ["axial"], "coronal": ["coronal"], "sagittal": ["sagittal"], "PA": ["PA", "posteroanterior"],
              "AP": ["AP", "anteroposterior"], "lateral": ["lateral"], "longitudinal": ["longitudinal"],
              "transverse": ["transverse"], "apical four-chamber": ["apical four-chamber", "apical 4-chamber"],
              "parasternal long-axis": ["parasternal long-axis"], "LAO": ["LAO", "left anterior oblique"],
              "RAO": ["RAO", "right anterior oblique"]}
VIEW_NOUNS = {"CT": ["view", "plane", "image", "section", "slice"], "MRI": ["view", "plane", "image", "slice"],
              "PET": ["view", "image"], "X-ray": ["view", "projection"], "Ultrasound": ["view", "scan", "image"],
              "Angiography": ["projection", "view"]}
FINDING_NOUN = {"nodule": ["nodule"], "mass": ["mass", "mass lesion"], "cyst": ["cyst", "cystic lesion"],
                "fracture": ["fracture"], "pleural effusion": ["pleural effusion"],
                "hemorrhage": ["hemorrhage", "haemorrhage"], "lymphadenopathy": ["enlarged lymph node", "lymphadenopathy"],
                "stenosis": ["stenosis", "focal stenosis"], "aneurysm": ["aneurysm", "saccular aneurysm"],
                "pericardial effusion": ["pericardial effusion"]}
# appearance words that the pixels back (how each modality renders each finding)
APPEARANCE = {("CT", "mass"): ["rim-enhancing", "hypodense"], ("CT", "cyst"): ["hypodense", "well-defined"],
              ("CT", "hemorrhage"): ["hyperdense"], ("CT", "nodule"): ["solid"],
              ("MRI", "cyst"): ["T2-hyperintense", "hyperintense"], ("MRI", "mass"): ["heterogeneous"],
              ("Ultrasound", "cyst"): ["anechoic"], ("Ultrasound", "nodule"): ["hypoechoic"],
              ("Ultrasound", "mass"): ["hyperechoic"], ("PET", "mass"): ["hypermetabolic", "FDG-avid"],
              ("PET", "lymphadenopathy"): ["hypermetabolic", "FDG-avid"], ("X-ray", "mass"): ["opaque"]}
VERBS = ["showing", "shows", "demonstrating", "demonstrates", "reveals", "revealed", "with", "depicting"]
ORGANS = {"chest": "heart, mediastinum, chest wall and lungs", "abdomen": "liver, spleen, kidneys and bowel loops",
          "head": "ventricles, midline structures and calvarium", "pelvis": "urinary bladder, pelvic bones and hip joints",
          "knee": "femur, tibia and joint space", "spine": "vertebral bodies, intervertebral discs and spinal canal",
          "neck": "airway, thyroid gland and cervical vessels", "heart": "cardiac chambers and valves"}
UNICODE_SWAP = [("X-ray", "X‐ray"), ("T2-weighted", "T2‐weighted"), ("FDG-PET", "FDG‐PET"),
                ("Contrast-enhanced", "Contrast‐enhanced"), ("four-chamber", "four‐chamber"), ("para-aortic", "para‐aortic")]


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _wpick(rng, items):
    w = [it[1] for it in items]
    return items[int(rng.choice(len(items), p=[x / sum(w) for x in w]))]


def _lc(s):
    """Lower-case a leading capital unless the word is an acronym (CT, MRI, T2-weighted, PET/CT)."""
    return s[0].lower() + s[1:] if len(s) > 1 and s[1].islower() else s


def _cap(s):
    return s[:1].upper() + s[1:]


def _article(word):
    return "an" if word[0].lower() in "aeiou" or word[:2] in ("18",) else "a"


def _size(rng, mm):
    style = rng.integers(4)
    if style == 0 and mm >= 10:
        return f"{mm / 10:.1f} cm"
    return [f"{mm} mm", f"{mm}-mm", f"{mm}mm", f"{mm} mm"][style]


def _finding_np(a, info, rng):
    """Noun phrase for the finding, e.g. 'a 12 mm nodule in the right upper lobe'."""
    f, mod = a["finding"], a["modality"]
    noun = _pick(rng, FINDING_NOUN[f])
    if f == "nodule" and info.get("host") == "lung" and rng.random() < .3:
        noun = "pulmonary nodule"
    adj = APPEARANCE.get((mod, f))
    if adj and (mod == "PET" or rng.random() < .5):
        noun = _pick(rng, adj) + " " + noun
    side, loc = info.get("side", ""), info.get("location", "")
    if f == "pleural effusion":
        core = f"{side}-sided pleural effusion" if side and rng.random() < .5 else f"{side} pleural effusion".strip()
        return f"{_article(core)} {core}", "effusion"
    if f == "pericardial effusion":
        return "a " + _pick(rng, ["pericardial effusion", "pericardial effusion surrounding the heart"]), "effusion"
    prep = "of" if f in ("fracture", "stenosis", "aneurysm") else "in"
    where = f"{prep} the {loc}"
    size = info.get("size_mm")
    if not size:
        return f"{_article(noun)} {noun} {where}", noun
    s = _size(rng, int(size))
    form = rng.integers(3)
    if form == 0:
        return f"{_article(s)} {s} {noun} {where}", noun
    if form == 1:
        return f"{_article(noun)} {noun} {where} measuring {s}", noun
    return f"{_article(noun)} {noun} ({s}) {where}", noun


def make_caption(a, info, rng):
    """One ROCOv2-like caption for an image with attributes ``a`` and drawn finding ``info``."""
    mod, region, view = a["modality"], a["region"], a["view"]
    phrases = HEART_US if (mod, region) == ("Ultrasound", "heart") else MOD_PHRASES[mod]
    m, _, legend = _wpick(rng, phrases)
    nouns, adjs = SPECIAL_REGION.get((mod, region), (REGION_NOUN[region], REGION_ADJ[region]))
    rn, ra = _pick(rng, nouns), _pick(rng, adjs)
    if ra.split()[-1].lower() in m.lower():   # no "Cardiac cardiac ultrasound"
        ra = ""
    if region == "knee" and info.get("side"):
        rn, ra = f"{info['side']} knee", f"{info['side']} knee"
    v, vn = _pick(rng, VIEW_WORDS[view]), _pick(rng, VIEW_NOUNS[mod])
    intro = _pick(rng, [f"{_cap(v)} {_lc(m)} of the {rn}", f"{_cap(ra)} {_lc(m)} ({v} {vn})",
                        f"{m} of the {rn}, {v} {vn},", f"{_cap(v)} {ra} {_lc(m)}", f"{m} ({v} {vn}) of the {rn}"])
    sentences = []
    if a["finding"]:
        np_, noun = _finding_np(a, info, rng)
        colour = a["arrow_colour"]
        arrow, arrow_sentence = "", ""
        if colour:
            style = rng.integers(10)
            if style < 6:
                arrow = f" ({colour} arrow)"
            elif style < 8:
                arrow = _pick(rng, [f", indicated by the {colour} arrow", f" marked with a {colour} arrow"])
            else:
                arrow_sentence = f"The {colour} arrow points to the {noun}."
        if rng.random() < .2:
            s = f"{_cap(np_.split(' ', 1)[1])} seen on {v} {ra} {_lc(m)}{arrow}."
        else:
            s = f"{intro.rstrip(',')}{',' if intro.endswith(',') else ''} {_pick(rng, VERBS)} {np_}{arrow}."
        sentences.append(s)
        if arrow_sentence:
            sentences.append(arrow_sentence)
        if rng.random() < .12:
            sentences.append(_pick(rng, ["No other abnormality is seen.", "The remaining structures are unremarkable.",
                                         "No other lesion was identified."]))
        if info.get("size_mm") and rng.random() < .08:
            sentences.append(f"The lesion measures {_size(rng, int(info['size_mm']))} in diameter.")
    else:
        sentences.append(_pick(rng, [f"{intro.rstrip(',')} showing no abnormality.",
                                     f"{intro.rstrip(',')} with no significant abnormality.",
                                     f"Normal {v} {ra} {_lc(m)}.", f"{intro.rstrip(',')}: unremarkable.",
                                     f"{intro.rstrip(',')}. No abnormality found.",
                                     f"{intro.rstrip(',')} within normal limits."]))
    if rng.random() < .05:   # the long tail of ROCOv2 caption lengths
        sentences.append(f"The remaining visualised structures, including the {ORGANS[region]}, are of normal size and "
                         "appearance, and there is no evidence of additional focal lesions, free fluid or bony "
                         "destruction within the field of view.")
        if view in ("axial", "coronal", "PA", "AP", "transverse") and rng.random() < .6:
            sentences.append("For orientation, the image is shown in the standard radiological convention, with the "
                             "patient's right side on the left of the image.")
    text = " ".join(" ".join(s.split()) for s in sentences)
    if legend and rng.random() < .12:
        text += ("" if rng.random() < .3 else " ") + legend          # ROCOv2 often runs these together
    return _quirks(text, rng)


def _quirks(text, rng):
    if rng.random() < .12:
        text = text.rstrip(".")
    if rng.random() < .04:
        for old, new in UNICODE_SWAP:
            text = text.replace(old, new)
    if rng.random() < .03:
        text = " " + text
    if rng.random() < .04:
        text = text + " "
    return text

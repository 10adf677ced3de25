"""Code sets, billing numbers and effective dates behind the rules, each with its source.

Sources are the keys of ../shared/reference/domain-rules.md (section numbers in brackets).
"""

import datetime as dt

# ICD-10-CM hemifacial spasm family [ref 1.1, 1.2: S-ORDER2021, S-ICDSQL1; laterality codes FY2019].
G51_33 = "G51.33"
G51_3_HEADER = "G51.3"
G51_3X = ("G51.31", "G51.32", "G51.33", "G51.39")
G51_3_CONFLICTING = ("G51.31", "G51.32", "G51.39")
BELLS_PALSY = "G51.0"
LATERALITY_EFFECTIVE = dt.date(2018, 10, 1)

# Structural causes of hemifacial spasm that make imaging mandatory (the imaging rule in schemas/rules/documentation.py).
STRUCTURAL_DX = ("D33.3", "D43.3", "C72.5", "D32.0", "Q28.2", "Q28.3", "I67.1")

# Chemodenervation and related CPT [ref 2.1: S-AAPC-FACENECK, S-AAPC-2014, S-SURGISTRAT].
CHEMO_FACIAL = "64612"
OTHER_CHEMO = (
    "64615", "64616", "64617", "64642", "64643", "64644", "64645",
    "64646", "64647", "64650", "64653", "67345",
)
CHEMO_ALL = (CHEMO_FACIAL, *OTHER_CHEMO)
LARYNX_CHEMO = "64617"  # includes needle-EMG guidance [ref 2.4]
GUIDANCE_ESTIM = "95873"
GUIDANCE_EMG = "95874"
GUIDANCE = (GUIDANCE_ESTIM, GUIDANCE_EMG)
THERAPEUTIC_INJECTION = "96372"  # bundled into chemodenervation [ref 2.2: S-AAPC-SITE]
FACIAL_NERVE_SURGERY = ("61458", "69720", "69725", "69955")  # imaging and surgical-notes rules (documentation.py)

# Botulinum toxins: billing unit (toxin units per HCPCS unit) and single-dose vials [ref 3.1].
TOXIN_BILLING_UNIT = {"J0585": 1, "J0586": 5, "J0587": 100, "J0588": 1, "J0589": 1}
TOXIN_NAME = {
    "J0585": "onabotulinumtoxinA (Botox)",
    "J0586": "abobotulinumtoxinA (Dysport)",
    "J0587": "rimabotulinumtoxinB (Myobloc)",
    "J0588": "incobotulinumtoxinA (Xeomin)",
    "J0589": "daxibotulinumtoxinA (Daxxify)",
}
TOXIN_VIALS = {
    "J0585": (50, 100, 200),
    "J0586": (300, 500),
    "J0587": (2500, 5000, 10000),
    "J0588": (50, 100, 200),  # the 200 U Xeomin vial: NDC 00259-1620-01
    "J0589": (100,),
}
TOXIN_CODES = tuple(TOXIN_BILLING_UNIT)
# Products not on the usual LCD off-label list for hemifacial spasm [ref 3.3: S-L33274-VERITY].
TOXIN_OFF_LIST = ("J0587", "J0588", "J0589")
# OPD prior authorization applies to these with 64612/64615 [ref 2.5: 42 CFR 419.83].
TOXIN_OPD_PA = ("J0585", "J0586", "J0587", "J0588")
OPD_PA_EFFECTIVE = dt.date(2020, 7, 1)
# Botox-equivalent conversion, only for plausibility ranges, never billing [ref 3.1, 6.1].
BOTOX_EQUIVALENT_DIVISOR = {"J0585": 1.0, "J0586": 2.5, "J0587": 40.0, "J0588": 1.0, "J0589": 1.0}

# Waste modifiers [ref 4: S-CGS-JZ, S-NORIDIAN-JWJZ, S-QPRO].
JW = "JW"
JZ = "JZ"
JZ_REQUIRED = dt.date(2023, 7, 1)

# Place of service [ref 7: S-NCTRACKS-POS, S-AAFP-POS].
FACILITY_POS = ("19", "21", "22", "23", "24")
OPD_POS = ("19", "22")

# Drug supplied by someone else: no drug line expected (the missing-toxin-line rule in schemas/rules/toxin.py).
# Words of a drug-source text that mean so (pharmacy, specialty pharmacy, patient, white or brown bagging).
DRUG_NOT_BILLED_SOURCES = ("pharm", "patient", "specialty", "white", "brown")

# Timely filing is per payer profile (pipeline/payers.toml: Medicare 12 months, 42 CFR 424.44).

# Muscles. Keys are canonical names; values are accepted spellings and abbreviations
# [RULES.md injection-site grammar; ref 6.2, 6.3: S-MEDICOMAESTRO, S-LOYOLA, S-TEACHME].
FACIAL_MUSCLES = {
    "orbicularis oculi": ("oo", "ooc", "orbicularis oculi", "orb oculi", "orb oc", "orbic oculi"),
    "orbicularis oris": ("oor", "oris", "orbicularis oris", "orb oris", "orbic oris"),
    "zygomaticus major": ("zm", "zmaj", "zygomaticus major", "zygomatic major", "zyg major", "zyg maj", "zygo major",
                          "zygomaticus maj"),
    "zygomaticus minor": ("zmi", "zmin", "zygomaticus minor", "zygomatic minor", "zyg minor", "zyg min",
                          "zygo minor", "zygomaticus min"),
    "frontalis": ("fr", "front", "frontal", "frontalis"),
    "corrugator supercilii": ("cs", "corr", "corrugator", "corrugators", "corrugator supercilii"),
    "procerus": ("pr", "proc", "procerus"),
    "risorius": ("ris", "risorius"),
    "depressor anguli oris": ("dao", "depressor anguli oris", "depressor anguli", "dep anguli oris", "dep anguli"),
    "depressor labii inferioris": ("dli", "depressor labii inferioris", "depressor labii", "dep labii"),
    "mentalis": ("ment", "mentalis"),
    "platysma": ("plat", "platysma", "platysmal"),
    "levator labii superioris": ("lls", "levator labii superioris", "levator labii", "lev labii sup"),
    "levator labii superioris alaeque nasi": ("llsan", "levator labii superioris alaeque nasi",
                                              "levator labii alaeque nasi"),
    "levator anguli oris": ("lao", "levator anguli oris", "levator anguli"),
    "nasalis": ("nas", "nasalis"),
    "buccinator": ("buc", "bucc", "buccinator"),
    "depressor septi nasi": ("depressor septi", "depressor septi nasi"),
    "auricular muscles": ("auricular", "auricularis", "auricular muscles"),
    "occipitalis": ("occipitalis",),
}
# Single midline muscles: a side given to the entries around them (a heading, "B/L ...") is not theirs.
MIDLINE_MUSCLES = ("procerus",)
# Parts and regions written beside a muscle (``OO pretarsal``, ``OOr upper lip``). A part in SOLE_PARTS names its
# muscle on its own (``R pretarsal 2.5u``); the others only qualify a muscle written beside them.
MUSCLE_PARTS = {
    "orbicularis oculi": ("pretarsal", "preseptal", "orbital", "lid", "lids", "eyelid", "eyelids", "canthus",
                          "canthal", "periocular", "periorbital", "orbitalis", "palpebral", "palpebralis"),
    "orbicularis oris": ("lip", "lips", "perioral"),
    "platysma": ("band", "bands"),
}
SOLE_PARTS = {"pretarsal": "orbicularis oculi", "preseptal": "orbicularis oculi", "orbital": "orbicularis oculi",
              "lid": "orbicularis oculi", "lids": "orbicularis oculi", "eyelid": "orbicularis oculi",
              "eyelids": "orbicularis oculi", "canthus": "orbicularis oculi", "canthal": "orbicularis oculi"}
# Words that place an injection within any muscle (upper, lateral, brow, ...): they never name a muscle.
SITE_QUALIFIERS = ("upper", "lower", "lateral", "lat", "medial", "med", "inferior", "inf", "superior", "sup", "mid",
                   "middle", "central", "outer", "inner", "pars", "brow", "forehead", "cheek", "chin", "neck", "jaw", "midline",
                   "superficial", "deep", "belly", "region", "area", "portion", "part", "segment", "fibers")
NON_FACIAL_MUSCLES = {
    "masseter": ("masseter",),
    "temporalis": ("temporalis",),
    "medial pterygoid": ("medial pterygoid",),
    "lateral pterygoid": ("lateral pterygoid",),
    "levator palpebrae superioris": ("levator palpebrae superioris", "levator palpebrae", "lps"),
    "extraocular muscles": (
        "extraocular", "extraocular muscles", "medial rectus", "lateral rectus", "superior rectus",
        "inferior rectus", "superior oblique", "inferior oblique",
    ),
    "sternocleidomastoid": ("sternocleidomastoid", "scm"),
    "trapezius": ("trapezius",),
    "splenius capitis": ("splenius capitis", "splenius"),
    "semispinalis": ("semispinalis", "semispinalis capitis"),
    "levator scapulae": ("levator scapulae",),
    "scalenes": ("scalenes", "scalene", "anterior scalene", "middle scalene"),
    "laryngeal muscles": ("thyroarytenoid", "cricothyroid", "laryngeal", "posterior cricoarytenoid"),
    "limb or trunk muscle": ("biceps", "triceps", "gastrocnemius", "deltoid", "rectus abdominis"),
}

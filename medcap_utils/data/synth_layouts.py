"""Anatomy tables for the synthetic demo images (drawn by synth_draw; notebook 00_data_setup).

Each layout is a list of primitives ``(tissue, cx, cy, a, b, angle_deg, p, name)`` in image
coordinates 0..1 (x to the right, y down).  A primitive is a filled super-ellipse with half-axes
``a``/``b`` and exponent ``p`` (2 = ellipse, 4 = rounded box).  ``tissue`` is a key into a
modality's intensity table (cross-sections, ultrasound), an attenuation number (X-ray), or None for
an invisible "host" region where a finding may be placed.  ``name`` marks hosts for findings;
``_r``/``_l`` suffixes are the patient's right/left, shown in radiological orientation (patient's
right on the image left) in axial, coronal and frontal views.
"""
import math


def E(tissue, cx, cy, a, b, ang=0.0, p=2.0, name=None):
    return (tissue, cx, cy, a, b, ang, p, name)


def _stack(tissue, x, y0, y1, n, a, b, name, curve=0.0, disc=None):
    """A column of vertebral bodies (optionally with intervertebral discs between them)."""
    out = []
    for i in range(n):
        y = y0 + (y1 - y0) * i / (n - 1)
        xi = x + curve * math.sin(math.pi * i / (n - 1))
        out.append(E(tissue, xi, y, a, b, 0, 4, name))
        if disc and i < n - 1:
            yd = y + (y1 - y0) / (n - 1) / 2
            out.append(E(disc, xi + curve * 0.1, yd, a * 0.9, (y1 - y0) / (n - 1) / 2 - b, 0, 4))
    return out


def _ring_gaps(cx, cy, a, b, n, tissue="muscle", r=0.018):
    """Small blobs that interrupt a bone ring so it reads as separate ribs."""
    return [E(tissue, cx + a * math.cos(2 * math.pi * (k + 0.5) / n),
              cy + b * math.sin(2 * math.pi * (k + 0.5) / n), r, r) for k in range(n)]


# ----------------------------------------------------------------------------- cross-sections
# Used by CT, MRI and PET (PET reuses the geometry with an uptake table).

def chest_axial(side=None):
    return [E("fat", .5, .52, .45, .31), E("muscle", .5, .52, .42, .28),
            E("bone", .5, .52, .39, .255), E("soft", .5, .52, .375, .24),
            *_ring_gaps(.5, .52, .3825, .2475, 12),
            E("lung", .33, .5, .14, .2, -8, 2, "lung_r"), E("lung", .67, .5, .14, .2, 8, 2, "lung_l"),
            E("heart", .55, .5, .1, .09, -20, 2, "heart"), E("vessel", .5, .36, .03, .03),
            E("vessel", .58, .66, .028, .028), E("bone", .5, .72, .05, .045, 0, 2, "spine"),
            E("bone", .5, .79, .012, .035), E("bone", .5, .295, .035, .012),
            E(None, .42, .44, .035, .04, 0, 2, "hilum_r"), E(None, .6, .44, .035, .04, 0, 2, "hilum_l"),
            E("table", .5, .885, .46, .012, 0, 4)]


def chest_coronal(side=None):
    ribs = [E("bone", x, .2 + .08 * k, .02, .011) for k in range(8) for x in (.15, .85)]
    return [E("fat", .5, .55, .44, .47, 0, 3), E("muscle", .5, .55, .41, .45, 0, 3), *ribs,
            E("lung", .31, .42, .14, .3, 0, 2, "lung_r"), E("lung", .69, .42, .14, .3, 0, 2, "lung_l"),
            E("heart", .56, .62, .14, .11, -15, 2, "heart"), E("vessel", .47, .25, .03, .07),
            E("liver", .32, .9, .2, .1, 0, 2, "liver"),
            E("bone", .33, .1, .13, .015, -8), E("bone", .67, .1, .13, .015, 8),
            E(None, .43, .42, .035, .04, 0, 2, "hilum_r"), E(None, .59, .42, .035, .04, 0, 2, "hilum_l")]


def chest_sagittal(side=None):
    return [E("fat", .5, .5, .38, .48, 0, 3), E("muscle", .5, .5, .35, .46, 0, 3),
            E("lung", .48, .42, .2, .3, 0, 2, "lung"), E("heart", .33, .62, .13, .12, 0, 2, "heart"),
            E("liver", .45, .9, .22, .08, 0, 2, "liver"), E("bone", .17, .45, .012, .17),
            *_stack("bone", .77, .1, .9, 9, .04, .035, "spine"),
            E(None, .45, .45, .04, .04, 0, 2, "hilum")]


def abdomen_axial(side=None):
    return [E("fat", .5, .52, .46, .33), E("muscle", .5, .52, .43, .3), E("soft", .5, .52, .41, .28),
            E("liver", .31, .46, .17, .17, 20, 2, "liver"), E("liver", .75, .48, .07, .11, -20, 2, "spleen"),
            E("kidney", .37, .66, .05, .075, -20, 2, "kidney_r"),
            E("kidney", .63, .66, .05, .075, 20, 2, "kidney_l"),
            E("muscle", .44, .7, .03, .045), E("muscle", .56, .7, .03, .045),
            E("bone", .5, .74, .05, .045, 0, 2, "spine"), E("bone", .5, .81, .012, .03),
            E("vessel", .53, .63, .022, .022), E("vessel", .46, .61, .025, .02),
            E("gas", .56, .4, .04, .03), E("gas", .64, .32, .035, .025), E("gas", .48, .33, .03, .02),
            E(None, .5, .57, .04, .03, 0, 2, "paraaortic"), E("table", .5, .885, .46, .012, 0, 4)]


def abdomen_coronal(side=None):
    return [E("fat", .5, .52, .44, .48, 0, 3), E("soft", .5, .52, .41, .46, 0, 3),
            E("lung", .3, .07, .15, .07), E("lung", .7, .07, .15, .07),
            E("liver", .3, .28, .2, .15, 10, 2, "liver"), E("liver", .74, .28, .08, .11, -10, 2, "spleen"),
            E("kidney", .36, .53, .06, .1, 10, 2, "kidney_r"),
            E("kidney", .64, .53, .06, .1, -10, 2, "kidney_l"),
            E("bone", .3, .93, .13, .05, 20, 2, "ilium_r"), E("bone", .7, .93, .13, .05, -20, 2, "ilium_l"),
            E("vessel", .5, .55, .02, .3), E("gas", .56, .72, .05, .03), E("gas", .4, .76, .04, .03),
            E("gas", .62, .82, .03, .02), E(None, .5, .45, .035, .05, 0, 2, "paraaortic")]


def head_axial(side=None):
    return [E("soft", .5, .5, .37, .45), E("bone", .5, .5, .35, .43), E("brain", .5, .5, .32, .4, 0, 2, "brain"),
            E("wm", .5, .5, .25, .32), E("csf", .5, .5, .004, .38),
            E("csf", .455, .47, .025, .1, 12), E("csf", .545, .47, .025, .1, -12), E("csf", .5, .6, .01, .02)]


def head_coronal(side=None):
    return [E("soft", .5, .45, .39, .4), E("bone", .5, .45, .37, .38), E("brain", .5, .44, .34, .35, 0, 2, "brain"),
            E("wm", .5, .42, .26, .26), E("csf", .5, .44, .004, .32),
            E("csf", .45, .4, .02, .07, 15), E("csf", .55, .4, .02, .07, -15),
            E("bone", .5, .84, .3, .04, 0, 3), E("soft", .5, .94, .15, .1)]


def head_sagittal(side=None):
    return [E("soft", .47, .45, .41, .37), E("bone", .47, .44, .39, .35), E("brain", .49, .41, .36, .31, 0, 2, "brain"),
            E("wm", .47, .4, .27, .21), E("csf", .48, .4, .13, .03, -5),
            E("brain", .68, .68, .12, .075, -10), E("brain", .57, .74, .045, .13, -20),
            E("soft", .17, .7, .11, .17), E("gas", .16, .64, .03, .07), E("soft", .6, .93, .16, .1)]


def pelvis_axial(side=None):
    return [E("fat", .5, .52, .47, .32), E("muscle", .5, .52, .44, .29),
            E("fat", .5, .5, .2, .16), E("fluid", .5, .45, .09, .07, 0, 2, "bladder"),
            E("bone", .25, .52, .065, .065, 0, 2, "femur_r"), E("bone", .75, .52, .065, .065, 0, 2, "femur_l"),
            E("bone", .37, .66, .04, .03), E("bone", .63, .66, .04, .03), E("gas", .5, .63, .03, .025),
            E(None, .37, .46, .04, .04, 0, 2, "adnexa_r"), E(None, .63, .46, .04, .04, 0, 2, "adnexa_l"),
            E(None, .36, .37, .03, .03, 0, 2, "iliacnode_r"), E(None, .64, .37, .03, .03, 0, 2, "iliacnode_l"),
            E("table", .5, .885, .46, .012, 0, 4)]


def pelvis_coronal(side=None):
    return [E("fat", .5, .5, .46, .47, 0, 3), E("muscle", .5, .5, .43, .45, 0, 3),
            E("bone", .3, .28, .14, .09, 25, 2, "ilium_r"), E("bone", .7, .28, .14, .09, -25, 2, "ilium_l"),
            E("bone", .5, .3, .06, .09), E("fat", .5, .58, .16, .12), E("fluid", .5, .6, .1, .07, 0, 2, "bladder"),
            E("bone", .25, .6, .065, .065, 0, 2, "femur_r"), E("bone", .75, .6, .065, .065, 0, 2, "femur_l"),
            E("bone", .2, .84, .045, .16, 12, 2, "femur_r"), E("bone", .8, .84, .045, .16, -12, 2, "femur_l"),
            E(None, .37, .43, .03, .03, 0, 2, "iliacnode_r"), E(None, .63, .43, .03, .03, 0, 2, "iliacnode_l"),
            E(None, .35, .6, .04, .04, 0, 2, "adnexa_r"), E(None, .65, .6, .04, .04, 0, 2, "adnexa_l")]


def pelvis_sagittal(side=None):
    return [E("fat", .5, .5, .42, .47, 0, 3), E("muscle", .5, .5, .39, .45, 0, 3),
            E("fluid", .33, .55, .1, .08, 0, 2, "bladder"), E("soft", .52, .46, .07, .13, 35),
            E("bone", .8, .4, .05, .24, -15), E("bone", .2, .75, .03, .06), E("gas", .63, .63, .03, .05),
            E(None, .5, .3, .04, .04, 0, 2, "adnexa")]


def neck_axial(side=None):
    return [E("fat", .5, .5, .35, .31), E("muscle", .5, .5, .32, .28),
            E("bone", .5, .6, .065, .055), E("csf", .5, .7, .028, .022), E("bone", .5, .79, .015, .04),
            E("gas", .5, .36, .035, .03),
            E("gland", .43, .38, .04, .045, 0, 2, "thyroid_r"), E("gland", .57, .38, .04, .045, 0, 2, "thyroid_l"),
            E("vessel", .39, .47, .016, .016), E("vessel", .61, .47, .016, .016),
            E("vessel", .34, .45, .022, .018), E("vessel", .66, .45, .022, .018),
            E(None, .29, .53, .04, .04, 0, 2, "cervical_r"), E(None, .71, .53, .04, .04, 0, 2, "cervical_l")]


def neck_sagittal(side=None):
    return [E("fat", .5, .5, .32, .5, 0, 3), E("muscle", .5, .5, .29, .48, 0, 3),
            *_stack("bone", .62, .12, .88, 7, .05, .04, "spine"), E("csf", .73, .5, .02, .48, 0, 4),
            E("gas", .36, .55, .03, .38, 0, 4), E("gland", .29, .62, .03, .06, 0, 2, "thyroid"),
            E(None, .45, .4, .04, .06, 0, 2, "cervical")]


def spine_sagittal(side=None):
    spinous = [E("bone", .72, .1 + .16 * k, .045, .02) for k in range(6)]
    return [E("fat", .5, .5, .46, .56, 0, 4), E("muscle", .55, .5, .35, .56, 0, 4), E("soft", .12, .5, .14, .56, 0, 4),
            *_stack("bone", .43, .08, .92, 6, .075, .055, "vertebra", disc="disc"),
            E("csf", .57, .5, .025, .56, 0, 4), E("brain", .57, .5, .01, .56, 0, 4), *spinous]


def spine_axial(side=None):
    return [E("fat", .5, .55, .46, .32), E("muscle", .5, .55, .43, .29), E("soft", .5, .33, .36, .12),
            E("bone", .5, .45, .085, .075, 0, 2, "vertebra"), E("csf", .5, .59, .035, .03), E("brain", .5, .59, .015, .015),
            E("bone", .44, .6, .015, .04, 20), E("bone", .56, .6, .015, .04, -20), E("bone", .5, .7, .015, .045),
            E("bone", .38, .56, .06, .014, -15), E("bone", .62, .56, .06, .014, 15),
            E("fat", .37, .46, .05, .06), E("fat", .63, .46, .05, .06)]


def knee_sagittal(side=None):
    return [E("fat", .5, .5, .3, .56, 0, 4), E("muscle", .53, .5, .26, .56, 0, 4),
            E("cortex", .52, .2, .11, .26, 0, 3, "femur"), E("cortex", .53, .44, .13, .085, 0, 2, "femur"),
            E("marrow", .52, .2, .095, .25, 0, 3), E("marrow", .53, .44, .115, .07),
            E("bone", .53, .79, .12, .22, 0, 4, "tibia"), E("fluid", .53, .545, .11, .012),
            E("bone", .28, .41, .03, .075, 0, 2, "patella"), E("muscle", .55, .55, .012, .06, -35),
            E(None, .72, .6, .05, .06, 0, 2, "popliteal")]


def knee_coronal(side="right"):
    fx = .8 if side == "left" else .2        # the fibula is lateral: patient's left knee -> image right
    mx = .23 if side == "left" else .77      # medial joint region on the other side
    return [E("fat", .5, .5, .38, .56, 0, 4), E("muscle", .5, .5, .34, .56, 0, 4),
            E("cortex", .5, .2, .11, .25, 0, 3, "femur"), E("cortex", .4, .45, .085, .075, 0, 2, "femur"),
            E("cortex", .6, .45, .085, .075, 0, 2, "femur"), E("marrow", .5, .2, .095, .24, 0, 3),
            E("marrow", .4, .45, .07, .06), E("marrow", .6, .45, .07, .06),
            E("bone", .5, .79, .17, .2, 0, 4, "tibia"), E("bone", fx, .8, .03, .17, 0, 2),
            E("fluid", .5, .545, .16, .01), E(None, mx, .56, .05, .05, 0, 2, "medialknee")]


CROSS_SECTION = {
    ("chest", "axial"): chest_axial, ("chest", "coronal"): chest_coronal, ("chest", "sagittal"): chest_sagittal,
    ("abdomen", "axial"): abdomen_axial, ("abdomen", "coronal"): abdomen_coronal,
    ("head", "axial"): head_axial, ("head", "coronal"): head_coronal, ("head", "sagittal"): head_sagittal,
    ("pelvis", "axial"): pelvis_axial, ("pelvis", "coronal"): pelvis_coronal, ("pelvis", "sagittal"): pelvis_sagittal,
    ("neck", "axial"): neck_axial, ("neck", "sagittal"): neck_sagittal,
    ("spine", "sagittal"): spine_sagittal, ("spine", "axial"): spine_axial,
    ("knee", "sagittal"): knee_sagittal, ("knee", "coronal"): knee_coronal,
}

# ----------------------------------------------------------------------------- X-ray projections
# tissue = linear attenuation added where the primitive is thick (negative for air-filled lungs).

def xr_chest_pa(side=None):
    ribs = []
    for k in range(9):
        y = .19 + .066 * k
        ribs += [E(.22, .31, y, .15, .011, 12), E(.22, .69, y, .15, .011, -12)]
    return [E(.35, .5, .58, .47, .5, 0, 4), E(.25, .04, .5, .05, .45), E(.25, .96, .5, .05, .45),
            E(-.3, .31, .45, .15, .31, 0, 2, "lung_r"), E(-.3, .69, .45, .15, .31, 0, 2, "lung_l"),
            E(.45, .56, .64, .15, .12, -10, 2, "heart"), E(.25, .5, .42, .05, .35, 0, 4),
            E(.5, .5, .5, .03, .5, 0, 4), *ribs,
            E(.5, .33, .16, .14, .014, -8), E(.5, .67, .16, .14, .014, 8),
            E(.6, .07, .2, .06, .08), E(.6, .93, .2, .06, .08)]


def xr_chest_lateral(side=None):
    ribs = [E(.18, .62, .22 + .07 * k, .17, .01, -20) for k in range(8)]
    return [E(.4, .5, .58, .38, .5, 0, 4), E(-.33, .48, .45, .26, .3, 0, 2, "lung"),
            E(.35, .38, .64, .15, .13, 0, 2, "heart"), *_stack(.5, .77, .12, .92, 10, .04, .03, "spine"),
            E(.45, .18, .45, .015, .18), E(.3, .5, .12, .3, .07), *ribs]


def xr_knee_ap(side="right"):
    fx = .68 if side == "left" else .32
    return [E(.3, .5, .5, .24, .56, 0, 4), E(.9, .5, .22, .1, .28, 0, 3, "femur"),
            E(.9, .41, .46, .08, .065, 0, 2, "femur"), E(.9, .59, .46, .08, .065, 0, 2, "femur"),
            E(.9, .5, .78, .15, .2, 0, 4, "tibia"), E(.7, fx, .8, .028, .17), E(.3, .5, .43, .055, .065)]


def xr_knee_lateral(side=None):
    return [E(.3, .5, .5, .25, .56, 0, 4), E(.9, .55, .2, .09, .25, 0, 3, "femur"),
            E(.9, .56, .44, .1, .08, 0, 2, "femur"), E(.9, .55, .8, .1, .2, 0, 4, "tibia"),
            E(.5, .62, .78, .025, .15), E(.9, .3, .43, .035, .075, 15, 2, "patella")]


def xr_pelvis_ap(side=None):
    return [E(.35, .5, .5, .5, .45, 0, 4), E(.7, .31, .3, .15, .12, 25, 2, "ilium_r"),
            E(.7, .69, .3, .15, .12, -25, 2, "ilium_l"), E(.7, .5, .33, .08, .12), E(.7, .5, .1, .07, .05, 0, 4),
            E(.8, .4, .68, .1, .03, -10), E(.8, .6, .68, .1, .03, 10),
            E(-.35, .38, .67, .05, .04), E(-.35, .62, .67, .05, .04),
            E(.9, .25, .58, .06, .06, 0, 2, "femur_r"), E(.9, .75, .58, .06, .06, 0, 2, "femur_l"),
            E(.9, .22, .82, .05, .18, 10, 2, "femur_r"), E(.9, .78, .82, .05, .18, -10, 2, "femur_l")]


def xr_spine_ap(side=None):
    out = [E(.35, .5, .5, .45, .55, 0, 4), E(.15, .37, .6, .05, .35, -5), E(.15, .63, .6, .05, .35, 5)]
    for k in range(5):
        y = .14 + .18 * k
        out += [E(.7, .5, y, .08, .06, 0, 4, "vertebra"), E(.4, .44, y - .02, .015, .02), E(.4, .56, y - .02, .015, .02),
                E(.5, .38, y, .05, .012), E(.5, .62, y, .05, .012)]
    return out


def xr_spine_lateral(side=None):
    out = [E(.4, .5, .5, .4, .55, 0, 4), E(-.2, .2, .5, .08, .05)]
    for k in range(5):
        y = .14 + .18 * k
        x = .45 - .05 * math.sin(math.pi * k / 4)
        out += [E(.7, x, y, .08, .06, 0, 4, "vertebra"), E(.5, x + .2, y, .05, .02)]
    return out


def xr_abdomen_ap(side=None):
    gas = [E(-.2, x, y, .04, .03) for x, y in ((.35, .6), (.62, .55), (.5, .72), (.7, .75), (.3, .78))]
    return [E(.35, .5, .5, .46, .55, 0, 4), E(.2, .3, .28, .18, .14, 10, 2, "liver"), E(.1, .72, .3, .07, .1),
            E(.1, .38, .45, .05, .08), E(.1, .62, .45, .05, .08),
            E(.6, .5, .5, .035, .5, 0, 4), E(.7, .3, .95, .15, .08, 25), E(.7, .7, .95, .15, .08, -25), *gas]


XRAY = {
    ("chest", "PA"): xr_chest_pa, ("chest", "lateral"): xr_chest_lateral,
    ("knee", "AP"): xr_knee_ap, ("knee", "lateral"): xr_knee_lateral, ("pelvis", "AP"): xr_pelvis_ap,
    ("spine", "AP"): xr_spine_ap, ("spine", "lateral"): xr_spine_lateral, ("abdomen", "AP"): xr_abdomen_ap,
}

# ----------------------------------------------------------------------------- ultrasound
# Echogenicity maps; the probe footprint (sector or linear) is applied by the renderer.

def us_abdomen_longitudinal(side=None):
    return [E("liver", .45, .42, .45, .3, 10, 2, "liver"), E("bright", .2, .75, .3, .012, -35),
            E("kidney", .62, .74, .17, .08, -10, 2, "kidney"), E("sinus", .62, .74, .09, .03, -10)]


def us_abdomen_transverse(side=None):
    return [E("liver", .5, .45, .46, .3, 0, 2, "liver"), E("fluid", .45, .5, .03, .03), E("fluid", .58, .62, .04, .03),
            E("fluid", .4, .38, .02, .02), E("kidney", .72, .78, .08, .08, 0, 2, "kidney"), E("sinus", .72, .78, .04, .035)]


def us_neck_transverse(side=None):
    return [E("muscle", .5, .16, .45, .05), E("gland", .33, .4, .14, .1, 0, 2, "thyroid_r"),
            E("gland", .67, .4, .14, .1, 0, 2, "thyroid_l"), E("bright", .5, .33, .08, .06),
            E("shadow", .5, .72, .07, .36, 0, 4), E("fluid", .13, .45, .05, .05), E("fluid", .87, .45, .05, .05)]


def us_neck_longitudinal(side=None):
    return [E("muscle", .5, .16, .5, .05), E("gland", .5, .42, .42, .12, 0, 2, "thyroid"), E("muscle", .5, .72, .5, .08)]


def us_pelvis_transverse(side=None):
    return [E("fluid", .5, .35, .22, .14, 0, 2, "bladder"), E("soft", .5, .64, .14, .1),
            E(None, .27, .64, .06, .06, 0, 2, "adnexa_r"), E(None, .73, .64, .06, .06, 0, 2, "adnexa_l")]


def us_pelvis_longitudinal(side=None):
    return [E("fluid", .38, .35, .2, .13, 0, 2, "bladder"), E("soft", .6, .62, .22, .09, -20),
            E(None, .72, .42, .06, .06, 0, 2, "adnexa")]


def us_heart_a4c(side=None, effusion=0.0):
    out = [E("bright", .5, .52, .37, .45)]
    if effusion:
        out.append(E("fluid", .5, .52, .34 + effusion, .42 + effusion))
    return out + [E("myo", .5, .52, .34, .42, 0, 2, "heart"), E("fluid", .39, .37, .09, .16), E("fluid", .61, .37, .1, .17),
                  E("fluid", .4, .72, .08, .08), E("fluid", .61, .72, .09, .08)]


def us_heart_plax(side=None, effusion=0.0):
    out = [E("bright", .5, .52, .45, .25, -10)]
    if effusion:
        out.append(E("fluid", .5, .52, .42 + effusion, .22 + effusion, -10))
    return out + [E("myo", .5, .52, .42, .22, -10, 2, "heart"), E("fluid", .45, .5, .25, .075, -10),
                  E("fluid", .8, .4, .07, .06), E("fluid", .76, .63, .1, .07), E("fluid", .45, .32, .25, .035, -10)]


ULTRASOUND = {
    ("abdomen", "longitudinal"): us_abdomen_longitudinal, ("abdomen", "transverse"): us_abdomen_transverse,
    ("neck", "transverse"): us_neck_transverse, ("neck", "longitudinal"): us_neck_longitudinal,
    ("pelvis", "transverse"): us_pelvis_transverse, ("pelvis", "longitudinal"): us_pelvis_longitudinal,
    ("heart", "apical four-chamber"): us_heart_a4c, ("heart", "parasternal long-axis"): us_heart_plax,
}

# Field of view in mm across the image, so findings are drawn to scale.
FOV_MM = {"chest": 380, "abdomen": 400, "head": 240, "pelvis": 420, "neck": 200, "spine": 320,
          "knee": 200, "heart": 160}
US_FOV_MM = {"abdomen": 180, "neck": 60, "pelvis": 160, "heart": 170}
ANGIO_FOV_MM = {"head": 220, "heart": 150, "abdomen": 300, "pelvis": 350}

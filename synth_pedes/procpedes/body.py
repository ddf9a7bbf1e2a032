"""Drawing one person with PIL: a walking skeleton, clothes, hair, headwear and belongings.

Geometry is in *body units*: the person is 1.0 tall, ``u`` runs right in the image, ``v`` runs down
from the top of the head. ``draw_person`` converts to pixels and records, per slot, the pixel box of
everything it drew (used for visibility under occlusion and by the tests).

The drawing helpers are dense coordinate lists, so they use three short names throughout: ``a`` is the
person's ``Appearance``, ``pt`` the ``Painter`` and ``d`` the facing sign of a side view (+1 walking right,
-1 left; it mirrors u; 1 in front and back views).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from .people import Appearance
from .vocab import HAIR_COLOURS, PALETTE, SKIN_TONES

Colour = tuple[int, int, int]


def shade(c: Colour, k: float) -> Colour:
    return tuple(max(0, min(255, int(x * k))) for x in c)


def lighten(c: Colour, k: float) -> Colour:
    return tuple(int(x + (255 - x) * k) for x in c)


def skeleton(a: Appearance, view: str, facing: int, phase: float) -> dict[str, tuple[float, float]]:
    """Joint positions (body units) for a view (front/back/side), facing (+1 right, -1 left) and gait phase.

    Keys: ``head`` and ``r_``/``l_`` + ``hip``, ``knee``, ``ankle``, ``sh`` (shoulder), ``elbow``, ``wrist``; and
    ``_shift``, the vertical offset that puts the lower foot on the ground line."""
    wf = a.width_factor
    man = a.gender == "man"
    shoulder_half = (0.112 if man else 0.099) * wf
    swing = math.sin(2 * math.pi * phase)
    forward = {"r_leg": swing, "l_leg": -swing, "r_arm": -swing, "l_arm": swing}  # > 0: swung forward
    joints: dict[str, tuple[float, float]] = {}
    stoop = 0.012 if a.age == "old" else 0.0
    if view in ("front", "back"):
        front = view == "front"
        right_sign = -1 if front else 1  # image-x sign of the person's right side
        for side, sign in (("r", right_sign), ("l", -right_sign)):
            leg, arm = forward[side + "_leg"], forward[side + "_arm"]
            depth = leg if front else -leg  # > 0: closer to the camera, so lower in the image
            joints[side + "_hip"] = (sign * 0.045 * wf, 0.50)
            joints[side + "_knee"] = (sign * 0.05 * wf, 0.73 + 0.01 * depth - 0.015 * max(-leg, 0))
            joints[side + "_ankle"] = (sign * 0.052 * wf, 0.955 + 0.012 * depth - 0.03 * max(-leg, 0))
            joints[side + "_sh"] = (sign * (shoulder_half - 0.014), 0.195)
            joints[side + "_elbow"] = (sign * (shoulder_half + 0.006), 0.34 - 0.01 * abs(arm))
            joints[side + "_wrist"] = (sign * (shoulder_half + 0.01 - 0.014 * max(arm, 0)),
                                       0.475 - 0.03 * max(arm, 0) + 0.008 * arm)
        joints["head"] = (0.0, 0.068 + stoop)
    else:
        d = facing  # mirrors u
        for side in ("r", "l"):
            leg, arm = forward[side + "_leg"], forward[side + "_arm"]
            hip = (0.0, 0.5)
            thigh = math.radians(16) * leg  # angles from the vertical, forward positive
            knee = (hip[0] + 0.235 * math.sin(thigh) * d, hip[1] + 0.235 * math.cos(thigh))
            shin = thigh - math.radians(6 + 30 * max(0.0, -leg))
            ankle = (knee[0] + 0.225 * math.sin(shin) * d, knee[1] + 0.225 * math.cos(shin))
            shoulder = (-0.005 * d + stoop * d, 0.195)
            upper_arm = math.radians(20) * arm
            elbow = (shoulder[0] + 0.16 * math.sin(upper_arm) * d, shoulder[1] + 0.16 * math.cos(upper_arm))
            forearm = upper_arm + math.radians(14 + 22 * max(arm, 0))
            wrist = (elbow[0] + 0.145 * math.sin(forearm) * d, elbow[1] + 0.145 * math.cos(forearm))
            joints.update({side + "_hip": hip, side + "_knee": knee, side + "_ankle": ankle, side + "_sh": shoulder,
                           side + "_elbow": elbow, side + "_wrist": wrist})
        joints["head"] = (0.004 * d + 2.5 * stoop * d, 0.068 + stoop)
    bottom = max(joints["r_ankle"][1], joints["l_ankle"][1]) + 0.045
    joints["_shift"] = (0.0, 1.0 - bottom)
    return joints


class Painter:
    """Body-unit drawing on a PIL image, tracking the pixel box drawn for each slot."""

    def __init__(self, img: Image.Image, scale: float, cx: float, top: float):
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.s, self.cx, self.top = scale, cx, top
        self.boxes: dict[str, list[float]] = {}

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.s, self.top + v * self.s)

    def _acc(self, slot: str | None, pts) -> None:
        if slot is None:
            return
        xs = [q[0] for q in pts]
        ys = [q[1] for q in pts]
        b = self.boxes.get(slot)
        if b is None:
            self.boxes[slot] = [min(xs), min(ys), max(xs), max(ys)]
        else:
            b[0], b[1], b[2], b[3] = min(b[0], *xs), min(b[1], *ys), max(b[2], *xs), max(b[3], *ys)

    def poly(self, pts, fill: Colour, slot: str | None = None) -> list[tuple[float, float]]:
        px = [self.p(u, v) for u, v in pts]
        self.draw.polygon(px, fill=fill)
        self._acc(slot, px)
        return px

    def ellipse(self, u: float, v: float, ru: float, rv: float, fill: Colour, slot: str | None = None) -> None:
        box = (self.cx + (u - ru) * self.s, self.top + (v - rv) * self.s,
               self.cx + (u + ru) * self.s, self.top + (v + rv) * self.s)
        self.draw.ellipse(box, fill=fill)
        self._acc(slot, [box[:2], box[2:]])

    def chord(self, u: float, v: float, ru: float, rv: float, start: float, end: float, fill: Colour,
              slot: str | None = None) -> None:
        box = (self.cx + (u - ru) * self.s, self.top + (v - rv) * self.s,
               self.cx + (u + ru) * self.s, self.top + (v + rv) * self.s)
        self.draw.chord(box, start, end, fill=fill)
        self._acc(slot, [box[:2], box[2:]])

    def line(self, pts, fill: Colour, width: float) -> None:
        self.draw.line([self.p(u, v) for u, v in pts], fill=fill, width=max(1, int(round(width * self.s))))

    def limb(self, p0, p1, w0: float, w1: float, fill: Colour, slot: str | None = None, cap: bool = True) -> None:
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        n = math.hypot(dx, dy) or 1e-6
        nx, ny = -dy / n, dx / n
        self.poly([(p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2), (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
                   (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2), (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2)], fill, slot)
        if cap:
            self.ellipse(p1[0], p1[1], w1 / 2, w1 / 2, fill, slot)

    def patterned(self, pts, base: Colour, second: Colour, pattern: str, slot: str | None = None) -> None:
        """A polygon filled with a plain, striped or checked fabric."""
        if pattern not in ("striped", "checked"):
            self.poly(pts, base, slot)
            return
        px = [self.p(u, v) for u, v in pts]
        self._acc(slot, px)
        x0, y0 = int(min(q[0] for q in px)), int(min(q[1] for q in px))
        x1, y1 = int(math.ceil(max(q[0] for q in px))) + 1, int(math.ceil(max(q[1] for q in px))) + 1
        w, h = max(1, x1 - x0), max(1, y1 - y0)
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).polygon([(q[0] - x0, q[1] - y0) for q in px], fill=255)
        tile = Image.new("RGB", (w, h), base)
        td = ImageDraw.Draw(tile)
        period = max(3, int(round(0.03 * self.s)))
        thick = max(1, int(round(period * (0.45 if pattern == "striped" else 0.3))))
        for y in range(period // 2, h, period):
            td.rectangle((0, y, w, y + thick - 1), fill=second)
        if pattern == "checked":
            for x in range(period // 2, w, period):
                td.rectangle((x, 0, x + thick - 1, h), fill=second)
        self.img.paste(tile, (x0, y0), mask)


def _mid(p0, p1, t: float) -> tuple[float, float]:
    return (p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t)


@dataclass
class _Figure:
    """What the parts of one person's drawing share: the painter, the pose, the colours and the widths."""

    painter: Painter
    appearance: Appearance
    joints: dict[str, tuple[float, float]]  # from skeleton()
    view: str  # front | back | side
    direction: int  # side view: +1 walking right, -1 walking left (it mirrors u); 1 in front and back views
    skin: Colour
    upper: Colour
    upper_second: Colour  # the upper garment's pattern, inner layer and logo
    lower: Colour  # the skin where there is no lower garment
    shoe: Colour
    bag: Colour
    shoulder_half_width: float
    hip_half_width: float
    puffy: float  # how much a down jacket thickens the torso and sleeves
    drawn: dict[str, bool] = field(default_factory=lambda: {"belongings": False, "inner": False, "logo": False})

    @property
    def side(self) -> bool:
        return self.view == "side"

    @property
    def near(self) -> str | None:
        """The person's side ("r"/"l") that faces the camera in a side view: walking right shows the right side."""
        return ("r" if self.direction > 0 else "l") if self.side else None

    @property
    def far(self) -> str | None:
        return ("l" if self.direction > 0 else "r") if self.side else None


def draw_person(img: Image.Image, a: Appearance, view: str, facing: int, phase: float, scale: float, cx: float,
                top: float) -> tuple[dict[str, list[float]], dict[str, bool]]:
    """Draw ``a`` onto ``img``; return the pixel box per slot and which optional parts were drawn.

    Back to front: what is behind the body (hood, far arm, a backpack seen from the side), legs and lower
    garment, torso and upper garment, a backpack over it, the near arm(s), the head, carried items."""
    joints = skeleton(a, view, facing, phase)
    man = a.gender == "man"
    fig = _Figure(painter=Painter(img, scale, cx, top + joints["_shift"][1] * scale), appearance=a, joints=joints,
                  view=view, direction=facing if view == "side" else 1, skin=SKIN_TONES[a.skin],
                  upper=PALETTE[a.upper_colour], upper_second=PALETTE[a.upper_second_colour],
                  lower=PALETTE[a.lower_colour] if a.lower_type != "none" else SKIN_TONES[a.skin],
                  shoe=PALETTE[a.shoe_colour], bag=PALETTE[a.bag_colour] if a.bag_type != "none" else (0, 0, 0),
                  shoulder_half_width=(0.112 if man else 0.099) * a.width_factor,
                  hip_half_width=(0.078 if man else 0.088) * a.width_factor,
                  puffy=0.014 if a.upper_type == "down jacket" else 0.0)
    _draw_behind_body(fig)
    _draw_legs(fig)
    _draw_lower_garment(fig)
    _draw_torso(fig)
    _draw_backpack_over_torso(fig)
    for arm in ([fig.near] if fig.side else ["r", "l"]):
        _arm(fig.painter, a, joints, arm, fig.upper, fig.skin, far=False, puffy=fig.puffy)
    head_u, head_v = joints["head"]
    _head(fig.painter, a, view, fig.direction, head_u, head_v, 0.047 * a.width_factor ** 0.3, 0.06, fig.skin,
          HAIR_COLOURS[a.hair_colour])
    _draw_carried_items(fig)
    return fig.painter.boxes, fig.drawn


def _draw_behind_body(fig: _Figure) -> None:
    """The hood of a hoodie seen from the front; in a side view the far arm and a backpack on the back."""
    pt, a, d = fig.painter, fig.appearance, fig.direction
    if a.upper_type == "hoodie" and fig.view == "front":
        pt.ellipse(0, 0.145, 0.065 * a.width_factor, 0.035, shade(fig.upper, 0.82), "upper")
    if fig.side:
        _arm(pt, a, fig.joints, fig.far, fig.upper, fig.skin, far=True, puffy=fig.puffy)
        if a.bag_type == "backpack":
            pt.poly([(-0.05 * d, 0.2), (-0.14 * d, 0.22), (-0.145 * d, 0.45), (-0.05 * d, 0.46)], fig.bag, "belongings")
            pt.line([(-0.14 * d, 0.34), (-0.1 * d, 0.34)], shade(fig.bag, 0.7), 0.008)
            fig.drawn["belongings"] = True


def _draw_legs(fig: _Figure) -> None:
    """Each leg back to front (the far one darker in a side view): skin, trouser or shorts leg, shoe."""
    pt, a, d, wf = fig.painter, fig.appearance, fig.direction, fig.appearance.width_factor
    trousers = a.lower_type in ("trousers", "jeans")
    for leg in ([fig.far, fig.near] if fig.side else ["r", "l"]):
        shading = 0.82 if (fig.side and leg == fig.far) else 1.0
        hip, knee, ankle = fig.joints[leg + "_hip"], fig.joints[leg + "_knee"], fig.joints[leg + "_ankle"]
        if fig.side:
            hip = (hip[0] + (0.008 if leg == fig.far else -0.008) * d, hip[1])
        leg_skin = shade(fig.skin, shading)
        pt.limb(hip, knee, 0.08 * wf, 0.062 * wf, leg_skin, "legs")
        pt.limb(knee, ankle, 0.058 * wf, 0.045 * wf, leg_skin, "legs")
        if trousers or a.lower_type == "shorts":
            cloth = shade(fig.lower, shading)
            if trousers:
                pt.limb(hip, knee, 0.09 * wf, 0.07 * wf, cloth, "lower")
                pt.limb(knee, ankle, 0.07 * wf, 0.06 * wf, cloth, "lower", cap=False)
                if a.lower_type == "jeans":
                    seam = lighten(cloth, 0.25)
                    off = 0.028 * wf * (1 if hip[0] >= 0 else -1) if not fig.side else 0.0
                    pt.line([(hip[0] + off, hip[1] + 0.03), (knee[0] + off * 0.8, knee[1]),
                             (ankle[0] + off * 0.7, ankle[1] - 0.01)], seam, 0.006)
            else:
                pt.limb(hip, _mid(hip, knee, 0.6), 0.094 * wf, 0.082 * wf, cloth, "lower", cap=False)
        _shoe(pt, a, ankle, fig.view, d, shade(fig.shoe, shading), fig.skin)


def _draw_lower_garment(fig: _Figure) -> None:
    """The top of trousers or shorts (with a belt line), or a skirt."""
    pt, a, d, wf = fig.painter, fig.appearance, fig.direction, fig.appearance.width_factor
    hw, lo = fig.hip_half_width, fig.lower
    if a.lower_type in ("trousers", "jeans", "shorts"):
        if fig.side:
            pt.poly([(-0.065 * d * wf, 0.455), (0.055 * d * wf, 0.455), (0.05 * d * wf, 0.56), (-0.062 * d * wf, 0.58)],
                    lo, "lower")
        else:
            pt.poly([(-hw, 0.46), (hw, 0.46), (hw + 0.004, 0.56), (0.0, 0.585), (-hw - 0.004, 0.56)], lo, "lower")
        pt.line([(-hw, 0.47), (hw, 0.47)] if not fig.side else [(-0.065 * d, 0.47), (0.055 * d, 0.47)],
                shade(lo, 0.6), 0.006)
    elif a.lower_type == "skirt":
        hem, flare = (0.66, 0.035) if a.skirt_length == "short" else (0.86, 0.06)
        if fig.side:
            pt.poly([(-0.065 * d, 0.46), (0.055 * d, 0.46), ((0.055 + flare * 1.4) * d, hem),
                     ((-0.065 - flare * 1.4) * d, hem)], lo, "lower")
        else:
            pt.poly([(-hw - 0.004, 0.46), (hw + 0.004, 0.46), (hw + flare, hem), (-hw - flare, hem)], lo, "lower")


def _draw_torso(fig: _Figure) -> None:
    """The neck, then the upper garment (a dress included) down to its hem, with its details."""
    pt, a, d, wf = fig.painter, fig.appearance, fig.direction, fig.appearance.width_factor
    sw, hw = fig.shoulder_half_width, fig.hip_half_width
    head_u = fig.joints["head"][0]
    pt.poly([(head_u - 0.02, 0.11), (head_u + 0.02, 0.11), (0.022, 0.17), (-0.022, 0.17)], fig.skin)  # neck
    hem = {"coat": 0.75, "down jacket": 0.55}.get(a.upper_type, 0.535)
    dress = a.upper_type == "dress"
    if dress:
        hem = 0.67 if a.skirt_length == "short" else 0.86
    flare = 0.035 if a.upper_type == "coat" else (0.045 if dress and hem < 0.7 else (0.07 if dress else 0.008))
    if fig.side:
        c0 = 0.065 * wf + fig.puffy  # half depth of the chest
        waist = c0 + (0 if a.gender == "man" else 0.008)
        torso = [(-0.025 * d, 0.145), (0.022 * d, 0.145), (c0 * d, 0.2), (waist * d, 0.29),
                 ((c0 - 0.012) * d, 0.44), ((c0 - 0.01 + flare * 1.2) * d, hem), ((-c0 - flare * 1.2) * d, hem),
                 ((-c0 + 0.004) * d, 0.44), ((-c0 + 0.006) * d, 0.29), ((-c0 + 0.012) * d, 0.19)]
    else:
        p = fig.puffy
        torso = [(-0.035, 0.145), (0.035, 0.145), (sw + p, 0.185), (sw - 0.008 + p, 0.28), (hw + 0.004 + p, 0.44),
                 (hw + flare + p, hem), (-hw - flare - p, hem), (-hw - 0.004 - p, 0.44), (-sw + 0.008 - p, 0.28),
                 (-sw - p, 0.185)]
    pt.patterned(torso, fig.upper, fig.upper_second, a.upper_pattern, "upper")
    _torso_details(pt, a, fig.view, d, fig.upper, fig.upper_second, fig.skin, hem, hw, fig.drawn)


def _draw_backpack_over_torso(fig: _Figure) -> None:
    """A backpack's straps over the near shoulder (side view), the pack itself (back view) or both straps (front)."""
    pt, a, d, bag = fig.painter, fig.appearance, fig.direction, fig.bag
    if a.bag_type != "backpack":
        return
    if fig.side:
        pt.line([(0.03 * d, 0.17), (0.05 * d, 0.3), (-0.01 * d, 0.42)], shade(bag, 0.9), 0.018)
    if fig.view == "back":
        half = 0.085 * a.width_factor
        pt.poly([(-half, 0.205), (half, 0.205), (half + 0.006, 0.45), (-half - 0.006, 0.45)], bag, "belongings")
        pt.poly([(-half * 0.7, 0.36), (half * 0.7, 0.36), (half * 0.72, 0.44), (-half * 0.72, 0.44)], shade(bag, 0.78),
                "belongings")
        pt.line([(-half * 0.7, 0.36), (half * 0.7, 0.36)], lighten(bag, 0.3), 0.006)
        fig.drawn["belongings"] = True
    if fig.view == "front":
        for sign in (-1, 1):
            pt.poly([(sign * 0.055, 0.165), (sign * 0.08, 0.17), (sign * 0.085, 0.42), (sign * 0.065, 0.42)], bag,
                    "belongings")
        fig.drawn["belongings"] = True


def _draw_carried_items(fig: _Figure) -> None:
    """A shoulder bag across the body, or a handbag or folded umbrella in the hand of ``bag_side`` (when that
    hand is seen)."""
    pt, a, d, bag = fig.painter, fig.appearance, fig.direction, fig.bag
    if a.bag_type == "shoulder bag":
        _shoulder_bag(pt, a, fig.joints, fig.view, d, fig.shoulder_half_width, fig.hip_half_width, bag)
        fig.drawn["belongings"] = True
        return
    if a.bag_type not in ("handbag", "umbrella"):
        return
    hand = "r" if a.bag_side == "right" else "l"
    if fig.side and hand != fig.near:
        return  # in the far hand, behind the body
    wx, wy = fig.joints[hand + "_wrist"]
    if a.bag_type == "handbag":
        half = 0.05
        pt.line([(wx - 0.02, wy + 0.04), (wx, wy + 0.005), (wx + 0.02, wy + 0.04)], shade(bag, 0.7), 0.008)
        pt.poly([(wx - half, wy + 0.035), (wx + half, wy + 0.035), (wx + half + 0.008, wy + 0.12),
                 (wx - half - 0.008, wy + 0.12)], bag, "belongings")
        pt.line([(wx - half, wy + 0.06), (wx + half, wy + 0.06)], shade(bag, 0.75), 0.005)
    else:
        tip = (wx + (0.05 * d if fig.side else 0.0), min(0.985, wy + 0.45))
        pt.poly([(wx - 0.024, wy + 0.04), (wx + 0.024, wy + 0.04), (tip[0] + 0.01, tip[1] - 0.08),
                 (tip[0], tip[1]), (tip[0] - 0.01, tip[1] - 0.08)], bag, "belongings")
        pt.line([(wx, wy + 0.06), _mid((wx, wy + 0.06), tip, 0.8)], shade(bag, 0.75), 0.006)
        pt.line([(wx, wy - 0.01), (wx, wy + 0.045)], (40, 30, 24), 0.01)
        pt.ellipse(wx, wy, 0.016, 0.016, fig.skin)
    fig.drawn["belongings"] = True


def _shoe(pt: Painter, a: Appearance, ankle, view: str, d: int, colour: Colour, skin: Colour) -> None:
    u, v = ankle
    sole = shade(colour, 0.55) if sum(colour) > 200 else (225, 225, 220)
    if a.shoe_type == "boots":
        pt.limb((u, v - 0.1), (u, v), 0.06, 0.056, colour, "shoes", cap=False)
    if a.shoe_type == "sandals":
        colour_top = skin
    else:
        colour_top = colour
    if view == "side":
        pts = [(u - 0.024 * d, v - 0.012), (u + 0.022 * d, v - 0.004), (u + 0.072 * d, v + 0.028),
               (u + 0.072 * d, v + 0.045), (u - 0.026 * d, v + 0.045)]
        pt.poly(pts, colour_top, "shoes")
        if a.shoe_type == "sandals":
            pt.line([(u - 0.02 * d, v + 0.012), (u + 0.05 * d, v + 0.03)], colour, 0.012)
            pt.line([(u - 0.02 * d, v + 0.035), (u + 0.06 * d, v + 0.035)], colour, 0.01)
        if a.shoe_type == "sneakers":
            pt.line([(u - 0.026 * d, v + 0.041), (u + 0.072 * d, v + 0.041)], sole, 0.008)
    else:
        pt.ellipse(u, v + 0.022, 0.03, 0.024, colour_top, "shoes")
        if a.shoe_type == "sandals":
            pt.line([(u - 0.028, v + 0.014), (u + 0.028, v + 0.014)], colour, 0.01)
            pt.line([(u - 0.028, v + 0.034), (u + 0.028, v + 0.034)], colour, 0.01)
        if a.shoe_type == "sneakers":
            pt.line([(u - 0.028, v + 0.04), (u + 0.028, v + 0.04)], sole, 0.008)


def _arm(pt: Painter, a: Appearance, j, sd: str, up: Colour, skin: Colour, far: bool, puffy: float) -> None:
    dim = 0.8 if far else 1.0
    sh, el, wr = j[sd + "_sh"], j[sd + "_elbow"], j[sd + "_wrist"]
    wf = a.width_factor
    cu, cs = shade(up, dim), shade(skin, dim)
    if a.upper_sleeve == "long" or a.upper_type in ("jacket", "coat", "down jacket", "sweater", "hoodie"):
        pt.limb(sh, el, 0.056 * wf + puffy, 0.048 * wf + puffy, cu)
        pt.limb(el, wr, 0.048 * wf + puffy, 0.04 * wf + puffy * 0.8, cu, cap=False)
        if a.upper_type == "sweater":
            pt.limb(_mid(el, wr, 0.85), wr, 0.042 * wf, 0.04 * wf, shade(cu, 0.85), cap=False)
    else:
        pt.limb(sh, el, 0.05 * wf, 0.042 * wf, cs)
        pt.limb(el, wr, 0.042 * wf, 0.034 * wf, cs, cap=False)
        pt.limb(sh, _mid(sh, el, 0.6), 0.06 * wf, 0.054 * wf, cu, cap=False)
    pt.ellipse(sh[0], sh[1] + 0.005, 0.03 * wf + puffy, 0.026, cu)  # shoulder
    pt.ellipse(wr[0], wr[1] + 0.016, 0.018, 0.022, cs)  # hand


def _torso_details(pt: Painter, a: Appearance, view: str, d: int, up: Colour, up2: Colour, skin: Colour,
                   hem: float, hw: float, drawn: dict) -> None:
    t = a.upper_type
    dark = shade(up, 0.72)
    if view == "front":
        if t in ("t-shirt", "sweater", "dress"):
            pt.chord(0, 0.145, 0.032, 0.022, 0, 180, skin)
        elif t == "shirt":
            pt.poly([(-0.03, 0.145), (0.03, 0.145), (0.0, 0.19)], skin)
            pt.poly([(-0.036, 0.142), (-0.004, 0.19), (-0.03, 0.175)], lighten(up, 0.35))
            pt.poly([(0.036, 0.142), (0.004, 0.19), (0.03, 0.175)], lighten(up, 0.35))
            for v in (0.24, 0.31, 0.38, 0.45):
                pt.ellipse(0, v, 0.004, 0.004, dark)
        elif t == "jacket":
            pt.poly([(-0.03, 0.146), (0.03, 0.146), (0.022, hem), (-0.022, hem)], up2)
            pt.line([(-0.024, 0.15), (-0.022, hem)], dark, 0.006)
            pt.line([(0.024, 0.15), (0.022, hem)], dark, 0.006)
            drawn["inner"] = True
        elif t in ("coat", "down jacket"):
            pt.poly([(-0.032, 0.146), (0.032, 0.146), (0.0, 0.235 if t == "coat" else 0.2)], up2)
            drawn["inner"] = True
            pt.line([(0.0, 0.235 if t == "coat" else 0.2), (0.0, hem)], dark, 0.005)
            if t == "coat":
                for v in (0.3, 0.4, 0.5, 0.6):
                    pt.ellipse(-0.025, v, 0.005, 0.005, dark)
                    pt.ellipse(0.025, v, 0.005, 0.005, dark)
        elif t == "hoodie":
            pt.poly([(-0.065, 0.41), (0.065, 0.41), (0.075, 0.5), (-0.075, 0.5)], shade(up, 0.85))
            pt.line([(-0.015, 0.15), (-0.017, 0.25)], lighten(up, 0.5), 0.005)
            pt.line([(0.015, 0.15), (0.017, 0.25)], lighten(up, 0.5), 0.005)
    elif view == "back" and t == "hoodie":
        pt.ellipse(0, 0.2, 0.06, 0.05, shade(up, 0.85))
    if t == "down jacket":
        lo, hi = (-0.13, 0.13)
        for v in (0.25, 0.32, 0.39, 0.46):
            if view == "side":
                pt.line([(-0.07 * d, v), (0.075 * d, v)], shade(up, 0.78), 0.005)
            else:
                pt.line([(lo * a.width_factor, v), (hi * a.width_factor, v)], shade(up, 0.78), 0.005)
    if t == "sweater" and view != "side":
        pt.poly([(-hw - 0.008, hem - 0.025), (hw + 0.008, hem - 0.025), (hw + 0.008, hem), (-hw - 0.008, hem)],
                shade(up, 0.85))
    if a.upper_pattern == "logo" and view in ("front", "back"):
        v = 0.3 if t == "hoodie" else 0.27
        pt.poly([(-0.03, v - 0.02), (0.03, v - 0.02), (0.03, v + 0.025), (-0.03, v + 0.025)], up2)
        pt.ellipse(0, v + 0.002, 0.012, 0.012, up)
        drawn["logo"] = True
    if t == "dress":
        pt.line(([(-0.09, 0.44), (0.09, 0.44)] if view != "side" else [(-0.06 * d, 0.44), (0.06 * d, 0.44)]),
                shade(up, 0.7), 0.006)


def _head(pt: Painter, a: Appearance, view: str, d: int, hx: float, hy: float, rx: float, ry: float,
          skin: Colour, hair: Colour) -> None:
    hl = a.hair_length
    hidden_hair = a.headwear != "none" and hl == "short"
    if view == "front":
        if hl == "long" and not hidden_hair:
            pt.poly([(hx - rx * 1.1, hy - 0.01), (hx + rx * 1.1, hy - 0.01), (hx + rx * 1.3, hy + 0.17),
                     (hx - rx * 1.3, hy + 0.17)], hair, "head")
        pt.ellipse(hx, hy, rx, ry, skin, "head")
        if not hidden_hair:
            pt.chord(hx, hy - ry * 0.26, rx * 1.08, ry * 0.86, 180, 360, hair, "head")
        if hl in ("medium", "long") and not hidden_hair:
            length = 0.5 if hl == "medium" else 0.6
            for sg in (-1, 1):
                pt.poly([(hx + sg * rx * 1.08, hy - ry * 0.3), (hx + sg * rx * 0.72, hy - ry * 0.3),
                         (hx + sg * rx * 0.8, hy + ry * 0.5), (hx + sg * rx * 1.1, hy + ry * 0.6 + (length - 0.5))],
                        hair, "head")
            if hl == "long":
                for sg in (-1, 1):
                    pt.poly([(hx + sg * rx * 0.85, hy + ry * 0.5), (hx + sg * rx * 1.2, hy + ry * 0.5),
                             (hx + sg * rx * 1.35, hy + 0.2), (hx + sg * rx * 0.95, hy + 0.2)], hair, "head")
        eye = (34, 26, 22)
        for sg in (-1, 1):
            pt.ellipse(hx + sg * rx * 0.38, hy + ry * 0.05, 0.0055, 0.005, eye)
        pt.line([(hx - rx * 0.2, hy + ry * 0.55), (hx + rx * 0.2, hy + ry * 0.55)], shade(skin, 0.72), 0.004)
    elif view == "back":
        pt.ellipse(hx, hy, rx, ry, skin, "head")
        if not hidden_hair:
            if hl == "short":  # the nape shows below short hair
                pt.chord(hx, hy - ry * 0.05, rx * 1.06, ry * 0.99, 160, 380, hair, "head")
            else:
                pt.ellipse(hx, hy, rx * 1.06, ry * 1.04, hair, "head")
            if hl in ("medium", "long"):
                bottom = hy + (0.1 if hl == "medium" else 0.24)
                pt.poly([(hx - rx * 1.05, hy), (hx + rx * 1.05, hy), (hx + rx * 1.2, bottom), (hx - rx * 1.2, bottom)],
                        hair, "head")
    else:
        pt.ellipse(hx, hy, rx * 1.05, ry, skin, "head")
        pt.poly([(hx + rx * 0.9 * d, hy - ry * 0.1), (hx + rx * 1.3 * d, hy + ry * 0.2), (hx + rx * 0.9 * d, hy + ry * 0.3)],
                skin, "head")  # nose
        if not hidden_hair:
            start, end = (110, 340) if d > 0 else (200, 430)
            pt.chord(hx - 0.006 * d, hy - ry * 0.04, rx * 1.1, ry * 1.04, start, end, hair, "head")
            if hl in ("medium", "long"):
                bottom = hy + (0.1 if hl == "medium" else 0.24)
                pt.poly([(hx - rx * 1.12 * d, hy - ry * 0.2), (hx - rx * 0.1 * d, hy - ry * 0.2),
                         (hx - rx * 0.3 * d, bottom), (hx - rx * 1.25 * d, bottom)], hair, "head")
        pt.ellipse(hx + rx * 0.55 * d, hy + ry * 0.02, 0.005, 0.005, (34, 26, 22))
    if a.headwear != "none":
        hwc = PALETTE[a.headwear_colour]
        if a.headwear == "cap":
            pt.chord(hx, hy - ry * 0.2, rx * 1.1, ry * 0.92, 180, 360, hwc, "head")
            if view == "front":
                pt.ellipse(hx, hy - ry * 0.22, rx * 1.05, ry * 0.18, shade(hwc, 0.78), "head")
            elif view == "side":
                pt.poly([(hx + rx * 0.6 * d, hy - ry * 0.32), (hx + rx * 1.75 * d, hy - ry * 0.2),
                         (hx + rx * 1.7 * d, hy - ry * 0.1), (hx + rx * 0.6 * d, hy - ry * 0.15)], shade(hwc, 0.78), "head")
        else:
            pt.ellipse(hx, hy - ry * 0.4, rx * 1.75, ry * 0.2, shade(hwc, 0.85), "head")  # brim
            pt.poly([(hx - rx * 0.95, hy - ry * 0.45), (hx - rx * 0.85, hy - ry * 1.35), (hx + rx * 0.85, hy - ry * 1.35),
                     (hx + rx * 0.95, hy - ry * 0.45)], hwc, "head")
            pt.line([(hx - rx * 0.95, hy - ry * 0.55), (hx + rx * 0.95, hy - ry * 0.55)], shade(hwc, 0.6), 0.008)


def _shoulder_bag(pt: Painter, a: Appearance, j, view: str, d: int, sw: float, hw: float, bag: Colour) -> None:
    strap = shade(bag, 0.8)
    if view == "side":
        pt.line([(0.02 * d, 0.175), (-0.03 * d, 0.3), (-0.06 * d, 0.46)], strap, 0.01)
        pt.poly([(-0.02 * d, 0.45), (-0.12 * d, 0.45), (-0.125 * d, 0.56), (-0.02 * d, 0.56)], bag, "belongings")
        return
    # strap from the person's bag_side shoulder across the body to the other hip
    rs = -1 if view == "front" else 1
    s_sign = rs if a.bag_side == "right" else -rs
    pt.line([(s_sign * sw * 0.6, 0.18), (-s_sign * (hw + 0.01), 0.46)], strap, 0.012)
    bx = -s_sign * (hw + 0.03)
    pt.poly([(bx - 0.045, 0.45), (bx + 0.045, 0.45), (bx + 0.048, 0.56), (bx - 0.048, 0.56)], bag, "belongings")
    pt.poly([(bx - 0.045, 0.45), (bx + 0.045, 0.45), (bx + 0.045, 0.49), (bx - 0.045, 0.49)], shade(bag, 0.8), "belongings")

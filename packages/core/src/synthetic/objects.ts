// The three object families of Omer & Abbas 2022 (Table 1), drawn as SVG in the canonical 256 frame,
// upright and centred. Nuisances (colours, print, proportions) vary within every class so that the
// defect, not the styling, tells the classes apart.
//
// bottle: good | a little dulled | braided | crooked more
// carton: good | irregular | another shape | spoiled
// spoon:  good | scratched | crooked | more crooked | broken

import type { Rng } from '../datasets/random.js';
import { blobPath, f, hslToHex, jitterPolygon, pick, polygonPath, ribbonPath, type Point } from './scene.js';

export interface ObjectSvg {
  readonly defs: string;
  readonly body: string;
}

// ---------------------------------------------------------------- bottle

export type BottleLabel = 'good' | 'a-little-dulled' | 'braided' | 'crooked-more';

export function bottleSvg(rng: Rng, label: BottleLabel): ObjectSvg {
  const hue = pick(rng, [115, 135, 30, 25, 200, 210]) + rng.normal() * 8;
  const dulled = label === 'a-little-dulled';
  const sat = (0.35 + rng.next() * 0.3) * (dulled ? 0.55 : 1);
  const light = 0.28 + rng.next() * 0.18;
  const glass = hslToHex(hue, sat, light);
  const glassDark = hslToHex(hue, sat, light * 0.55);
  const glassLight = hslToHex(hue, sat * 0.9, Math.min(0.85, light * 1.6));
  const bw = 68 + rng.next() * 16; // body width
  const nw = 20 + rng.next() * 6; // neck width
  const bottom = 222 + rng.next() * 6;
  const shoulder = 108 + rng.next() * 10;
  const neckBase = 72 + rng.next() * 6;
  const neckTop = 34 + rng.next() * 6;
  const l = 128 - bw / 2;
  const r = 128 + bw / 2;
  const nl = 128 - nw / 2;
  const nr = 128 + nw / 2;
  const body =
    `M${f(l)},${f(shoulder)} C${f(l)},${f(shoulder - 22)} ${f(nl)},${f(neckBase + 14)} ${f(nl)},${f(neckBase)} ` +
    `L${f(nr)},${f(neckBase)} C${f(nr)},${f(neckBase + 14)} ${f(r)},${f(shoulder - 22)} ${f(r)},${f(shoulder)} ` +
    `L${f(r)},${f(bottom - 10)} Q${f(r)},${f(bottom)} ${f(r - 10)},${f(bottom)} L${f(l + 10)},${f(bottom)} Q${f(l)},${f(bottom)} ${f(l)},${f(bottom - 10)} Z`;
  // Neck drawn from inside the shoulder up, so a bent neck stays attached.
  const neck = `M${f(nl)},${f(neckBase + 16)} L${f(nl)},${f(neckTop + 6)} L${f(nl - 2.5)},${f(neckTop + 6)} L${f(nl - 2.5)},${f(neckTop)} L${f(nr + 2.5)},${f(neckTop)} L${f(nr + 2.5)},${f(neckTop + 6)} L${f(nr)},${f(neckTop + 6)} L${f(nr)},${f(neckBase + 16)} Z`;
  const capColor = hslToHex(rng.next() * 360, 0.5 + rng.next() * 0.4, 0.3 + rng.next() * 0.35);
  const cap = `<rect x="${f(nl - 3.5)}" y="${f(neckTop - 14)}" width="${f(nw + 7)}" height="16" rx="2.5" fill="${capColor}"/>` +
    `<rect x="${f(nl - 3.5)}" y="${f(neckTop - 14)}" width="${f(nw + 7)}" height="16" rx="2.5" fill="url(#cylShade)"/>`;
  const defs =
    `<linearGradient id="glass" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="${glassDark}"/><stop offset="0.3" stop-color="${glassLight}"/>` +
    `<stop offset="0.6" stop-color="${glass}"/><stop offset="1" stop-color="${glassDark}"/></linearGradient>` +
    `<linearGradient id="cylShade" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="#000" stop-opacity="0.35"/><stop offset="0.35" stop-color="#fff" stop-opacity="0.25"/>` +
    `<stop offset="1" stop-color="#000" stop-opacity="0.4"/></linearGradient>` +
    `<linearGradient id="hl" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="#fff" stop-opacity="0"/><stop offset="0.5" stop-color="#fff" stop-opacity="1"/><stop offset="1" stop-color="#fff" stop-opacity="0"/></linearGradient>` +
    `<clipPath id="bodyClip"><path d="${body}"/></clipPath>` +
    (dulled ? '<filter id="frost" x="-10%" y="-10%" width="120%" height="120%"><feGaussianBlur stdDeviation="1.2"/></filter>' : '');
  // Label on the body.
  const labelTop = shoulder + 18 + rng.next() * 10;
  const labelH = 38 + rng.next() * 22;
  const labelColor = hslToHex(rng.next() * 360, 0.2 + rng.next() * 0.6, 0.55 + rng.next() * 0.35);
  const ink = hslToHex(rng.next() * 360, 0.6, 0.25);
  let print = `<rect x="${f(l)}" y="${f(labelTop)}" width="${f(bw)}" height="${f(labelH)}" fill="${labelColor}"/>`;
  for (let i = 0; i < 3; i++) {
    const w = bw * (0.3 + rng.next() * 0.45);
    print += `<rect x="${f(128 - w / 2)}" y="${f(labelTop + 8 + i * (labelH / 3.4))}" width="${f(w)}" height="${f(2.5 + (i === 0 ? 3 : 0))}" fill="${ink}" opacity="0.8"/>`;
  }
  print += `<rect x="${f(l)}" y="${f(labelTop)}" width="${f(bw)}" height="${f(labelH)}" fill="url(#cylShade)"/>`;
  // Specular highlight: strong on good glass, faint on dulled glass.
  const hlOpacity = dulled ? 0.05 + rng.next() * 0.12 : 0.5 + rng.next() * 0.35;
  const hlX = l + bw * (0.18 + rng.next() * 0.1);
  const highlight =
    `<rect x="${f(hlX)}" y="${f(shoulder - 4)}" width="${f(5 + rng.next() * 6)}" height="${f(bottom - shoulder - 10)}" rx="3" fill="url(#hl)" opacity="${f(hlOpacity)}"/>`;
  const neckHighlight = `<rect x="${f(nl + 3)}" y="${f(neckTop + 8)}" width="3" height="${f(neckBase - neckTop)}" fill="#fff" opacity="${f(hlOpacity * 0.7)}"/>`;
  let surface = '';
  if (dulled) {
    // Frosted, slightly milky, scuffed glass.
    surface += `<path d="${body}" fill="#ffffff" opacity="${f(0.14 + rng.next() * 0.16)}"/>`;
    let speckle = '';
    for (let i = 0; i < 120; i++) speckle += `<circle cx="${f(l + rng.next() * bw)}" cy="${f(shoulder - 20 + rng.next() * (bottom - shoulder + 20))}" r="${f(0.4 + rng.next() * 0.9)}"/>`;
    surface += `<g clip-path="url(#bodyClip)" fill="#ffffff" opacity="${f(0.25 + rng.next() * 0.2)}" filter="url(#frost)">${speckle}</g>`;
  }
  if (label === 'braided') {
    // A braided (woven) sleeve over part of the body: two families of diagonal strands.
    const rope = hslToHex(pick(rng, [30, 40, 20, 0, 210]), 0.15 + rng.next() * 0.4, 0.45 + rng.next() * 0.35);
    const ropeDark = hslToHex(30, 0.2, 0.15);
    const spacing = 9 + rng.next() * 6;
    const width = spacing * (0.45 + rng.next() * 0.15);
    const ang = 30 + rng.next() * 20;
    const y0 = shoulder - 10 - rng.next() * 10;
    const y1 = bottom - rng.next() * 40;
    // Over-under weave: the second family is dashed so the first shows through at alternate crossings.
    const along = spacing / Math.sin((2 * ang * Math.PI) / 180);
    let strands = '';
    for (const dir of [1, -1]) {
      const dash = dir === -1 ? ` stroke-dasharray="${f(along)} ${f(along)}"` : '';
      for (let x = l - 120; x < r + 120; x += spacing) {
        const dx = Math.tan((ang * Math.PI) / 180) * (y1 - y0) * dir;
        strands += `<line x1="${f(x)}" y1="${f(y0)}" x2="${f(x + dx)}" y2="${f(y1)}" stroke="${ropeDark}" stroke-width="${f(width + 1.6)}"${dash}/>`;
        strands += `<line x1="${f(x)}" y1="${f(y0)}" x2="${f(x + dx)}" y2="${f(y1)}" stroke="${rope}" stroke-width="${f(width)}"${dash}/>`;
      }
    }
    surface += `<g clip-path="url(#bodyClip)"><clipPath id="band"><rect x="0" y="${f(y0)}" width="256" height="${f(y1 - y0)}"/></clipPath><g clip-path="url(#band)">${strands}</g>` +
      `<rect x="${f(l)}" y="${f(y0)}" width="${f(bw)}" height="${f(y1 - y0)}" fill="url(#cylShade)"/></g>`;
  }
  const bend = label === 'crooked-more' ? (rng.next() < 0.5 ? -1 : 1) * (22 + rng.next() * 20) : rng.normal() * 1.2;
  const lean = label === 'crooked-more' ? bend * (0.12 + rng.next() * 0.2) : 0;
  const neckGroup = `<g transform="rotate(${f(bend)} 128 ${f(neckBase + 10)})"><path d="${neck}" fill="url(#glass)"/>${neckHighlight}${cap}</g>`;
  const bodyGroup =
    `<path d="${body}" fill="url(#glass)"/>${print}${surface}${highlight}` +
    `<path d="${body}" fill="none" stroke="${glassDark}" stroke-width="1.2" opacity="0.7"/>`;
  return { defs, body: `<g transform="skewX(${f(lean)}) translate(${f(-Math.tan((lean * Math.PI) / 180) * 222)} 0)">${neckGroup}${bodyGroup}</g>` };
}

// ---------------------------------------------------------------- carton

export type CartonLabel = 'good' | 'irregular' | 'another-shape' | 'spoiled';

interface CartonColours {
  front: string;
  top: string;
  side: string;
  print: string;
  accent: string;
}

function cartonColours(rng: Rng): CartonColours {
  const hue = rng.next() * 360;
  const sat = 0.15 + rng.next() * 0.55;
  const light = 0.5 + rng.next() * 0.3;
  return {
    front: hslToHex(hue, sat, light),
    top: hslToHex(hue, sat, Math.min(0.95, light * 1.15)),
    side: hslToHex(hue, sat, light * 0.72),
    print: hslToHex(hue + 150 + rng.next() * 60, 0.5 + rng.next() * 0.4, 0.3 + rng.next() * 0.3),
    accent: hslToHex(rng.next() * 360, 0.7, 0.5),
  };
}

function cartonPrint(rng: Rng, x: number, y: number, w: number, h: number, c: CartonColours): string {
  let s = `<circle cx="${f(x + w * (0.3 + rng.next() * 0.4))}" cy="${f(y + h * (0.25 + rng.next() * 0.15))}" r="${f(w * (0.12 + rng.next() * 0.1))}" fill="${c.accent}" opacity="0.85"/>`;
  s += `<rect x="${f(x)}" y="${f(y + h * (0.55 + rng.next() * 0.1))}" width="${f(w)}" height="${f(h * 0.12)}" fill="${c.print}" opacity="0.85"/>`;
  for (let i = 0; i < 3; i++) s += `<rect x="${f(x + w * 0.15)}" y="${f(y + h * (0.75 + i * 0.07))}" width="${f(w * (0.4 + rng.next() * 0.4))}" height="2.5" fill="${c.print}" opacity="0.7"/>`;
  return s;
}

export function cartonSvg(rng: Rng, label: CartonLabel): ObjectSvg {
  const c = cartonColours(rng);
  const w = 84 + rng.next() * 30;
  const h = 100 + rng.next() * 30;
  const depth = 26 + rng.next() * 14;
  const ddx = depth * 0.8;
  const ddy = -depth * 0.6;
  const x0 = 128 - (w + ddx) / 2;
  const y0 = 128 - (h + ddy) / 2 + 4;
  const defs =
    '<filter id="soft" x="-20%" y="-20%" width="140%" height="140%"><feGaussianBlur stdDeviation="2.2"/></filter>' +
    '<filter id="soft2" x="-20%" y="-20%" width="140%" height="140%"><feGaussianBlur stdDeviation="0.8"/></filter>';
  if (label === 'another-shape') {
    const kind = rng.int(3);
    if (kind === 0) {
      // Gable-top (milk) carton: box + roof + fin.
      const roof = 24 + rng.next() * 12;
      const front: Point[] = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]];
      const gable: Point[] = [[x0, y0], [x0 + w / 2, y0 - roof], [x0 + w, y0]];
      const side: Point[] = [[x0 + w, y0], [x0 + w + ddx, y0 + ddy], [x0 + w + ddx, y0 + h + ddy], [x0 + w, y0 + h]];
      const roofSide: Point[] = [[x0 + w / 2, y0 - roof], [x0 + w / 2 + ddx, y0 - roof + ddy], [x0 + w + ddx, y0 + ddy], [x0 + w, y0]];
      const apex: Point = [x0 + w / 2, y0 - roof];
      const finPts: Point[] = [apex, [apex[0] + ddx, apex[1] + ddy], [apex[0] + ddx, apex[1] + ddy - 8], [apex[0], apex[1] - 8]];
      const fin = `<path d="${polygonPath(finPts)}" fill="${c.top}" stroke="#000" stroke-opacity="0.2"/>`;
      return {
        defs,
        body: `<path d="${polygonPath(side)}" fill="${c.side}"/><path d="${polygonPath(roofSide)}" fill="${c.top}"/><path d="${polygonPath(front)}" fill="${c.front}"/>` +
          `<path d="${polygonPath(gable)}" fill="${c.front}"/>${fin}${cartonPrint(rng, x0, y0, w, h, c)}`,
      };
    }
    if (kind === 1) {
      // Cylindrical tube (e.g. a round drink carton).
      const rx = w / 2;
      const ry = 10 + rng.next() * 6;
      const cx = 128;
      const top = y0 + 4;
      const bot = y0 + h + 10;
      return {
        defs: defs + `<linearGradient id="tube" x1="0" y1="0" x2="1" y2="0"><stop offset="0" stop-color="${c.side}"/><stop offset="0.4" stop-color="${c.top}"/><stop offset="1" stop-color="${c.side}"/></linearGradient>`,
        body: `<path d="M${f(cx - rx)},${f(top)} L${f(cx - rx)},${f(bot)} A${f(rx)},${f(ry)} 0 0 0 ${f(cx + rx)},${f(bot)} L${f(cx + rx)},${f(top)} Z" fill="url(#tube)"/>` +
          `<ellipse cx="${cx}" cy="${f(top)}" rx="${f(rx)}" ry="${f(ry)}" fill="${c.top}"/>${cartonPrint(rng, cx - rx * 0.8, top + ry + 4, rx * 1.6, bot - top - ry - 6, c)}`,
      };
    }
    // Triangular prism (tent-shaped box).
    const apex: Point = [x0 + w / 2, y0 - h * 0.1];
    const front: Point[] = [apex, [x0 + w, y0 + h], [x0, y0 + h]];
    const side: Point[] = [apex, [apex[0] + ddx, apex[1] + ddy], [x0 + w + ddx, y0 + h + ddy], [x0 + w, y0 + h]];
    return {
      defs,
      body: `<path d="${polygonPath(side)}" fill="${c.side}"/><path d="${polygonPath(front)}" fill="${c.front}"/>` +
        `<circle cx="${f(apex[0])}" cy="${f(y0 + h * 0.6)}" r="${f(w * 0.15)}" fill="${c.accent}" opacity="0.85"/>` +
        `<rect x="${f(x0 + w * 0.25)}" y="${f(y0 + h * 0.82)}" width="${f(w * 0.5)}" height="${f(h * 0.07)}" fill="${c.print}"/>`,
    };
  }
  // Cuboid: front, top, right side.
  let front: Point[] = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]];
  let top: Point[] = [[x0, y0], [x0 + ddx, y0 + ddy], [x0 + w + ddx, y0 + ddy], [x0 + w, y0]];
  let side: Point[] = [[x0 + w, y0], [x0 + w + ddx, y0 + ddy], [x0 + w + ddx, y0 + h + ddy], [x0 + w, y0 + h]];
  let extra = '';
  if (label === 'irregular') {
    // Crushed corner, bulging/dented faces, crumpled edges and creases.
    const crush = 6 + rng.next() * 14;
    const which = rng.int(3);
    const moveCorner = (pts: Point[], target: Point, by: Point): Point[] => pts.map((p) => (Math.abs(p[0] - target[0]) < 0.01 && Math.abs(p[1] - target[1]) < 0.01 ? [p[0] + by[0], p[1] + by[1]] : p));
    const corner: Point = which === 0 ? [x0 + w, y0] : which === 1 ? [x0, y0 + h] : [x0 + w + ddx, y0 + ddy];
    const by: Point = which === 0 ? [-crush * 0.6, crush] : which === 1 ? [crush, -crush * 0.5] : [-crush, crush * 0.8];
    front = moveCorner(front, corner, by);
    top = moveCorner(top, corner, by);
    side = moveCorner(side, corner, by);
    const amt = 1.2 + rng.next() * 1.8;
    front = jitterPolygon(rng, front, 6, amt);
    top = jitterPolygon(rng, top, 5, amt);
    side = jitterPolygon(rng, side, 5, amt);
    for (let i = 0, n = 1 + rng.int(3); i < n; i++) {
      const cx = x0 + w * (0.2 + rng.next() * 0.6);
      const cy = y0 + h * (0.2 + rng.next() * 0.6);
      extra += `<path d="${blobPath(rng, cx, cy, 8 + rng.next() * 12, 0.4)}" fill="#000" opacity="${f(0.12 + rng.next() * 0.15)}" filter="url(#soft)"/>`;
      extra += `<path d="${blobPath(rng, cx - 3, cy - 3, 5 + rng.next() * 6, 0.4)}" fill="#fff" opacity="${f(0.1 + rng.next() * 0.1)}" filter="url(#soft)"/>`;
    }
    for (let i = 0, n = 2 + rng.int(4); i < n; i++) {
      const ax = x0 + rng.next() * w;
      const ay = y0 + rng.next() * h;
      const len = 15 + rng.next() * 35;
      const a = rng.next() * Math.PI;
      extra += `<path d="M${f(ax)},${f(ay)} q${f(Math.cos(a) * len * 0.5 + rng.normal() * 4)},${f(Math.sin(a) * len * 0.5 + rng.normal() * 4)} ${f(Math.cos(a) * len)},${f(Math.sin(a) * len)}" stroke="#000" stroke-opacity="${f(0.2 + rng.next() * 0.2)}" stroke-width="${f(0.8 + rng.next())}" fill="none"/>`;
    }
  }
  if (label === 'spoiled') {
    // Stains, damp patches, mould spots; print partly faded.
    for (let i = 0, n = 2 + rng.int(4); i < n; i++) {
      const cx = x0 + w * (0.05 + rng.next() * 0.9) + (rng.next() < 0.3 ? ddx * 0.5 : 0);
      const cy = y0 + h * (0.1 + rng.next() * 0.85);
      const col = hslToHex(pick(rng, [30, 40, 45, 20, 80]), 0.35 + rng.next() * 0.4, 0.18 + rng.next() * 0.25);
      extra += `<path d="${blobPath(rng, cx, cy, 7 + rng.next() * 16, 0.5)}" fill="${col}" opacity="${f(0.45 + rng.next() * 0.35)}" filter="url(#soft2)"/>`;
    }
    if (rng.next() < 0.7) {
      let spots = '';
      const cx = x0 + rng.next() * w;
      const cy = y0 + rng.next() * h;
      for (let i = 0; i < 10 + rng.int(20); i++) spots += `<circle cx="${f(cx + rng.normal() * 10)}" cy="${f(cy + rng.normal() * 10)}" r="${f(0.8 + rng.next() * 2.2)}"/>`;
      extra += `<g fill="${hslToHex(100 + rng.next() * 40, 0.25, 0.35 + rng.next() * 0.2)}" opacity="0.8">${spots}</g>`;
    }
    extra += `<path d="${blobPath(rng, x0 + w * rng.next(), y0 + h * (0.6 + rng.next() * 0.4), 20 + rng.next() * 15, 0.4)}" fill="#4a3b20" opacity="${f(0.15 + rng.next() * 0.15)}" filter="url(#soft)"/>`;
  }
  const clip = `<clipPath id="frontClip"><path d="${polygonPath(front)}"/></clipPath>`;
  const edges = `<path d="${polygonPath(front)}" fill="none" stroke="#000" stroke-opacity="0.25" stroke-width="1"/>`;
  return {
    defs: defs + clip,
    body:
      `<path d="${polygonPath(side)}" fill="${c.side}"/><path d="${polygonPath(top)}" fill="${c.top}"/><path d="${polygonPath(front)}" fill="${c.front}"/>` +
      `<g clip-path="url(#frontClip)">${cartonPrint(rng, x0, y0, w, h, c)}</g>${edges}` +
      `<g clip-path="url(#cartonAll)">${extra}</g>` +
      `<clipPath id="cartonAll"><path d="${polygonPath(front)}"/><path d="${polygonPath(top)}"/><path d="${polygonPath(side)}"/></clipPath>`,
  };
}

// ---------------------------------------------------------------- spoon

export type SpoonLabel = 'good' | 'scratched' | 'crooked' | 'more-crooked' | 'broken';

export function spoonSvg(rng: Rng, label: SpoonLabel): ObjectSvg {
  const tint = pick(rng, [210, 210, 210, 40, 30]);
  const metalSat = tint === 210 ? 0.05 + rng.next() * 0.1 : 0.3 + rng.next() * 0.3;
  const base = 0.55 + rng.next() * 0.2;
  const mDark = hslToHex(tint, metalSat, base * 0.55);
  const mMid = hslToHex(tint, metalSat, base);
  const mLight = hslToHex(tint, metalSat, Math.min(0.95, base * 1.35));
  const bowlCy = 62 + rng.next() * 8;
  const bowlRx = 21 + rng.next() * 6;
  const bowlRy = 30 + rng.next() * 6;
  const handleStart = bowlCy + bowlRy - 4;
  const handleLen = 128 + rng.next() * 20;
  const wNeck = 6 + rng.next() * 2;
  const wEnd = 12 + rng.next() * 5;
  const width = (t: number): number => (t < 0.15 ? wNeck + (t / 0.15) * 1.5 : wNeck + 1.5 + ((t - 0.15) / 0.85) * (wEnd - wNeck - 1.5));
  // Handle centre line: straight down, with a smooth bend for the crooked classes.
  let bendAt = 0.35 + rng.next() * 0.35;
  let bendDeg = rng.normal() * 1.2;
  if (label === 'crooked') bendDeg = (rng.next() < 0.5 ? -1 : 1) * (9 + rng.next() * 9);
  if (label === 'more-crooked') {
    bendDeg = (rng.next() < 0.5 ? -1 : 1) * (26 + rng.next() * 22);
    bendAt = 0.25 + rng.next() * 0.35;
  }
  const n = 48;
  let cut = 1;
  if (label === 'broken') cut = 0.25 + rng.next() * 0.35;
  const centre: Point[] = [];
  let x = 128;
  let y = handleStart;
  let heading = 90; // degrees, pointing down
  const step = handleLen / (n - 1);
  for (let i = 0; i < n; i++) {
    const t = i / (n - 1);
    centre.push([x, y]);
    const spread = 0.08;
    if (t > bendAt - spread && t < bendAt + spread) heading += bendDeg / ((2 * spread) * (n - 1));
    x += Math.cos((heading * Math.PI) / 180) * step;
    y += Math.sin((heading * Math.PI) / 180) * step;
  }
  const keep = Math.max(3, Math.round(cut * (n - 1)) + 1);
  const handle = ribbonPath(rng, centre.slice(0, keep), (t) => width((t * (keep - 1)) / (n - 1)), label === 'broken' ? 'jagged' : 'round');
  const bowl = `<ellipse cx="128" cy="${f(bowlCy)}" rx="${f(bowlRx)}" ry="${f(bowlRy)}"/>`;
  const defs =
    `<linearGradient id="metal" x1="0" y1="0" x2="1" y2="0.15"><stop offset="0" stop-color="${mDark}"/><stop offset="0.35" stop-color="${mLight}"/>` +
    `<stop offset="0.55" stop-color="${mMid}"/><stop offset="1" stop-color="${mDark}"/></linearGradient>` +
    `<radialGradient id="bowlIn" cx="0.45" cy="0.6" r="0.6"><stop offset="0" stop-color="${mLight}"/><stop offset="0.7" stop-color="${mMid}"/><stop offset="1" stop-color="${mDark}"/></radialGradient>` +
    `<clipPath id="spoonClip"><path d="${handle}"/>${bowl}</clipPath>`;
  let parts =
    `<path d="${handle}" fill="url(#metal)" stroke="${mDark}" stroke-width="0.8"/>` +
    `<ellipse cx="128" cy="${f(bowlCy)}" rx="${f(bowlRx)}" ry="${f(bowlRy)}" fill="url(#metal)" stroke="${mDark}" stroke-width="0.8"/>` +
    `<ellipse cx="128" cy="${f(bowlCy + 2)}" rx="${f(bowlRx - 3.5)}" ry="${f(bowlRy - 4)}" fill="url(#bowlIn)"/>` +
    `<ellipse cx="${f(120 + rng.next() * 4)}" cy="${f(bowlCy - 8)}" rx="${f(4 + rng.next() * 3)}" ry="${f(9 + rng.next() * 5)}" fill="#fff" opacity="${f(0.35 + rng.next() * 0.3)}"/>`;
  if (label === 'scratched') {
    let lines = '';
    for (let i = 0, k = 4 + rng.int(6); i < k; i++) {
      const onBowl = rng.next() < 0.6;
      const sx = onBowl ? 128 + (rng.next() - 0.5) * bowlRx * 1.4 : centre[Math.floor(rng.next() * (keep - 1))]![0] + rng.normal() * 2;
      const sy = onBowl ? bowlCy + (rng.next() - 0.5) * bowlRy * 1.4 : centre[Math.floor(rng.next() * (keep - 1))]![1];
      const len = 10 + rng.next() * 30;
      const a = rng.next() * Math.PI * 2;
      const light = rng.next() < 0.5;
      lines += `<path d="M${f(sx)},${f(sy)} q${f(Math.cos(a) * len * 0.5 + rng.normal() * 3)},${f(Math.sin(a) * len * 0.5 + rng.normal() * 3)} ${f(Math.cos(a) * len)},${f(Math.sin(a) * len)}" ` +
        `stroke="${light ? '#ffffff' : '#3a3a3a'}" stroke-opacity="${f(0.45 + rng.next() * 0.4)}" stroke-width="${f(0.6 + rng.next() * 0.9)}" fill="none"/>`;
    }
    parts += `<g clip-path="url(#spoonClip)">${lines}</g>`;
  }
  if (label === 'broken' && rng.next() < 0.7) {
    // The broken-off piece lies nearby.
    const rest = centre.slice(keep - 1);
    if (rest.length >= 3) {
      const piece = ribbonPath(rng, rest, (t) => width((keep - 1 + t * (rest.length - 1)) / (n - 1)), 'round');
      const pivot = rest[0] as Point;
      const side = rng.next() < 0.5 ? -1 : 1;
      parts += `<g transform="translate(${f(side * (10 + rng.next() * 22))} ${f(6 + rng.next() * 12)}) rotate(${f((rng.next() - 0.5) * 60)} ${f(pivot[0])} ${f(pivot[1])})"><path d="${piece}" fill="url(#metal)" stroke="${mDark}" stroke-width="0.8"/></g>`;
    }
  }
  // Centre the drawing (the bowl is at the top of the frame; shift the whole spoon to the middle).
  const shift = 128 - (bowlCy - bowlRy + handleStart + handleLen) / 2;
  return { defs, body: `<g transform="translate(0 ${f(shift)})">${parts}</g>` };
}

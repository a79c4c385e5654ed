// Shared pieces of the procedural scenes: colours, geometry helpers, background, lighting, shadow, and
// the raster post-processing (sensor noise, white balance) done on raw pixels with the seeded PRNG.
// Every scene is drawn in a canonical 256 x 256 frame and scaled to the output size by the viewBox.

import sharp from 'sharp';

import type { Rng } from '../datasets/random.js';

export const FRAME = 256;

export type Point = readonly [number, number];

export function f(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

export function hslToHex(h: number, s: number, l: number): string {
  const hh = (((h % 360) + 360) % 360) / 360;
  const ss = Math.min(1, Math.max(0, s));
  const ll = Math.min(1, Math.max(0, l));
  const hue = (p: number, q: number, t: number): number => {
    let tt = t;
    if (tt < 0) tt += 1;
    if (tt > 1) tt -= 1;
    if (tt < 1 / 6) return p + (q - p) * 6 * tt;
    if (tt < 1 / 2) return q;
    if (tt < 2 / 3) return p + (q - p) * (2 / 3 - tt) * 6;
    return p;
  };
  let r = ll;
  let g = ll;
  let b = ll;
  if (ss > 0) {
    const q = ll < 0.5 ? ll * (1 + ss) : ll + ss - ll * ss;
    const p = 2 * ll - q;
    r = hue(p, q, hh + 1 / 3);
    g = hue(p, q, hh);
    b = hue(p, q, hh - 1 / 3);
  }
  const hex = (v: number): string => Math.round(v * 255).toString(16).padStart(2, '0');
  return `#${hex(r)}${hex(g)}${hex(b)}`;
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[rng.int(items.length)] as T;
}

export function polygonPath(points: readonly Point[]): string {
  return `M${points.map((p) => `${f(p[0])},${f(p[1])}`).join(' L')} Z`;
}

/** Points along a segment, excluding the end point. */
export function subdivide(a: Point, b: Point, n: number): Point[] {
  const out: Point[] = [];
  for (let i = 0; i < n; i++) out.push([a[0] + ((b[0] - a[0]) * i) / n, a[1] + ((b[1] - a[1]) * i) / n]);
  return out;
}

/** A closed polygon with every edge subdivided and the points jittered (crumpled / irregular outlines). */
export function jitterPolygon(rng: Rng, corners: readonly Point[], perEdge: number, amount: number): Point[] {
  const out: Point[] = [];
  for (let i = 0; i < corners.length; i++) {
    const a = corners[i] as Point;
    const b = corners[(i + 1) % corners.length] as Point;
    for (const p of subdivide(a, b, perEdge)) out.push([p[0] + rng.normal() * amount, p[1] + rng.normal() * amount]);
  }
  return out;
}

/** An irregular blob (stain, dent) around a centre. */
export function blobPath(rng: Rng, cx: number, cy: number, r: number, irregularity = 0.35, n = 14): string {
  const pts: Point[] = [];
  const phase = rng.next() * Math.PI * 2;
  for (let i = 0; i < n; i++) {
    const a = phase + (i / n) * Math.PI * 2;
    const rr = r * (1 + (rng.next() - 0.5) * 2 * irregularity);
    pts.push([cx + Math.cos(a) * rr, cy + Math.sin(a) * rr * (0.7 + rng.next() * 0.3)]);
  }
  // Smooth closed curve through the points (Catmull-Rom -> cubic Bezier).
  let d = `M${f(pts[0]![0])},${f(pts[0]![1])}`;
  for (let i = 0; i < n; i++) {
    const p0 = pts[(i - 1 + n) % n]!;
    const p1 = pts[i]!;
    const p2 = pts[(i + 1) % n]!;
    const p3 = pts[(i + 2) % n]!;
    const c1: Point = [p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6];
    const c2: Point = [p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6];
    d += ` C${f(c1[0])},${f(c1[1])} ${f(c2[0])},${f(c2[1])} ${f(p2[0])},${f(p2[1])}`;
  }
  return `${d} Z`;
}

/**
 * Outline of a stroke of varying width along a centre line (spoon handles): left side forward, then
 * the end cap ('round' or 'jagged' for a break), right side back.
 */
export function ribbonPath(rng: Rng, centre: readonly Point[], width: (t: number) => number, endCap: 'round' | 'jagged' | 'flat'): string {
  const n = centre.length;
  const left: Point[] = [];
  const right: Point[] = [];
  for (let i = 0; i < n; i++) {
    const a = centre[Math.max(0, i - 1)] as Point;
    const b = centre[Math.min(n - 1, i + 1)] as Point;
    const tx = b[0] - a[0];
    const ty = b[1] - a[1];
    const len = Math.hypot(tx, ty) || 1;
    const nx = -ty / len;
    const ny = tx / len;
    const w = width(i / (n - 1)) / 2;
    const p = centre[i] as Point;
    left.push([p[0] + nx * w, p[1] + ny * w]);
    right.push([p[0] - nx * w, p[1] - ny * w]);
  }
  let d = `M${f(left[0]![0])},${f(left[0]![1])}`;
  for (let i = 1; i < n; i++) d += ` L${f(left[i]![0])},${f(left[i]![1])}`;
  const le = left[n - 1]!;
  const re = right[n - 1]!;
  if (endCap === 'round') {
    const r = Math.hypot(le[0] - re[0], le[1] - re[1]) / 2;
    d += ` A${f(r)},${f(r)} 0 0 0 ${f(re[0])},${f(re[1])}`;
  } else if (endCap === 'jagged') {
    const teeth = 4 + rng.int(3);
    const dir = [centre[n - 1]![0] - centre[n - 2]![0], centre[n - 1]![1] - centre[n - 2]![1]];
    const dl = Math.hypot(dir[0]!, dir[1]!) || 1;
    for (let k = 1; k < teeth; k++) {
      const t = k / teeth;
      const depth = (rng.next() - 0.3) * 6;
      d += ` L${f(le[0] + (re[0] - le[0]) * t + (dir[0]! / dl) * depth)},${f(le[1] + (re[1] - le[1]) * t + (dir[1]! / dl) * depth)}`;
    }
    d += ` L${f(re[0])},${f(re[1])}`;
  } else d += ` L${f(re[0])},${f(re[1])}`;
  for (let i = n - 2; i >= 0; i--) d += ` L${f(right[i]![0])},${f(right[i]![1])}`;
  return `${d} Z`;
}

/** Rotates point p about c by deg degrees. */
export function rotate(p: Point, c: Point, deg: number): Point {
  const a = (deg * Math.PI) / 180;
  const dx = p[0] - c[0];
  const dy = p[1] - c[1];
  return [c[0] + dx * Math.cos(a) - dy * Math.sin(a), c[1] + dx * Math.sin(a) + dy * Math.cos(a)];
}

export interface SceneStyle {
  /** Object pose: rotation (deg), translation (px in the 256 frame), scale. */
  readonly rotation: number;
  readonly dx: number;
  readonly dy: number;
  readonly scale: number;
  /** Light direction (deg) and strength 0..1; exposure multiplier. */
  readonly lightAngle: number;
  readonly lightStrength: number;
  readonly exposure: number;
  /** Sensor noise sigma in 8-bit units; white-balance gains. */
  readonly noise: number;
  readonly gains: readonly [number, number, number];
  readonly blur: number;
}

export function randomStyle(rng: Rng, opts: { maxRotation: number; maxShift: number; scale: [number, number] }): SceneStyle {
  return {
    rotation: (rng.next() * 2 - 1) * opts.maxRotation,
    dx: (rng.next() * 2 - 1) * opts.maxShift,
    dy: (rng.next() * 2 - 1) * opts.maxShift,
    scale: opts.scale[0] + rng.next() * (opts.scale[1] - opts.scale[0]),
    lightAngle: rng.next() * 360,
    lightStrength: 0.15 + rng.next() * 0.35,
    exposure: 0.8 + rng.next() * 0.4,
    noise: 2 + rng.next() * 6,
    gains: [1 + rng.normal() * 0.04, 1 + rng.normal() * 0.03, 1 + rng.normal() * 0.04],
    blur: rng.next() < 0.3 ? 0.3 + rng.next() * 0.5 : 0,
  };
}

/** Background: a surface colour with a gradient and an optional texture (conveyor slats, cloth weave, speckle). */
export function backgroundSvg(rng: Rng): { defs: string; body: string } {
  const hue = rng.next() * 360;
  const sat = rng.next() * 0.25;
  const light = 0.25 + rng.next() * 0.5;
  const c1 = hslToHex(hue, sat, light);
  const c2 = hslToHex(hue + rng.normal() * 10, sat, light * (0.75 + rng.next() * 0.4));
  const ang = rng.next() * 360;
  const x2 = 0.5 + Math.cos((ang * Math.PI) / 180) / 2;
  const y2 = 0.5 + Math.sin((ang * Math.PI) / 180) / 2;
  const defs = `<linearGradient id="bg" x1="${f(1 - x2)}" y1="${f(1 - y2)}" x2="${f(x2)}" y2="${f(y2)}"><stop offset="0" stop-color="${c1}"/><stop offset="1" stop-color="${c2}"/></linearGradient>`;
  let body = `<rect x="-64" y="-64" width="${FRAME + 128}" height="${FRAME + 128}" fill="url(#bg)"/>`;
  const kind = rng.int(4);
  const ink = light > 0.45 ? '#000000' : '#ffffff';
  if (kind === 0) {
    const step = 14 + rng.int(20);
    const tilt = (rng.next() * 2 - 1) * 30;
    let lines = '';
    for (let x = -FRAME; x < 2 * FRAME; x += step) lines += `<line x1="${x}" y1="-64" x2="${x}" y2="${FRAME + 64}"/>`;
    body += `<g transform="rotate(${f(tilt)} 128 128)" stroke="${ink}" stroke-opacity="${f(0.05 + rng.next() * 0.08)}" stroke-width="${f(1 + rng.next() * 2)}">${lines}</g>`;
  } else if (kind === 1) {
    let dots = '';
    for (let i = 0; i < 160; i++) dots += `<circle cx="${f(rng.next() * FRAME)}" cy="${f(rng.next() * FRAME)}" r="${f(0.4 + rng.next() * 1.4)}"/>`;
    body += `<g fill="${ink}" fill-opacity="${f(0.05 + rng.next() * 0.08)}">${dots}</g>`;
  } else if (kind === 2) {
    const step = 6 + rng.int(6);
    let lines = '';
    for (let x = 0; x < FRAME; x += step) lines += `<line x1="${x}" y1="0" x2="${x}" y2="${FRAME}"/><line x1="0" y1="${x}" x2="${FRAME}" y2="${x}"/>`;
    body += `<g stroke="${ink}" stroke-opacity="${f(0.03 + rng.next() * 0.04)}" stroke-width="1">${lines}</g>`;
  }
  return { defs, body };
}

/** Soft drop shadow of the element with id `ref` and the lighting overlays. */
export function shadowDefs(): string {
  return (
    '<filter id="shadow" x="-30%" y="-30%" width="160%" height="160%">' +
    '<feColorMatrix type="matrix" values="0 0 0 0 0  0 0 0 0 0  0 0 0 0 0  0 0 0 0.45 0"/>' +
    '<feGaussianBlur stdDeviation="5"/></filter>'
  );
}

export function lightingSvg(style: SceneStyle): { defs: string; body: string } {
  const a = (style.lightAngle * Math.PI) / 180;
  const x2 = 0.5 + Math.cos(a) / 2;
  const y2 = 0.5 + Math.sin(a) / 2;
  const s = style.lightStrength;
  const defs =
    `<linearGradient id="light" x1="${f(1 - x2)}" y1="${f(1 - y2)}" x2="${f(x2)}" y2="${f(y2)}">` +
    `<stop offset="0" stop-color="#ffffff" stop-opacity="${f(s * 0.8)}"/><stop offset="0.5" stop-color="#ffffff" stop-opacity="0"/>` +
    `<stop offset="0.5" stop-color="#000000" stop-opacity="0"/><stop offset="1" stop-color="#000000" stop-opacity="${f(s)}"/></linearGradient>`;
  let body = `<rect width="${FRAME}" height="${FRAME}" fill="url(#light)"/>`;
  if (style.exposure < 1) body += `<rect width="${FRAME}" height="${FRAME}" fill="#000000" fill-opacity="${f(1 - style.exposure)}"/>`;
  else body += `<rect width="${FRAME}" height="${FRAME}" fill="#ffffff" fill-opacity="${f((style.exposure - 1) * 0.6)}"/>`;
  return { defs, body };
}

/** Assembles the scene SVG: background, shadow, object (posed), lighting. */
export function sceneSvg(rng: Rng, style: SceneStyle, size: number, object: { defs: string; body: string }): string {
  const bg = backgroundSvg(rng);
  const light = lightingSvg(style);
  const pose = `translate(${f(style.dx)} ${f(style.dy)}) rotate(${f(style.rotation)} 128 128) translate(128 128) scale(${f(style.scale)}) translate(-128 -128)`;
  const sx = Math.cos((style.lightAngle * Math.PI) / 180) * -6;
  const sy = Math.sin((style.lightAngle * Math.PI) / 180) * -6;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${size}" height="${size}" viewBox="0 0 ${FRAME} ${FRAME}">` +
    `<defs>${bg.defs}${light.defs}${shadowDefs()}${object.defs}<g id="obj">${object.body}</g></defs>` +
    bg.body +
    `<g transform="translate(${f(sx)} ${f(sy)})"><g transform="${pose}"><use xlink:href="#obj" filter="url(#shadow)"/></g></g>` +
    `<g transform="${pose}"><use xlink:href="#obj"/></g>` +
    light.body +
    '</svg>'
  );
}

/** Renders the SVG, then applies white balance and Gaussian sensor noise from the PRNG; returns PNG. */
export async function renderScene(svg: string, style: SceneStyle, rng: Rng, size: number): Promise<Buffer> {
  let img = sharp(Buffer.from(svg, 'utf8')).removeAlpha();
  if (style.blur > 0) img = img.blur(0.3 + style.blur);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const out = Buffer.alloc(data.length);
  const ch = info.channels;
  for (let i = 0; i < data.length; i += ch) {
    for (let c = 0; c < 3; c++) {
      const v = (data[i + c] as number) * (style.gains[c] as number) + rng.normal() * style.noise;
      out[i + c] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
    }
    for (let c = 3; c < ch; c++) out[i + c] = data[i + c] as number;
  }
  return sharp(out, { raw: { width: info.width, height: info.height, channels: ch as 3 } }).resize(size, size).png({ compressionLevel: 6 }).toBuffer();
}

// Small SVG helpers and the SVG -> PNG step (sharp / librsvg). Text uses common sans-serif fonts; on a
// machine without fonts librsvg still renders the shapes.

import sharp from 'sharp';

export const FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Rounds for SVG coordinates (keeps files small and deterministic). */
export function num(v: number, digits = 2): string {
  const s = v.toFixed(digits);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

export function svgDocument(width: number, height: number, body: string, background = '#ffffff'): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT_FAMILY}">` +
    `<rect width="${width}" height="${height}" fill="${background}"/>${body}</svg>`
  );
}

export function svgText(x: number, y: number, text: string, attrs: { size?: number; anchor?: 'start' | 'middle' | 'end'; fill?: string; weight?: string; rotate?: number } = {}): string {
  const rot = attrs.rotate ? ` transform="rotate(${attrs.rotate} ${num(x)} ${num(y)})"` : '';
  return `<text x="${num(x)}" y="${num(y)}" font-size="${attrs.size ?? 12}" text-anchor="${attrs.anchor ?? 'start'}" fill="${attrs.fill ?? '#222'}"${attrs.weight ? ` font-weight="${attrs.weight}"` : ''}${rot}>${escapeXml(text)}</text>`;
}

/** Renders an SVG string to PNG bytes (deterministic for the same input). */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg, 'utf8')).png({ compressionLevel: 9 }).toBuffer();
}

/** Linear blend of two RGB colours, t in [0, 1]. */
export function mixColor(a: readonly [number, number, number], b: readonly [number, number, number], t: number): string {
  const c = [0, 1, 2].map((i) => Math.round((a[i] as number) + ((b[i] as number) - (a[i] as number)) * Math.min(1, Math.max(0, t))));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** 'data:image/png;base64,...' */
export function pngDataUri(png: Uint8Array): string {
  return `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
}

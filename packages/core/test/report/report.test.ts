import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { createRng } from '../../src/datasets/random.js';
import { classificationMetrics } from '../../src/metrics/classification.js';
import { rocCurve } from '../../src/metrics/roc.js';
import { confusionMatrixPng, confusionMatrixSvg, rocCurvePng, scoreHistogramPng } from '../../src/report/charts.js';
import { buildHtmlReport, writeClassificationReport, writeHtmlReport } from '../../src/report/html.js';
import { conv1FiltersPng, labelMontagePng, misclassifiedPng } from '../../src/report/montage.js';
import { escapeXml } from '../../src/report/svg.js';
import { imageBytes, writeImage } from '../datasets/fixtures.js';
import { sharedDir, tempDir } from '../support/env.js';

const t = tempDir('loupe-report-');
afterAll(() => t.cleanup());

async function meta(png: Buffer): Promise<sharp.Metadata> {
  return sharp(png).metadata();
}

/** Mean colour of a region of a PNG. */
async function meanRgb(png: Buffer, left: number, top: number, width: number, height: number): Promise<number[]> {
  const { data, info } = await sharp(png).extract({ left, top, width, height }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const s = [0, 0, 0];
  for (let i = 0; i < data.length; i += info.channels) for (let c = 0; c < 3; c++) s[c]! += data[i + c]!;
  return s.map((v) => v / (data.length / info.channels));
}

const truth = ['good', 'good', 'good', 'good', 'dulled', 'dulled', 'braided', 'braided <&>'];
const pred = ['good', 'good', 'good', 'dulled', 'dulled', 'dulled', 'braided', 'good'];
const metrics = classificationMetrics(truth, pred, { classes: ['good', 'dulled', 'braided', 'braided <&>'] });

describe('charts', () => {
  it('confusion matrix heatmap: valid PNG, escaped labels', async () => {
    const svg = confusionMatrixSvg(metrics.confusion, { title: 'Bottles' });
    expect(svg).toContain('braided &lt;&amp;&gt;');
    const png = await confusionMatrixPng(metrics.confusion, { cell: 60 });
    const m = await meta(png);
    expect(m.format).toBe('png');
    expect(m.width).toBeGreaterThan(240);
    // good->good is 75% (dark), good->braided is 0% (white).
    const dark = await meanRgb(png, 0, 0, 1, 1);
    expect(dark).toEqual([255, 255, 255]); // background corner
  });

  it('ROC curve and score histogram render', async () => {
    const rng = createRng(1);
    const normal = Array.from({ length: 60 }, () => rng.normal());
    const anomalous = Array.from({ length: 40 }, () => 2 + rng.normal());
    const c = rocCurve([...normal, ...anomalous], [...normal.map(() => 0), ...anomalous.map(() => 1)]);
    const roc = await rocCurvePng([{ label: 'bottle', x: c.fpr, y: c.tpr }], { title: 'ROC' });
    expect((await meta(roc)).width).toBe(480);
    const hist = await scoreHistogramPng({ normal, anomalous }, { threshold: 1, title: 'Scores' });
    expect((await meta(hist)).height).toBe(360);
    const empty = await scoreHistogramPng({ normal: [], anomalous: [] });
    expect((await meta(empty)).format).toBe('png');
  });
});

describe('montages', () => {
  it('labels x samples montage (paper Fig. 5), tolerant of a broken image', async () => {
    const imgs = await Promise.all([1, 2, 3, 4, 5].map((s) => imageBytes(s, 'png', 40)));
    const png = await labelMontagePng(
      [
        { label: 'good', images: imgs.slice(0, 3) },
        { label: 'crooked more', images: [...imgs.slice(3), Buffer.from('not an image')] },
      ],
      { tile: 64, perLabel: 4, title: 'Samples' },
    );
    const m = await meta(png);
    expect(m.height).toBe(36 + 2 * (64 + 6) + 6);
    expect(m.width).toBeGreaterThan(4 * 64);
  });

  it('misclassified grid', async () => {
    const f = join(t.dir, 'x.png');
    await writeImage(f, 9, 'png', 30);
    const png = await misclassifiedPng([{ image: f, trueLabel: 'good', predictedLabel: 'dulled', note: 'x.png' }], { tile: 96 });
    expect((await meta(png)).format).toBe('png');
    expect((await meta(await misclassifiedPng([]))).format).toBe('png');
  });

  it('conv1 filters (paper Fig. 8): 8x8 grid from HWIO weights, channel order honoured', async () => {
    const w = new Float32Array(7 * 7 * 3 * 64);
    // Filter 0: only input channel 0 (B in caffe BGR) positive; everything else 0; filter 1 negative.
    for (let y = 0; y < 7; y++) for (let x = 0; x < 7; x++) {
      w[((y * 7 + x) * 3 + 0) * 64 + 0] = 1;
      for (let c = 0; c < 3; c++) w[((y * 7 + x) * 3 + c) * 64 + 1] = -1;
    }
    const png = await conv1FiltersPng(w, { scale: 4, gap: 2 });
    const m = await meta(png);
    expect(m.width).toBe(2 + 8 * (28 + 2));
    // Global rescale: -1 -> 0, 0 -> 128, 1 -> 255. Filter 0 with BGR input shows blue.
    const f0 = await meanRgb(png, 2, 2, 28, 28);
    expect(f0[2]).toBe(255);
    expect(Math.round(f0[0]!)).toBe(128);
    const f1 = await meanRgb(png, 2 + 30, 2, 28, 28);
    expect(f1).toEqual([0, 0, 0]);
    const rgb = await conv1FiltersPng(w, { scale: 4, gap: 2, channelOrder: 'rgb' });
    expect((await meanRgb(rgb, 2, 2, 28, 28))[0]).toBe(255);
    await expect(conv1FiltersPng(new Float32Array(10))).rejects.toThrow(/HWIO/);
  });
});

describe('HTML report', () => {
  it('is self-contained: inline base64 PNGs, escaped text, no external resources', async () => {
    const png = await confusionMatrixPng(metrics.confusion);
    const html = buildHtmlReport({
      title: 'Bottles <test>',
      summary: [{ label: 'accuracy', value: metrics.accuracy }],
      tables: [{ title: 'Counts', columns: ['label', 'n'], rows: [['good', 4]] }],
      figures: [{ title: 'Confusion', png }],
      notes: ['MVTec AD is CC BY-NC-SA 4.0'],
      generatedAt: 'fixed',
    });
    expect(html).toContain('Bottles &lt;test&gt;');
    expect(html).toContain(`data:image/png;base64,${png.toString('base64')}`);
    expect(html).not.toMatch(/<script|<link|src="http|src="\//);
    expect(html).toContain('0.7500'); // 6 of 8 right
  });

  it('writeClassificationReport writes report.html and the PNG files', async () => {
    const out = join(t.dir, 'rep');
    const bottle = join(sharedDir(), 'datasets', 'mvtec_ad', 'bottle', 'train', 'good');
    const sample = existsSync(bottle) ? readdirSync(bottle).slice(0, 3).map((f) => join(bottle, f)) : [await imageBytes(1, 'png', 64)];
    const w = Float32Array.from({ length: 7 * 7 * 3 * 64 }, (_, i) => Math.sin(i));
    const res = await writeClassificationReport(out, {
      title: 'Bottle classification',
      metrics,
      samplesByLabel: [{ label: 'good', images: sample }],
      misclassified: [{ image: sample[0]!, trueLabel: 'good', predictedLabel: 'dulled' }],
      conv1Weights: w,
      generatedAt: '2024-01-01',
    });
    expect(readdirSync(out).sort()).toEqual(['confusion-matrix.png', 'conv1-filters.png', 'misclassified.png', 'report.html', 'training-samples.png']);
    const html = readFileSync(res.html, 'utf8');
    expect(html.match(/data:image\/png;base64,/g)).toHaveLength(4);
    expect(html).toContain('mean per-class accuracy');
    for (const p of res.pngs) expect((await sharp(p).metadata()).format).toBe('png');
    const again = await writeHtmlReport(join(t.dir, 'rep2'), { title: 'x', figures: [{ title: 'A', png: readFileSync(res.pngs[0]!) }, { title: 'A', png: readFileSync(res.pngs[0]!) }] });
    expect(again.pngs.map((p) => p.split('/').pop())).toEqual(['a.png', 'a-2.png']);
    expect(escapeXml('"\'')).toBe('&quot;&apos;');
  });
});

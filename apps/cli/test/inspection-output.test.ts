// The one output contract of predict / inspect (local and remote print through it): JSON keys and
// rounding, the human line, the summary and the exit code rule.
import { describe, expect, it } from 'vitest';

import { HeatmapFolder, lineHuman, lineJson, round4, Tally, type PredictLine } from '../src/inspection-output.js';

const svmLine: PredictLine = {
  file: '/parts/a.png',
  verdict: 'anomalous',
  score: 0.731058578,
  rawScore: 1.00000004,
  defectType: 'crack',
  classScores: [
    { name: 'good', score: 0.1234567 },
    { name: 'crack', score: 0.87654 },
  ],
};

describe('the predict output contract', () => {
  it('JSON: the contract keys in order, every score to 4 decimals, classScores as an object in class order', () => {
    expect(lineJson(svmLine)).toBe('{"file":"/parts/a.png","verdict":"anomalous","score":0.7311,"rawScore":1,"defectType":"crack","classScores":{"good":0.1235,"crack":0.8765}}');
    const oc: PredictLine = { file: 'b.png', verdict: 'good', score: 0.25, rawScore: 7.123456, defectType: null, heatmap: 'h/b_heatmap.png', mask: 'h/b_mask.png' };
    expect(Object.keys(JSON.parse(lineJson(oc)) as object)).toEqual(['file', 'verdict', 'score', 'rawScore', 'defectType', 'heatmap', 'mask']);
    expect(lineJson({ file: 'c.png', error: { code: 'IMAGE_DECODE', message: 'cannot decode image c.png' } })).toBe('{"file":"c.png","error":{"code":"IMAGE_DECODE","message":"cannot decode image c.png"}}');
    expect(round4(-0.00001)).toBe(0);
    expect(Object.is(round4(-0.00001), -0)).toBe(false);
  });

  it('human: verdict padded, score to 4 decimals, file, defect type; errors keep the columns', () => {
    expect(lineHuman(svmLine)).toBe('anomalous  0.7311  /parts/a.png  crack');
    expect(lineHuman({ file: 'b\n.png', verdict: 'good', score: 0.2, rawScore: 3, defectType: null })).toBe('good       0.2000  b\\x0a.png');
    expect(lineHuman({ file: 'c.png', error: { code: 'TOO_LARGE', message: 'c.png is 17.0 MiB' } })).toBe('error      ------  c.png  TOO_LARGE: c.png is 17.0 MiB');
  });

  it('summary and exit code: 0 all good, 1 some anomalous, 2 some not inspected', () => {
    const t = new Tally();
    t.add({ file: 'a', verdict: 'good', score: 0.1, rawScore: 1, defectType: null });
    expect(t.exitCode()).toBe(0);
    t.add(svmLine);
    expect(t.exitCode()).toBe(1);
    t.add({ file: 'c', error: { code: 'IMAGE_EMPTY', message: 'empty' } });
    expect(t.exitCode()).toBe(2);
    expect(JSON.parse(t.json())).toEqual({ total: 3, good: 1, anomalous: 1, errors: 1 });
    expect(t.human()).toBe('3 images: 1 good, 1 anomalous, 1 error (score >= 0.5 = anomalous)');
  });

  it('heatmap names: sub-folders kept, letters of any script kept, unique', () => {
    const h = new HeatmapFolder('/out');
    expect(h.paths('broken_large_000').heatmap).toBe('/out/broken_large_000_heatmap.png');
    expect(h.paths('Flasche ä#1 瓶').mask).toBe('/out/Flasche_ä_1_瓶_mask.png');
    expect(h.paths('broken_large_000').heatmap).toBe('/out/broken_large_000-2_heatmap.png');
  });
});

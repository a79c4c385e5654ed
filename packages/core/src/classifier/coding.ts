// Error-correcting output codes, as MATLAB's fitcecoc: a coding matrix M [K classes][L learners] with
// entries +1 / -1 / 0, binary targets per learner, and two decodings: loss-weighted with the hinge loss
// (fitcecoc's default) and voting (libsvm's and liblinear's one-vs-one rule), ties by the loss.

import { LoupeError } from '../errors.js';

/** 'onevsone' (fitcecoc's default, the paper's) or 'onevsall'. */
export type CodingName = 'onevsone' | 'onevsall';

export interface CodingMatrix {
  readonly name: CodingName;
  /** K */
  readonly classes: number;
  /** L */
  readonly learners: number;
  /** Row-major [K][L], entries +1 / -1 / 0. */
  readonly matrix: Int8Array;
}

/**
 * 'vote': each learner votes for the classes whose code its score's sign agrees with, the most votes
 * win, ties by the loss-weighted hinge loss. 'lossweighted': fitcecoc's default. The hinge loss grows
 * with the margin, so under it one confidently wrong learner can outweigh all the others of a class;
 * under the vote every learner counts once (measured on our data: docs/benchmarks/classification.md).
 */
export type DecodingName = 'vote' | 'lossweighted';

/** Number of binary learners for a coding of K classes. */
export function learnerCount(name: CodingName, k: number): number {
  return name === 'onevsone' ? (k * (k - 1)) / 2 : k;
}

/**
 * MATLAB designecoc order. One-vs-one: learners (1,2), (1,3), ..., (1,K), (2,3), ...; in learner (i,j)
 * class i is +1, class j is -1, others 0. One-vs-all: learner k has class k +1, every other class -1.
 */
export function codingMatrix(name: CodingName, k: number): CodingMatrix {
  if (!Number.isInteger(k) || k < 2) throw new LoupeError('INVALID_ARGUMENT', `a coding needs at least 2 classes, got ${k}`);
  if (name !== 'onevsone' && name !== 'onevsall') throw new LoupeError('INVALID_ARGUMENT', `unknown coding '${String(name)}' (onevsone | onevsall)`);
  const l = learnerCount(name, k);
  const m = new Int8Array(k * l);
  if (name === 'onevsone') {
    let learner = 0;
    for (let i = 0; i < k; i++) {
      for (let j = i + 1; j < k; j++) {
        m[i * l + learner] = 1;
        m[j * l + learner] = -1;
        learner++;
      }
    }
  } else {
    for (let i = 0; i < k; i++) for (let j = 0; j < l; j++) m[i * l + j] = i === j ? 1 : -1;
  }
  return { name, classes: k, learners: l, matrix: m };
}

/** Targets for the native trainer: [L][n] int8, target[l][i] = M[class(i)][l]. */
export function buildTargets(coding: CodingMatrix, classIndex: ArrayLike<number>): Int8Array {
  const n = classIndex.length;
  const { learners: l, classes: k, matrix } = coding;
  const t = new Int8Array(l * n);
  for (let i = 0; i < n; i++) {
    const c = classIndex[i] as number;
    if (!Number.isInteger(c) || c < 0 || c >= k) throw new LoupeError('INVALID_ARGUMENT', `class index ${c} of row ${i} out of range [0, ${k})`);
    for (let j = 0; j < l; j++) t[j * n + i] = matrix[c * l + j] as number;
  }
  return t;
}

/** fitcecoc 'hinge' binary loss: max(0, 1 - y s) / 2. */
export function hingeBinaryLoss(y: number, s: number): number {
  return Math.max(0, 1 - y * s) / 2;
}

export interface DecodeResult {
  /** Predicted class per row (argmin of the loss; first class on ties, as MATLAB). */
  readonly classIndex: Int32Array;
  /** Per-class scores [n][K] = negated average binary loss (MATLAB's NegLoss): higher is better. */
  readonly scores: Float32Array;
}

/**
 * Loss-weighted decoding (fitcecoc's default 'lossweighted'):
 * loss_k = sum_l |M_kl| g(M_kl, s_l) / sum_l |M_kl|, with g the hinge binary loss.
 * `learnerScores` is [n][L].
 */
export function decodeLossWeighted(coding: CodingMatrix, learnerScores: Float32Array, n: number): DecodeResult {
  const { learners: l, classes: k, matrix } = coding;
  if (learnerScores.length !== n * l) {
    throw new LoupeError('INVALID_ARGUMENT', `learner scores have length ${learnerScores.length}, expected ${n} x ${l}`);
  }
  const classIndex = new Int32Array(n);
  const scores = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestLoss = Infinity;
    for (let c = 0; c < k; c++) {
      let sum = 0;
      let weight = 0;
      for (let j = 0; j < l; j++) {
        const m = matrix[c * l + j] as number;
        if (m === 0) continue;
        sum += hingeBinaryLoss(m, learnerScores[i * l + j] as number);
        weight += 1;
      }
      const loss = weight > 0 ? sum / weight : Infinity;
      scores[i * k + c] = -loss;
      if (loss < bestLoss) {
        bestLoss = loss;
        best = c;
      }
    }
    classIndex[i] = best;
  }
  return { classIndex, scores };
}

/**
 * Voting decoding: votes_k = #{l : M_kl != 0, sign(s_l) = M_kl} (a score of exactly 0 votes for no
 * class); the most votes win, ties to the smaller loss-weighted hinge loss, then to the first class.
 * Scores [n][K] = votes_k + 1 / (2 (1 + loss_k)): the integer part is the vote count, the fraction (in
 * (0, 1/2]) the tie-break, so the argmax of the scores is the decision.
 */
export function decodeVotes(coding: CodingMatrix, learnerScores: Float32Array, n: number): DecodeResult {
  const { learners: l, classes: k, matrix } = coding;
  const loss = decodeLossWeighted(coding, learnerScores, n).scores; // negated losses, checks the shape
  const classIndex = new Int32Array(n);
  const scores = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 0; c < k; c++) {
      let votes = 0;
      for (let j = 0; j < l; j++) {
        const m = matrix[c * l + j] as number;
        const s = learnerScores[i * l + j] as number;
        if (m !== 0 && m * s > 0) votes++;
      }
      scores[i * k + c] = votes + 1 / (2 * (1 - (loss[i * k + c] as number)));
      if ((scores[i * k + c] as number) > (scores[i * k + best] as number)) best = c;
    }
    classIndex[i] = best;
  }
  return { classIndex, scores };
}

/** Decodes with the named rule. */
export function decode(name: DecodingName, coding: CodingMatrix, learnerScores: Float32Array, n: number): DecodeResult {
  return name === 'vote' ? decodeVotes(coding, learnerScores, n) : decodeLossWeighted(coding, learnerScores, n);
}

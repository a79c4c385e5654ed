// Ground-truth defect masks (MVTec style: grey > 127 = defect) as 0/1 bytes at an anomaly map's size.
import sharp from 'sharp';

import { ImageDecodeError, messageOf } from '../errors.js';
import { readSource, sourceName, type ImageSource } from './decode.js';

/**
 * A binary mask (grey value > 127 = defect) as 0/1 bytes at width x height (nearest-neighbour if the
 * file has another size). null source = an all-good mask.
 */
export async function loadMask(source: ImageSource | null | undefined, width: number, height: number): Promise<Uint8Array> {
  if (source === null || source === undefined) return new Uint8Array(width * height);
  const name = sourceName(source);
  const data = await readSource(source, name);
  let meta: sharp.Metadata;
  try {
    meta = await sharp(data).metadata();
  } catch (err) {
    throw new ImageDecodeError(name, messageOf(err).split('\n')[0] ?? 'mask decode failed', err);
  }
  // Another resolution of the same frame is resized (a full-size mask for a downscaled image); another
  // shape is the wrong mask, and stretching it would score pixels against the wrong places.
  const mw = meta.width ?? 0;
  const mh = meta.height ?? 0;
  if (!(mw > 0 && mh > 0) || Math.abs(Math.log((mw / mh) / (width / height))) > 0.02) {
    throw new ImageDecodeError(name, `the mask is ${mw}x${mh}, not the shape of its ${width}x${height} image`);
  }
  try {
    const out = await sharp(data).removeAlpha().greyscale().resize(width, height, { fit: 'fill', kernel: 'nearest' }).raw().toBuffer({ resolveWithObject: true });
    const mask = new Uint8Array(width * height);
    const ch = out.info.channels;
    for (let i = 0; i < mask.length; i++) mask[i] = out.data[i * ch]! > 127 ? 1 : 0;
    return mask;
  } catch (err) {
    throw new ImageDecodeError(name, messageOf(err).split('\n')[0] ?? 'mask decode failed', err);
  }
}

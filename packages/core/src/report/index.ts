export * from './charts.js';
export * from './html.js';
export * from './montage.js';
export { escapeXml, pngDataUri, svgToPng } from './svg.js';

/**
 * tar-stream's pack and extract, for a dynamic import by the code that writes or reads a tar
 * (layer-tar.ts, apply.ts): a build whose steps are all cached loads no tar code. Through this
 * module because the split bundle (scripts/bundle.mjs) gives a dynamic import of a CommonJS
 * package only its default export.
 */
export { extract, pack } from 'tar-stream';

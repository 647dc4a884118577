// The "build": copy the sources to dist/ and stamp the version (no dependencies, so no npm needed).
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
rmSync('dist', { recursive: true, force: true });
mkdirSync('dist');
cpSync('src', 'dist', { recursive: true });
writeFileSync('dist/package.json', JSON.stringify({ type: 'module' }) + '\n');
writeFileSync('dist/version.json', JSON.stringify({ version }) + '\n');
console.log(`built dist/ for version ${version}`);

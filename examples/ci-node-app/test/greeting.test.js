import { test } from 'node:test';
import assert from 'node:assert/strict';
import { greeting } from '../src/greeting.js';

test('greets by name', () => {
  assert.deepEqual(greeting('mbuild', '1.0.0'), { message: 'Hello, mbuild!', version: '1.0.0' });
});

test('falls back to "world" for a missing or odd name', () => {
  assert.equal(greeting(null, '1').message, 'Hello, world!');
  assert.equal(greeting('<script>', '1').message, 'Hello, world!');
});

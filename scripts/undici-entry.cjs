// The part of undici mbuild uses, bundled by scripts/bundle.mjs as dist/bundle/undici.cjs: Agent,
// whose dispatcher methods (request, stream, ...) undici's index mixes into Dispatcher. The index
// also loads fetch, WebSocket, EventSource, the mocks and the caches: ~50 ms more on every registry
// command. These are undici's own modules; if a release moves them, the bundle fails to build.
'use strict';
const Agent = require('undici/lib/dispatcher/agent');
const Dispatcher = require('undici/lib/dispatcher/dispatcher');
const api = require('undici/lib/api');

Object.assign(Dispatcher.prototype, api);

module.exports = { Agent, Dispatcher };
